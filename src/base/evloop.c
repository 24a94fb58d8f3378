/* placeholder: evloop.c */
