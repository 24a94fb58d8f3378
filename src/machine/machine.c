/* placeholder: machine.c */
