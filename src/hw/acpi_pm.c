/* placeholder: acpi_pm.c */
