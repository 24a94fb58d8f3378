/* placeholder: pci.c */
