/* placeholder: misc.c */
