/* placeholder: boot_linux.c */
