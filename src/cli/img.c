/* placeholder: img.c */
