/* placeholder: chardev.c */
