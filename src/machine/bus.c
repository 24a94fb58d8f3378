/* placeholder: bus.c */
