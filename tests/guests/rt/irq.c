/* Guest interrupts: IDT stubs for all 256 vectors, C dispatch, LAPIC EOI, IOAPIC routing,
 * MADT interrupt source overrides, and waits that always end (PM timer + LAPIC timer wakeups). */
#include "irq.h"
#include "rt.h"

#define LAPIC_DEFAULT 0xfee00000u
#define IOAPIC_DEFAULT 0xfec00000u
#define LAPIC_EOI 0xB0
#define LAPIC_SVR 0xF0
#define LAPIC_TPR 0x80
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_DIV 0x3E0
#define WAKE_VECTOR 0xEF /* LAPIC timer: only there to end hlt in bounded waits */

/* 256 stubs, 16 bytes apart: push the vector number, jump to the common entry, which saves the
 * caller-saved registers, calls irq_dispatch(vector) on a 16-byte aligned stack and returns. */
__asm__(".text\n"
        ".balign 16\n"
        ".globl irq_stubs\n"
        "irq_stubs:\n"
        ".set irq_i, 0\n"
        ".rept 256\n"
        ".balign 16\n"
        "pushq $irq_i\n"
        "jmp irq_common\n"
        ".set irq_i, irq_i + 1\n"
        ".endr\n"
        "irq_common:\n"
        "push %rax\n push %rcx\n push %rdx\n push %rsi\n push %rdi\n"
        "push %r8\n push %r9\n push %r10\n push %r11\n"
        "mov 72(%rsp), %rdi\n"
        "sub $8, %rsp\n"
        "cld\n"
        "call irq_dispatch\n"
        "add $8, %rsp\n"
        "pop %r11\n pop %r10\n pop %r9\n pop %r8\n pop %rdi\n"
        "pop %rsi\n pop %rdx\n pop %rcx\n pop %rax\n"
        "add $8, %rsp\n"
        "iretq\n");
extern const uint8_t irq_stubs[];

struct idt_entry {
    uint16_t off_lo, sel;
    uint8_t ist, attr;
    uint16_t off_mid;
    uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
static irq_handler_fn handlers[256];
static void *handler_opaque[256];
static volatile uint32_t counts[256];
static uint64_t lapic = LAPIC_DEFAULT;
static uint64_t ioapic = IOAPIC_DEFAULT;
static uint32_t bsp_id;
static bool initialised;

static const char *const exc_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "?", "#TS", "#NP", "#SS", "#GP",
    "#PF", "?", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

void irq_dispatch(uint64_t vector);
void irq_dispatch(uint64_t vector)
{
    uint8_t v = (uint8_t)vector;
    if (v < 32) {
        uint64_t cr2;
        __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
        test_fail("unexpected exception %u %s (cr2 %lx)", v, exc_names[v] ? exc_names[v] : "?",
                  cr2);
    }
    counts[v]++;
    if (handlers[v])
        handlers[v](v, handler_opaque[v]);
    mmio_write32(lapic + LAPIC_EOI, 0);
}

static void parse_madt_ioapic(void)
{
    const struct acpi_header *m = acpi.madt;
    if (!m || m->length < 44)
        return;
    const uint8_t *p = (const uint8_t *)m + 44, *end = (const uint8_t *)m + m->length;
    while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
        if (p[0] == 1 && p[1] >= 12) {
            uint32_t addr, base;
            memcpy(&addr, p + 4, 4);
            memcpy(&base, p + 8, 4);
            if (base == 0)
                ioapic = addr;
        }
        p += p[1];
    }
}

void irq_init(void)
{
    if (initialised)
        return;
    initialised = true;
    if (acpi_init() == 0 || acpi.madt) {
        if (acpi.lapic_addr && acpi.lapic_addr < 0x100000000UL)
            lapic = acpi.lapic_addr;
        parse_madt_ioapic();
    }
    for (unsigned i = 0; i < 256; i++) {
        uint64_t a = (uint64_t)(uintptr_t)(irq_stubs + 16 * i);
        idt[i] = (struct idt_entry){(uint16_t)a, 0x08, 0, 0x8E, (uint16_t)(a >> 16),
                                    (uint32_t)(a >> 32), 0};
    }
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" ::"m"(idtr));
    /* The 8259s: move them off the exception vectors and mask every line, so ISA interrupts
     * arrive only through the IOAPIC (without firmware nobody programmed them). */
    static const uint8_t pic_init[][2] = {{0x20, 0x11}, {0xA0, 0x11}, {0x21, 0x20}, {0xA1, 0x28},
                                          {0x21, 0x04}, {0xA1, 0x02}, {0x21, 0x01}, {0xA1, 0x01},
                                          {0x21, 0xff}, {0xA1, 0xff}};
    for (unsigned i = 0; i < RT_ARRAY_SIZE(pic_init); i++)
        outb(pic_init[i][0], pic_init[i][1]);
    mmio_write32(lapic + LAPIC_TPR, 0);
    mmio_write32(lapic + LAPIC_SVR, 0x100 | 0xFF);
    bsp_id = mmio_read32(lapic + 0x20) >> 24;
}

void irq_set_handler(uint8_t vector, irq_handler_fn fn, void *opaque)
{
    handler_opaque[vector] = opaque;
    handlers[vector] = fn;
}

uint32_t irq_count(uint8_t vector)
{
    return counts[vector];
}

static void ioapic_write(unsigned reg, uint32_t v)
{
    mmio_write32(ioapic, reg);
    mmio_write32(ioapic + 0x10, v);
}

void ioapic_route(unsigned pin, uint8_t vector, bool level, bool active_low)
{
    ioapic_write(0x10 + 2 * pin + 1, bsp_id << 24);
    ioapic_write(0x10 + 2 * pin, vector | (level ? 1u << 15 : 0) | (active_low ? 1u << 13 : 0));
}

void ioapic_mask(unsigned pin)
{
    ioapic_write(0x10 + 2 * pin, 1u << 16);
}

unsigned irq_isa_to_gsi(unsigned isa_irq, bool *level, bool *active_low)
{
    *level = false;
    *active_low = false;
    const struct acpi_header *m = acpi.madt;
    if (!m || m->length < 44)
        return isa_irq;
    const uint8_t *p = (const uint8_t *)m + 44, *end = (const uint8_t *)m + m->length;
    while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
        if (p[0] == 2 && p[1] >= 10 && p[2] == 0 && p[3] == isa_irq) {
            uint32_t gsi;
            uint16_t flags;
            memcpy(&gsi, p + 4, 4);
            memcpy(&flags, p + 8, 2);
            /* MPS INTI flags: polarity bits 0-1 (3 = active low), trigger bits 2-3 (3 = level). */
            *active_low = (flags & 3) == 3;
            *level = ((flags >> 2) & 3) == 3;
            return gsi;
        }
        p += p[1];
    }
    return isa_irq;
}

bool irq_wait(uint8_t vector, uint32_t count, unsigned ms)
{
    /* A periodic LAPIC timer guarantees hlt returns even if the awaited interrupt never comes. */
    mmio_write32(lapic + LAPIC_TIMER_DIV, 0x3);               /* divide by 16 */
    mmio_write32(lapic + LAPIC_LVT_TIMER, WAKE_VECTOR | (1u << 17)); /* periodic */
    mmio_write32(lapic + LAPIC_TIMER_INIT, 200000);
    uint32_t start = acpi_pm_timer_read(), limit = 3580u * ms;
    bool ok = false;
    for (uint32_t spins = 0; spins < 200000; spins++) {
        irq_disable();
        if (counts[vector] >= count) {
            ok = true;
            break;
        }
        if (acpi.pm_tmr && ((acpi_pm_timer_read() - start) & 0xffffff) >= limit)
            break;
        __asm__ volatile("sti; hlt" ::: "memory");
    }
    mmio_write32(lapic + LAPIC_TIMER_INIT, 0);
    mmio_write32(lapic + LAPIC_LVT_TIMER, 1u << 16);
    irq_enable();
    return ok || counts[vector] >= count;
}

uint64_t msi_addr_bsp(void)
{
    return 0xfee00000ULL | ((uint64_t)bsp_id << 12);
}

uint32_t msi_data(uint8_t vector)
{
    return vector;
}
