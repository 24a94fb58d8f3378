/* placeholder: guest_mem.c */
