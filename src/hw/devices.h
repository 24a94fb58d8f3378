/* Constructors of the platform devices of the pc machine; each registers itself on the buses. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

struct machine;
struct chardev;

struct serial;
struct i8042;
struct rtc;
struct acpi_pm;

/* 16550A UART at port, raising irq (edge). backend may be NULL (no host side: output dropped). */
struct serial *serial_create(struct machine *m, uint16_t port, unsigned irq,
                             struct chardev *backend);
/* i8042 keyboard controller: self-test, command byte, A20 output port, reset pulse via 0xFE. */
struct i8042 *i8042_create(struct machine *m);
/* CMOS RTC at 0x70/0x71 with the host's time (UTC), 128 bytes of NVRAM that survive reset. */
struct rtc *rtc_create(struct machine *m);
/* -rtc: start at base_s (UTC seconds since the epoch) if base_given, else at the host's time
 * (shifted to local time if localtime); run on the machine's clock (vm_clock: virtual under
 * -accel emu, so runs repeat) or the host's. */
void rtc_configure(struct rtc *rtc, bool base_given, int64_t base_s, bool localtime,
                   bool vm_clock);
/* Replace the host UTC clock (nanoseconds since the epoch) the RTC reads; NULL restores it.
 * For tests that need a clock they control. */
void rtc_set_clock(struct rtc *rtc, uint64_t (*realtime_ns)(void));
/* Bit 7 of the last index written to port 0x70. */
bool rtc_nmi_masked(const struct rtc *rtc);
/* Port 0x80 (POST codes) sink, the reset control register at 0xCF9 and port 0x92 (fast reset). */
void misc_ports_create(struct machine *m);
/* ACPI PM1 event/control block, PM timer, GPE0 block and SCI; S5 powers off, a reset-register
 * write resets. */
struct acpi_pm *acpi_pm_create(struct machine *m);
/* The host asks the guest to shut down (QMP system_powerdown): a power button press. */
void acpi_pm_power_button(struct acpi_pm *pm);
/* Set GPE0 status bit (0-15), e.g. for hotplug; the SCI rises if the guest enabled it. */
void acpi_pm_raise_gpe(struct acpi_pm *pm, unsigned bit);
