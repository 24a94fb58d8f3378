/* ACPI fixed hardware: PM1a event/control blocks, the PM timer, GPE0 and the SCI. */
#include "hw/devices.h"

#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include "machine/machine.h"

#include <stdlib.h>

#define PM1_TMR_STS 0x0001
#define PM1_BM_STS 0x0010
#define PM1_GBL_STS 0x0020
#define PM1_PWRBTN_STS 0x0100
#define PM1_SLPBTN_STS 0x0200
#define PM1_RTC_STS 0x0400
#define PM1_WAK_STS 0x8000
#define PM1_STS_MASK (PM1_TMR_STS | PM1_BM_STS | PM1_GBL_STS | PM1_PWRBTN_STS | PM1_SLPBTN_STS | \
                      PM1_RTC_STS | PM1_WAK_STS)
/* Enable bits sit at the same positions as the status bits they gate. */
#define PM1_EN_MASK (PM1_TMR_STS | PM1_GBL_STS | PM1_PWRBTN_STS | PM1_SLPBTN_STS | PM1_RTC_STS)

#define PM1_CNT_SCI_EN 0x0001
#define PM1_CNT_SLP_TYP_SHIFT 10
#define PM1_CNT_SLP_EN 0x2000

#define PM_TIMER_HZ 3579545ULL

struct acpi_pm {
    struct machine *m;
    uint16_t pm1_sts, pm1_en, pm1_cnt;
    uint16_t gpe_sts, gpe_en;
    uint32_t last_timer_msb; /* for TMR_STS: the timer's bit 31 as last observed */
    bool sci_level;
};

static uint32_t acpi_pm_timer(const struct acpi_pm *pm)
{
    /* The machine's clock, so the PM timer agrees with the TSC (virtual under -accel emu); its
     * starting value is arbitrary, as on hardware. */
    uint64_t ns = machine_clock_ns(pm->m);
    return (uint32_t)((unsigned __int128)ns * PM_TIMER_HZ / 1000000000ULL);
}

static void acpi_pm_update_sci(struct acpi_pm *pm)
{
    bool level = (pm->pm1_sts & pm->pm1_en & PM1_EN_MASK) || (pm->gpe_sts & pm->gpe_en);
    if (level != pm->sci_level) {
        pm->sci_level = level;
        irq_set_level(&pm->m->irq, IRQ_ACPI_SCI, level);
    }
}

/* TMR_STS is set when bit 31 of the timer toggles; noticed when the guest looks. */
static void acpi_pm_sample_timer(struct acpi_pm *pm)
{
    uint32_t msb = acpi_pm_timer(pm) >> 31;
    if (msb != pm->last_timer_msb) {
        pm->last_timer_msb = msb;
        pm->pm1_sts |= PM1_TMR_STS;
    }
}

/* Byte-lane helpers: the blocks are little-endian registers the guest may touch with any width
 * inside the block; mask says which bytes a write covers. */
static uint32_t lane_mask(uint64_t offset, unsigned size)
{
    uint64_t m = size >= 4 ? 0xFFFFFFFFULL : ((1ULL << (8 * size)) - 1);
    return (uint32_t)(m << (8 * offset));
}

static uint64_t evt_read(void *opaque, uint64_t offset, unsigned size)
{
    struct acpi_pm *pm = opaque;
    if (offset >= 4)
        return ~0ULL;
    acpi_pm_sample_timer(pm);
    uint32_t v = pm->pm1_sts | (uint32_t)pm->pm1_en << 16;
    return (v >> (8 * offset)) & (lane_mask(0, size));
}

static void evt_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct acpi_pm *pm = opaque;
    if (offset >= 4)
        return;
    uint32_t mask = lane_mask(offset, size);
    uint32_t v = (uint32_t)(value << (8 * offset)) & mask;
    pm->pm1_sts &= ~(v & PM1_STS_MASK); /* write 1 to clear */
    if (mask >> 16)
        pm->pm1_en = (pm->pm1_en & ~(mask >> 16)) | ((v >> 16) & PM1_EN_MASK);
    if ((v >> 16) & ~PM1_EN_MASK & 0xFFFF)
        log_once(LOG_WARN, "acpi-pm: guest enabled PM1 events vmkit does not generate (0x%x)",
                 (v >> 16) & ~PM1_EN_MASK & 0xFFFF);
    acpi_pm_update_sci(pm);
}

static const struct bus_ops evt_ops = {.read = evt_read, .write = evt_write};

static uint64_t cnt_read(void *opaque, uint64_t offset, unsigned size)
{
    struct acpi_pm *pm = opaque;
    if (offset >= 2)
        return ~0ULL;
    /* No SMI_CMD in the FADT: the OS finds ACPI mode already on, so SCI_EN always reads 1.
     * SLP_EN is write-only and reads 0. */
    uint32_t v = (pm->pm1_cnt & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN;
    return (v >> (8 * offset)) & lane_mask(0, size);
}

static void cnt_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct acpi_pm *pm = opaque;
    if (offset >= 2)
        return;
    uint32_t mask = lane_mask(offset, size) & 0xFFFF;
    uint32_t v = (uint32_t)(value << (8 * offset)) & mask;
    pm->pm1_cnt = (pm->pm1_cnt & ~mask) | v;
    if (v & PM1_CNT_SLP_EN) {
        unsigned typ = (pm->pm1_cnt >> PM1_CNT_SLP_TYP_SHIFT) & 7;
        pm->pm1_cnt &= ~PM1_CNT_SLP_EN;
        if (typ == ACPI_S5_SLP_TYP)
            machine_request(pm->m, MACHINE_REQ_POWEROFF);
        else
            log_once(LOG_WARN, "acpi-pm: guest asked for sleep type %u; only S5 (power off) is "
                     "supported, ignored", typ);
    }
}

static const struct bus_ops cnt_ops = {.read = cnt_read, .write = cnt_write};

static uint64_t tmr_read(void *opaque, uint64_t offset, unsigned size)
{
    struct acpi_pm *pm = opaque;
    if (offset >= 4)
        return ~0ULL;
    return ((uint64_t)acpi_pm_timer(pm) >> (8 * offset)) & lane_mask(0, size);
}

static void tmr_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    /* Read-only. */
}

static const struct bus_ops tmr_ops = {.read = tmr_read, .write = tmr_write};

static uint64_t gpe_read(void *opaque, uint64_t offset, unsigned size)
{
    struct acpi_pm *pm = opaque;
    if (offset >= 4)
        return ~0ULL;
    uint32_t v = pm->gpe_sts | (uint32_t)pm->gpe_en << 16;
    return (v >> (8 * offset)) & lane_mask(0, size);
}

static void gpe_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct acpi_pm *pm = opaque;
    if (offset >= 4)
        return;
    uint32_t mask = lane_mask(offset, size);
    uint32_t v = (uint32_t)(value << (8 * offset)) & mask;
    pm->gpe_sts &= ~(v & 0xFFFF);
    if (mask >> 16)
        pm->gpe_en = (pm->gpe_en & ~(mask >> 16)) | (v >> 16);
    acpi_pm_update_sci(pm);
}

static const struct bus_ops gpe_ops = {.read = gpe_read, .write = gpe_write};

static void acpi_pm_reset(void *opaque)
{
    struct acpi_pm *pm = opaque;
    pm->pm1_sts = pm->pm1_en = pm->pm1_cnt = 0;
    pm->gpe_sts = pm->gpe_en = 0;
    acpi_pm_update_sci(pm);
}

void acpi_pm_power_button(struct acpi_pm *pm)
{
    pm->pm1_sts |= PM1_PWRBTN_STS;
    acpi_pm_update_sci(pm);
}

void acpi_pm_raise_gpe(struct acpi_pm *pm, unsigned bit)
{
    if (bit >= 16)
        return;
    pm->gpe_sts |= 1u << bit;
    acpi_pm_update_sci(pm);
}

struct acpi_pm *acpi_pm_create(struct machine *m)
{
    static const struct {
        uint16_t port, len;
        const struct bus_ops *ops;
        const char *name;
    } blocks[] = {
        {PORT_ACPI_PM1_EVT, 4, &evt_ops, "acpi-pm1-evt"},
        {PORT_ACPI_PM1_CNT, 2, &cnt_ops, "acpi-pm1-cnt"},
        {PORT_ACPI_PM_TMR, 4, &tmr_ops, "acpi-pm-tmr"},
        {PORT_ACPI_GPE0, 4, &gpe_ops, "acpi-gpe0"},
    };
    struct acpi_pm *pm = xzalloc(sizeof(*pm));
    pm->m = m;
    for (unsigned i = 0; i < ARRAY_SIZE(blocks); i++) {
        if (bus_register(&m->pio, blocks[i].port, blocks[i].len, blocks[i].ops, pm,
                         blocks[i].name) < 0) {
            log_error("%s: ports 0x%x-0x%x already in use", blocks[i].name, blocks[i].port,
                      blocks[i].port + blocks[i].len - 1);
            while (i--)
                bus_unregister(&m->pio, blocks[i].port, pm);
            free(pm);
            return NULL;
        }
    }
    machine_add_reset_handler(m, acpi_pm_reset, pm);
    return pm;
}
