/* MC146818 CMOS RTC: host UTC time in BCD or binary, status registers A-D, NVRAM, IRQ 8. */
#include "hw/devices.h"

#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include "machine/machine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RTC_SEC 0x00
#define RTC_SEC_ALARM 0x01
#define RTC_MIN 0x02
#define RTC_MIN_ALARM 0x03
#define RTC_HOUR 0x04
#define RTC_HOUR_ALARM 0x05
#define RTC_WDAY 0x06
#define RTC_MDAY 0x07
#define RTC_MON 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0A
#define RTC_REG_B 0x0B
#define RTC_REG_C 0x0C
#define RTC_REG_D 0x0D
#define RTC_CENTURY 0x32

#define REG_A_UIP 0x80
#define REG_A_DV_MASK 0x70
#define REG_A_DV_32K 0x20 /* the only divider setting that keeps time */
#define REG_A_RATE 0x0F

#define REG_B_SET 0x80
#define REG_B_PIE 0x40
#define REG_B_AIE 0x20
#define REG_B_UIE 0x10
#define REG_B_SQWE 0x08
#define REG_B_DM 0x04 /* binary instead of BCD */
#define REG_B_24H 0x02

#define REG_C_IRQF 0x80
#define REG_C_PF 0x40
#define REG_C_AF 0x20
#define REG_C_UF 0x10

#define REG_D_VRT 0x80

#define NS_PER_SEC 1000000000ULL
/* UIP is set this long before each update (datasheet: 244 us at 32.768 kHz). */
#define RTC_UIP_NS 244000ULL

struct rtc {
    struct machine *m;
    uint8_t index;
    bool nmi_masked;
    uint8_t cmos[128]; /* NVRAM plus the alarm and status registers; time is computed */
    int64_t offset_s;  /* guest time = host UTC + offset, kept when the guest sets the clock */
    struct tm frozen;  /* the time while the guest holds SET */
    uint64_t (*now_ns)(void); /* host UTC (or a test's clock) */
    /* -rtc clock=vm: time runs on the machine's clock (virtual under -accel emu) from here. */
    bool vm_clock;
    int64_t vm_base_ns; /* UTC ns when the machine clock read 0 */
    int64_t last_update_s; /* guest second at which UF was last considered */
    bool irq_level;
    struct machine_timer *periodic, *update; /* on the guest's clock */
};

static uint64_t rtc_host_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* UTC ns on the clock the RTC runs on. */
static uint64_t rtc_now_ns(const struct rtc *r)
{
    if (r->vm_clock)
        return (uint64_t)(r->vm_base_ns + (int64_t)machine_clock_ns(r->m));
    return r->now_ns();
}

/* Guest time is host time shifted by whole seconds, so the fraction is the host's. Seconds
 * and fraction stay separate: a guest may set the year 9999, beyond 64-bit nanoseconds. */
static int64_t rtc_guest_sec(const struct rtc *r)
{
    return (int64_t)(rtc_now_ns(r) / NS_PER_SEC) + r->offset_s;
}

static uint64_t rtc_subsec_ns(const struct rtc *r)
{
    return rtc_now_ns(r) % NS_PER_SEC;
}

static void rtc_guest_tm(const struct rtc *r, struct tm *tm)
{
    if (r->cmos[RTC_REG_B] & REG_B_SET) {
        *tm = r->frozen;
        return;
    }
    time_t t = rtc_guest_sec(r);
    if (!gmtime_r(&t, tm))
        memset(tm, 0, sizeof(*tm));
}

static uint8_t rtc_encode(const struct rtc *r, int v)
{
    if (v < 0)
        v = 0;
    if (r->cmos[RTC_REG_B] & REG_B_DM)
        return v & 0xFF;
    v %= 100;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static int rtc_decode(const struct rtc *r, uint8_t v)
{
    if (r->cmos[RTC_REG_B] & REG_B_DM)
        return v;
    return (v >> 4) * 10 + (v & 0x0F);
}

static uint8_t rtc_encode_hour(const struct rtc *r, int hour)
{
    if (r->cmos[RTC_REG_B] & REG_B_24H)
        return rtc_encode(r, hour);
    bool pm = hour >= 12;
    int h12 = hour % 12 ? hour % 12 : 12;
    return rtc_encode(r, h12) | (pm ? 0x80 : 0);
}

static int rtc_decode_hour(const struct rtc *r, uint8_t v)
{
    if (r->cmos[RTC_REG_B] & REG_B_24H)
        return rtc_decode(r, v);
    bool pm = v & 0x80;
    int h = rtc_decode(r, v & 0x7F) % 12;
    return pm ? h + 12 : h;
}

static void rtc_update_irq(struct rtc *r)
{
    uint8_t c = r->cmos[RTC_REG_C] & (REG_C_PF | REG_C_AF | REG_C_UF);
    uint8_t en = r->cmos[RTC_REG_B] & (REG_B_PIE | REG_B_AIE | REG_B_UIE);
    /* Flag bits line up with their enable bits (PF/PIE = 0x40, AF/AIE = 0x20, UF/UIE = 0x10). */
    if (c & en)
        r->cmos[RTC_REG_C] |= REG_C_IRQF;
    bool level = r->cmos[RTC_REG_C] & REG_C_IRQF;
    if (level != r->irq_level) {
        r->irq_level = level;
        irq_set_level(&r->m->irq, IRQ_RTC, level);
    }
}

static bool rtc_alarm_field_matches(const struct rtc *r, uint8_t alarm, uint8_t now)
{
    return (alarm & 0xC0) == 0xC0 || alarm == now; /* 0xC0-0xFF is "don't care" */
}

/* What happens at the end of an update cycle: UF, and AF when the alarm matches. */
static void rtc_update_ended(struct rtc *r)
{
    struct tm tm;
    rtc_guest_tm(r, &tm);
    r->cmos[RTC_REG_C] |= REG_C_UF;
    if (rtc_alarm_field_matches(r, r->cmos[RTC_SEC_ALARM], rtc_encode(r, tm.tm_sec)) &&
        rtc_alarm_field_matches(r, r->cmos[RTC_MIN_ALARM], rtc_encode(r, tm.tm_min)) &&
        rtc_alarm_field_matches(r, r->cmos[RTC_HOUR_ALARM], rtc_encode_hour(r, tm.tm_hour)))
        r->cmos[RTC_REG_C] |= REG_C_AF;
    r->last_update_s = rtc_guest_sec(r);
    rtc_update_irq(r);
}

static bool rtc_running(const struct rtc *r)
{
    return (r->cmos[RTC_REG_A] & REG_A_DV_MASK) == REG_A_DV_32K &&
           !(r->cmos[RTC_REG_B] & REG_B_SET);
}

static void rtc_arm_update(struct rtc *r)
{
    if (!r->update)
        return;
    if (!rtc_running(r) || !(r->cmos[RTC_REG_B] & (REG_B_UIE | REG_B_AIE))) {
        machine_timer_arm(r->update, 0, 0);
        return;
    }
    machine_timer_arm(r->update, NS_PER_SEC - rtc_subsec_ns(r), NS_PER_SEC);
}

static void rtc_update_tick(void *opaque)
{
    rtc_update_ended(opaque);
}

static uint64_t rtc_periodic_ns(const struct rtc *r)
{
    unsigned rate = r->cmos[RTC_REG_A] & REG_A_RATE;
    if (!rate)
        return 0;
    if (rate <= 2)
        rate += 7; /* 1 and 2 alias 256 Hz and 128 Hz at 32.768 kHz */
    return (NS_PER_SEC << (rate - 1)) / 32768;
}

static void rtc_arm_periodic(struct rtc *r)
{
    if (!r->periodic)
        return;
    uint64_t period = rtc_periodic_ns(r);
    if (!(r->cmos[RTC_REG_B] & REG_B_PIE) || !period ||
        (r->cmos[RTC_REG_A] & REG_A_DV_MASK) != REG_A_DV_32K) {
        machine_timer_arm(r->periodic, 0, 0);
        return;
    }
    machine_timer_arm(r->periodic, period, period);
}

static void rtc_periodic_tick(void *opaque)
{
    struct rtc *r = opaque;
    r->cmos[RTC_REG_C] |= REG_C_PF;
    rtc_update_irq(r);
}

static uint8_t rtc_read_reg(struct rtc *r, unsigned idx)
{
    struct tm tm;
    switch (idx) {
    case RTC_SEC: case RTC_MIN: case RTC_HOUR: case RTC_WDAY: case RTC_MDAY: case RTC_MON:
    case RTC_YEAR: case RTC_CENTURY:
        rtc_guest_tm(r, &tm);
        switch (idx) {
        case RTC_SEC: return rtc_encode(r, tm.tm_sec);
        case RTC_MIN: return rtc_encode(r, tm.tm_min);
        case RTC_HOUR: return rtc_encode_hour(r, tm.tm_hour);
        case RTC_WDAY: return rtc_encode(r, tm.tm_wday + 1);
        case RTC_MDAY: return rtc_encode(r, tm.tm_mday);
        case RTC_MON: return rtc_encode(r, tm.tm_mon + 1);
        case RTC_YEAR: return rtc_encode(r, (tm.tm_year + 1900) % 100);
        default: return rtc_encode(r, (tm.tm_year + 1900) / 100);
        }
    case RTC_REG_A: {
        uint8_t a = r->cmos[RTC_REG_A] & ~REG_A_UIP;
        if (rtc_running(r) && rtc_subsec_ns(r) >= NS_PER_SEC - RTC_UIP_NS)
            a |= REG_A_UIP;
        return a;
    }
    case RTC_REG_C: {
        /* Polling software sees UF once per second even with the interrupt off. */
        if (rtc_running(r) && rtc_guest_sec(r) != r->last_update_s) {
            r->cmos[RTC_REG_C] |= REG_C_UF;
            r->last_update_s = rtc_guest_sec(r);
        }
        uint8_t c = r->cmos[RTC_REG_C];
        r->cmos[RTC_REG_C] = 0;
        rtc_update_irq(r);
        return c;
    }
    case RTC_REG_D:
        return REG_D_VRT;
    default:
        return r->cmos[idx];
    }
}

/* The guest sets one time field: change it in the current time and keep the difference to the
 * host clock, so the guest's clock keeps ticking from the value it wrote. */
static void rtc_write_time(struct rtc *r, unsigned idx, uint8_t v)
{
    struct tm tm;
    rtc_guest_tm(r, &tm);
    switch (idx) {
    case RTC_SEC: tm.tm_sec = rtc_decode(r, v & 0x7F) % 60; break;
    case RTC_MIN: tm.tm_min = rtc_decode(r, v & 0x7F) % 60; break;
    case RTC_HOUR: tm.tm_hour = rtc_decode_hour(r, v) % 24; break;
    case RTC_WDAY: tm.tm_wday = (rtc_decode(r, v) + 6) % 7; break;
    case RTC_MDAY: tm.tm_mday = MIN(MAX(rtc_decode(r, v), 1), 31); break;
    case RTC_MON: tm.tm_mon = (MIN(MAX(rtc_decode(r, v), 1), 12)) - 1; break;
    case RTC_YEAR:
        tm.tm_year = ((tm.tm_year + 1900) / 100) * 100 + rtc_decode(r, v) % 100 - 1900;
        break;
    case RTC_CENTURY:
        tm.tm_year = (rtc_decode(r, v) % 100) * 100 + (tm.tm_year + 1900) % 100 - 1900;
        break;
    }
    if (r->cmos[RTC_REG_B] & REG_B_SET) {
        r->frozen = tm; /* committed when SET is cleared */
        return;
    }
    struct tm copy = tm;
    time_t t = timegm(&copy);
    int64_t host_s = (int64_t)(rtc_now_ns(r) / NS_PER_SEC);
    r->offset_s = (int64_t)t - host_s;
    r->last_update_s = rtc_guest_sec(r);
}

static void rtc_write_reg(struct rtc *r, unsigned idx, uint8_t v)
{
    switch (idx) {
    case RTC_SEC: case RTC_MIN: case RTC_HOUR: case RTC_WDAY: case RTC_MDAY: case RTC_MON:
    case RTC_YEAR: case RTC_CENTURY:
        rtc_write_time(r, idx, v);
        return;
    case RTC_REG_A:
        r->cmos[RTC_REG_A] = v & ~REG_A_UIP;
        rtc_arm_periodic(r);
        rtc_arm_update(r);
        return;
    case RTC_REG_B: {
        uint8_t old = r->cmos[RTC_REG_B];
        if (v & REG_B_SET) {
            if (!(old & REG_B_SET))
                rtc_guest_tm(r, &r->frozen);
            v &= ~REG_B_UIE; /* the datasheet clears UIE while SET is held */
        }
        r->cmos[RTC_REG_B] = v;
        if ((old & REG_B_SET) && !(v & REG_B_SET)) {
            struct tm copy = r->frozen;
            time_t t = timegm(&copy);
            r->offset_s = (int64_t)t - (int64_t)(rtc_now_ns(r) / NS_PER_SEC);
            r->last_update_s = rtc_guest_sec(r);
        }
        rtc_update_irq(r);
        rtc_arm_periodic(r);
        rtc_arm_update(r);
        return;
    }
    case RTC_REG_C:
    case RTC_REG_D:
        return; /* read-only */
    default:
        r->cmos[idx] = v;
        return;
    }
}

static uint64_t rtc_pio_read(void *opaque, uint64_t offset, unsigned size)
{
    struct rtc *r = opaque;
    if (offset == 0)
        return 0xFF; /* the index register is write-only */
    return rtc_read_reg(r, r->index);
}

static void rtc_pio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct rtc *r = opaque;
    if (offset == 0) {
        r->index = value & 0x7F;
        r->nmi_masked = value & 0x80;
    } else {
        rtc_write_reg(r, r->index, value);
    }
}

static const struct bus_ops rtc_ops = {
    .read = rtc_pio_read,
    .write = rtc_pio_write,
};

/* The chip's RESET pin: interrupt enables and flags clear; time, alarm, NVRAM and the data
 * format stay, because the battery keeps them. */
static void rtc_reset(void *opaque)
{
    struct rtc *r = opaque;
    r->cmos[RTC_REG_B] &= ~(REG_B_PIE | REG_B_AIE | REG_B_UIE | REG_B_SQWE);
    r->cmos[RTC_REG_C] = 0;
    r->index = 0;
    r->nmi_masked = false;
    rtc_update_irq(r);
    rtc_arm_periodic(r);
    rtc_arm_update(r);
}

struct rtc *rtc_create(struct machine *m)
{
    struct rtc *r = xzalloc(sizeof(*r));
    r->m = m;
    r->now_ns = rtc_host_realtime_ns;
    if (bus_register(&m->pio, PORT_RTC, 2, &rtc_ops, r, "rtc") < 0) {
        log_error("rtc: ports 0x%x-0x%x already in use", PORT_RTC, PORT_RTC + 1);
        free(r);
        return NULL;
    }
    r->cmos[RTC_REG_A] = REG_A_DV_32K | 0x06; /* 32.768 kHz, 1024 Hz periodic rate */
    r->cmos[RTC_REG_B] = REG_B_24H;           /* BCD, 24-hour, as PC firmware sets it */
    /* Base memory 640 KiB, the one size field old software reads without a BIOS. */
    r->cmos[0x15] = 0x80;
    r->cmos[0x16] = 0x02;
    r->last_update_s = rtc_guest_sec(r);
    if (m->ev) {
        r->periodic = machine_timer_new(m, rtc_periodic_tick, r);
        r->update = machine_timer_new(m, rtc_update_tick, r);
    }
    machine_add_reset_handler(m, rtc_reset, r);
    return r;
}

void rtc_configure(struct rtc *r, bool base_given, int64_t base_s, bool localtime, bool vm_clock)
{
    int64_t now_s = (int64_t)(r->now_ns() / NS_PER_SEC);
    int64_t start_s = base_given ? base_s : now_s;
    if (localtime && !base_given) {
        struct tm tm;
        time_t t = (time_t)now_s;
        if (localtime_r(&t, &tm))
            start_s += tm.tm_gmtoff;
    }
    r->vm_clock = vm_clock;
    r->offset_s = 0;
    if (vm_clock)
        r->vm_base_ns = start_s * (int64_t)NS_PER_SEC - (int64_t)machine_clock_ns(r->m);
    else
        r->offset_s = start_s - now_s;
    r->last_update_s = rtc_guest_sec(r);
}

void rtc_set_clock(struct rtc *r, uint64_t (*realtime_ns)(void))
{
    r->now_ns = realtime_ns ? realtime_ns : rtc_host_realtime_ns;
    r->last_update_s = rtc_guest_sec(r);
}

bool rtc_nmi_masked(const struct rtc *r)
{
    return r->nmi_masked;
}
