/* placeholder: accel.c */
