/* placeholder: kvm.c */
