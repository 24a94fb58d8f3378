/* The guest-physical and I/O-port map of vmkit's x86 "pc" machine: one place for every address. */
#pragma once
#include "base/util.h"

/* Low memory: boot structures live below 1 MiB, as firmware would leave them. */
#define LAYOUT_GDT 0x500ULL          /* boot GDT for 32/64-bit entry */
#define LAYOUT_PVH_START_INFO 0x6000 /* struct hvm_start_info + modules */
#define LAYOUT_PVH_MEMMAP 0x6800     /* struct hvm_memmap_table_entry[] */
#define LAYOUT_BOOT_PARAMS 0x7000    /* Linux zero page */
#define LAYOUT_PML4 0x9000           /* identity page tables for 64-bit bzImage entry */
#define LAYOUT_PDPT 0xA000
#define LAYOUT_PD 0xB000 /* 4 pages: identity map of the first 4 GiB with 2 MiB pages */
#define LAYOUT_CMDLINE 0x20000
#define LAYOUT_CMDLINE_MAX 0x10000
#define LAYOUT_EBDA 0x9FC00ULL       /* usable low RAM ends here */
#define LAYOUT_ACPI 0xE0000ULL       /* RSDP at the start: legacy scans find it */
#define LAYOUT_ACPI_SIZE 0x20000ULL  /* through 0xFFFFF */
#define LAYOUT_HIGH_MEM 0x100000ULL  /* 1 MiB */
#define LAYOUT_KERNEL 0x1000000ULL   /* bzImage protected-mode code when not relocatable elsewhere */

/* The PCI hole below 4 GiB: RAM stops at LAYOUT_LOWMEM_MAX and resumes at 4 GiB. */
#define LAYOUT_LOWMEM_MAX 0xC0000000ULL
#define LAYOUT_PCI_MMIO 0xC0000000ULL /* 32-bit BAR window */
#define LAYOUT_PCI_MMIO_SIZE 0x20000000ULL
#define LAYOUT_ECAM 0xE0000000ULL /* PCIe MMCONFIG, 256 buses */
#define LAYOUT_ECAM_SIZE 0x10000000ULL
#define LAYOUT_IOAPIC 0xFEC00000ULL
#define LAYOUT_LAPIC 0xFEE00000ULL
#define LAYOUT_KVM_IDENTITY_MAP 0xFEFFC000ULL /* KVM's real-mode helpers: 1 page + 3 TSS pages */
#define LAYOUT_KVM_TSS 0xFEFFD000ULL
#define LAYOUT_4G 0x100000000ULL
#define LAYOUT_PCI_MMIO64_SIZE (64ULL * GiB) /* 64-bit BAR window, placed above RAM */

/* I/O ports. */
#define PORT_PIT 0x40
#define PORT_I8042_DATA 0x60
#define PORT_SPEAKER 0x61
#define PORT_I8042_CMD 0x64
#define PORT_RTC 0x70
#define PORT_POST 0x80
#define PORT_PCI_CONFIG_ADDR 0xCF8
#define PORT_RESET_CONTROL 0xCF9
#define PORT_PCI_CONFIG_DATA 0xCFC
#define PORT_COM1 0x3F8
#define PORT_ACPI_PM_BASE 0x600 /* PM1a event (4), PM1a control (2) at +4, PM timer (4) at +8 */
#define PORT_ACPI_PM1_EVT (PORT_ACPI_PM_BASE + 0)
#define PORT_ACPI_PM1_CNT (PORT_ACPI_PM_BASE + 4)
#define PORT_ACPI_PM_TMR (PORT_ACPI_PM_BASE + 8)
#define PORT_ACPI_GPE0 (PORT_ACPI_PM_BASE + 0x20) /* 4 bytes: status, enable */
#define PORT_PCI_IO_WINDOW 0x1000 /* I/O BARs are assigned from here ... */
#define PORT_PCI_IO_WINDOW_END 0xFFFF

/* ISA IRQs / GSIs. */
#define IRQ_I8042_KBD 1
#define IRQ_COM1 4
#define IRQ_RTC 8
#define IRQ_ACPI_SCI 9
#define IRQ_I8042_AUX 12
/* PCI INTx A-D route to GSIs 16-19 on the IOAPIC (level, active low), swizzled by slot. */
#define IRQ_PCI_INTX_BASE 16
#define IOAPIC_NUM_PINS 24

/* ACPI "sleep type" value for S5 in our DSDT's \_S5 package, written to PM1a_CNT.SLP_TYP. */
#define ACPI_S5_SLP_TYP 5
