/* placeholder: vm.c */
