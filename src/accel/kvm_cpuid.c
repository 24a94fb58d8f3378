/* placeholder: kvm_cpuid.c */
