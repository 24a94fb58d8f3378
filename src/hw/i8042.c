/* placeholder: i8042.c */
