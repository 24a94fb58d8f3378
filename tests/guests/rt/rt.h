/* Freestanding runtime for vmkit test guests: boot info, I/O, ACPI, PCI, SMP, reporting. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_NORETURN __attribute__((noreturn))
#define RT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define RT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- port and MMIO access ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
RT_NORETURN void rt_halt_forever(void);
/* Make the identity map user-accessible, load a GDT with user segments and a TSS, and iretq
 * to user_main in ring 3 with interrupts off (rt/ring3.c). */
RT_NORETURN void rt_enter_ring3(void (*user_main)(void));

/* ---- libc subset ---- */
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- serial console (COM1, polled) ---- */
void serial_init(void);
void serial_putc(char c);
void rt_puts(const char *s);
int rt_vprintf(const char *fmt, va_list ap);
int rt_printf(const char *fmt, ...) RT_PRINTF(1, 2);
int rt_snprintf(char *buf, size_t size, const char *fmt, ...) RT_PRINTF(3, 4);

/* ---- boot information, filled in before guest_main() ---- */
#define RT_MEM_RAM 1
#define RT_MEM_RESERVED 2
#define RT_MEM_ACPI 3
#define RT_MEM_NVS 4
#define RT_MAX_MEMMAP 64
struct rt_mem_entry {
    uint64_t addr, size;
    uint32_t type;
};
struct rt_boot {
    const char *cmdline;  /* never NULL */
    uint64_t rsdp;        /* 0 when the loader gave none */
    struct rt_mem_entry memmap[RT_MAX_MEMMAP];
    unsigned memmap_entries;
    unsigned memmap_total;  /* entries the loader reported, may exceed RT_MAX_MEMMAP */
    uint64_t start_info;    /* PVH: physical address of struct hvm_start_info, else 0 */
    uint64_t boot_params;   /* Linux boot protocol: physical address of the zero page, else 0 */
};
extern struct rt_boot rt_boot;
/* Provided by each guest. */
void guest_main(void);
/* The name used in the VMKIT-TEST line; each guest defines it. */
extern const char guest_name[];

/* ---- PVH start info (Xen public/arch-x86/hvm/start_info.h) ---- */
#define HVM_START_MAGIC 0x336ec578u
struct hvm_start_info {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct hvm_memmap_table_entry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

/* ---- command line "key=value" helpers ---- */
/* Copies the value of key into buf (NUL-terminated); returns its length or -1 when absent. */
int cmdline_get(const char *key, char *buf, size_t size);
/* Parses a decimal or 0x-hex value; returns false when absent or malformed. */
bool cmdline_get_u64(const char *key, uint64_t *out);
bool cmdline_has(const char *word);
bool parse_u64(const char *s, uint64_t *out);

/* ---- reporting ---- */
RT_NORETURN void test_pass(void);
RT_NORETURN void test_fail(const char *fmt, ...) RT_PRINTF(1, 2);
#define CHECK(cond, ...) do { if (!(cond)) test_fail(__VA_ARGS__); } while (0)

/* ---- ACPI ---- */
struct acpi_header {
    char sig[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem_id[6], oem_table_id[8];
    uint32_t oem_revision, creator_id, creator_revision;
} __attribute__((packed));
struct acpi_rsdp {
    char sig[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt;
    uint32_t length;
    uint64_t xsdt;
    uint8_t ext_checksum, reserved[3];
} __attribute__((packed));
struct acpi_gas {
    uint8_t space, bit_width, bit_offset, access_size;
    uint64_t address;
} __attribute__((packed));
#define ACPI_MAX_TABLES 32
struct acpi_info {
    const struct acpi_rsdp *rsdp;
    const struct acpi_header *tables[ACPI_MAX_TABLES]; /* from the XSDT (or RSDT), then DSDT and FACS */
    unsigned ntables;
    const struct acpi_header *fadt, *madt, *mcfg, *dsdt;
    uint32_t pm1a_cnt, pm1a_evt, pm_tmr;
    bool reset_valid;
    struct acpi_gas reset_reg;
    uint8_t reset_value;
    int s5_slp_typ;          /* -1 when \_S5 was not found */
    uint64_t lapic_addr;
    unsigned ncpus;          /* enabled processor-local APIC entries */
    uint32_t apic_ids[256];
    unsigned nioapics;
    uint64_t ecam_base;      /* segment 0 */
    uint8_t ecam_bus_start, ecam_bus_end;
    bool ecam_valid;
    char error[96];          /* first problem found, empty when none */
};
extern struct acpi_info acpi;
/* Finds and validates the tables; returns 0 or -1 with acpi.error set.  Safe to call twice. */
int acpi_init(void);
bool acpi_checksum_ok(const void *p, size_t len);
const struct acpi_header *acpi_find(const char *sig);
/* Reads the first element of \_S5 out of AML; -1 when absent. */
int acpi_find_s5(const uint8_t *aml, size_t len);
uint32_t acpi_pm_timer_read(void);
/* Waits about ms milliseconds (PM timer; a spin loop when there is none).  ms < 4000. */
void rt_delay_ms(unsigned ms);

/* ---- power ---- */
RT_NORETURN void rt_poweroff(void);
enum rt_reset_method { RESET_CF9, RESET_KBD, RESET_ACPI, RESET_TRIPLE };
/* Returns only if the method had no effect. */
void rt_reset(enum rt_reset_method m);

/* ---- CMOS NVRAM ---- */
uint8_t cmos_read(uint8_t reg);
void cmos_write(uint8_t reg, uint8_t v);

/* ---- PCI ---- */
uint32_t pci_cf8_read32(unsigned bus, unsigned dev, unsigned fn, unsigned off);
void pci_cf8_write32(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint32_t v);
uint16_t pci_cf8_read16(unsigned bus, unsigned dev, unsigned fn, unsigned off);
void pci_cf8_write16(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint16_t v);
uint8_t pci_cf8_read8(unsigned bus, unsigned dev, unsigned fn, unsigned off);
void pci_cf8_write8(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint8_t v);
/* ECAM: needs acpi_init() with an MCFG; returns ~0 when unavailable. */
uint32_t pci_ecam_read32(unsigned bus, unsigned dev, unsigned fn, unsigned off);
void pci_ecam_write32(unsigned bus, unsigned dev, unsigned fn, unsigned off, uint32_t v);
bool pci_ecam_available(void);
struct pci_dev_info {
    uint8_t bus, dev, fn, header_type;
    uint16_t vendor, device;
    uint32_t class_rev;
};
/* Calls cb for each function present on the bus (CF8); returns the number found. */
unsigned pci_scan_bus(unsigned bus, void (*cb)(const struct pci_dev_info *, void *), void *opaque);

/* ---- local APIC and SMP ---- */
uint32_t lapic_read(uint32_t reg);
void lapic_write(uint32_t reg, uint32_t v);
uint32_t lapic_id(void);
/* Starts every enabled CPU in the MADT other than the caller; returns how many CPUs (including the BSP) are up. */
unsigned smp_start_aps(void);
extern volatile uint32_t smp_ap_count;  /* APs that reached 64-bit code */
#define SMP_AP_STACKS 8 /* as in start.S */
/* If set before smp_start_aps, each AP (n = 1, 2, ... in check-in order, the first
 * SMP_AP_STACKS of them) calls it on its own 4 KiB stack, with interrupts off, then halts. */
extern void (*volatile smp_ap_work)(unsigned n);
extern volatile uint64_t smp_ap_seen[4]; /* bitmap of initial APIC IDs that checked in */
