/* placeholder: serial.c */
