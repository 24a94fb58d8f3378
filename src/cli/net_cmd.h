/* `vmkit net`: host network administration (bridges, TAPs, virtual networks). */
#pragma once

/* argv[0] is the first word after "net". Returns the process exit status. */
int net_main(int argc, char **argv);
