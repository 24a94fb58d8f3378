/* placeholder: vm_config.c */
