/* placeholder: pci_testdev.c */
