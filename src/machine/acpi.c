/* placeholder: acpi.c */
