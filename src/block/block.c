/* placeholder: block.c */
