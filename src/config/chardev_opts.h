/* -chardev BACKEND,id=ID,...: named character backends that devices (virtconsole) refer to. */
#pragma once
#include <stdbool.h>

struct vm_config;

/* Parse and check one -chardev argument (QEMU spellings: stdio, pty, null, file,path=P,
 * socket,path=P[,server=on][,wait=off]; "serial" and "pipe" are refused with a hint).
 * 0, or -EINVAL after logging a message naming the option. */
int vm_config_add_chardev(struct vm_config *c, const char *arg);
/* The chardev_open() spec for -chardev id=ID ("stdio", "file:PATH", "unix:PATH,server,nowait"),
 * or NULL when no -chardev has that id. */
const char *vm_config_chardev_spec(const struct vm_config *c, const char *id);
/* Mark id as taken by a frontend; false when it already was (QEMU refuses sharing too). */
bool vm_config_chardev_claim(const struct vm_config *c, const char *id);
void vm_config_chardev_free(struct vm_config *c);
