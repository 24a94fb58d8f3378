/* Resets the machine by the method on the command line and checks it comes back (CMOS marker). */
#include "rt/rt.h"

const char guest_name[] = "reset";

#define MARK_REG 0x40 /* four bytes of CMOS NVRAM that firmware leaves alone */

static const struct {
    const char *name;
    enum rt_reset_method m;
} methods[] = {
    { "cf9", RESET_CF9 }, { "kbd", RESET_KBD }, { "acpi", RESET_ACPI }, { "triple", RESET_TRIPLE },
};

static void mark_read(uint8_t m[4])
{
    for (int i = 0; i < 4; i++)
        m[i] = cmos_read((uint8_t)(MARK_REG + i));
}

static void mark_write(const uint8_t m[4])
{
    for (int i = 0; i < 4; i++)
        cmos_write((uint8_t)(MARK_REG + i), m[i]);
}

void guest_main(void)
{
    char name[16];
    if (cmdline_get("method", name, sizeof(name)) < 0)
        test_fail("no method=cf9|kbd|acpi|triple on the command line \"%s\"", rt_boot.cmdline);
    unsigned idx = RT_ARRAY_SIZE(methods);
    for (unsigned i = 0; i < RT_ARRAY_SIZE(methods); i++)
        if (!strcmp(name, methods[i].name))
            idx = i;
    CHECK(idx < RT_ARRAY_SIZE(methods), "unknown reset method \"%s\"", name);
    if (acpi_init() < 0)
        test_fail("ACPI: %s", acpi.error);

    CHECK(methods[idx].m != RESET_ACPI || acpi.reset_valid, "FADT has no reset register for method=acpi");
    const uint8_t want[4] = { 'V', 'M', 'R', (uint8_t)('0' + idx) }, zero[4] = { 0 };
    uint8_t have[4];
    mark_read(have);
    if (!memcmp(have, want, 4)) {
        mark_write(zero);
        mark_read(have);
        CHECK(!memcmp(have, zero, 4), "CMOS marker did not clear");
        rt_printf("second boot after reset via %s\n", name);
        return;
    }
    mark_write(want);
    mark_read(have);
    CHECK(!memcmp(have, want, 4), "CMOS NVRAM at %x does not keep what is written", MARK_REG);
    rt_printf("first boot: resetting via %s\n", name);
    rt_reset(methods[idx].m);
    mark_write(zero);
    test_fail("reset via %s had no effect", name);
}
