/* placeholder: aml.c */
