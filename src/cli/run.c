/* placeholder: run.c */
