/* placeholder: boot_pvh.c */
