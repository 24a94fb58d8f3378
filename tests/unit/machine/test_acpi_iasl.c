/* Cross-checks the generated ACPI tables with ACPICA's own disassembler/compiler (iasl). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "acpi_walk.h"
#include "machine/acpi.h"
#include "machine/layout.h"

static const char *iasl;
static char acpiexec[512]; /* ACPICA's AML interpreter, shipped next to iasl; "" if absent */
static char tmpdir[] = "/tmp/vmkit-acpi-XXXXXX";
static uint8_t buf[LAYOUT_ACPI_SIZE];

static char *path_in_tmp(const char *name)
{
    static char p[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
    return p[i];
}

static void write_file(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(path_in_tmp(name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Reads a whole file from the temp dir as a NUL-terminated string. */
static char *read_text(const char *name)
{
    FILE *f = fopen(path_in_tmp(name), "rb");
    if (!f)
        fail_msg("%s was not produced", name);
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n;
    while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            s = realloc(s, cap);
            assert_non_null(s);
        }
    }
    fclose(f);
    s[len] = 0;
    return s;
}

/* Runs prog with args in the temp dir, output to log; returns its exit status. */
static int run_tool(const char *prog, const char *arg1, const char *arg2, const char *arg3,
                    const char *log)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(path_in_tmp(log), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || chdir(tmpdir) < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(prog, prog, arg1, arg2, arg3, (char *)NULL);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int run_iasl(const char *arg1, const char *arg2, const char *log)
{
    return run_tool(iasl, arg1, arg2, NULL, log);
}

static unsigned count(const char *s, const char *needle)
{
    unsigned n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Disassembles <base>.dat and returns the .dsl text; fails on any error or warning. */
static char *disassemble(const char *base, const uint8_t *table, size_t len)
{
    char dat[64], log[64], dsl[64];
    snprintf(dat, sizeof(dat), "%s.dat", base);
    snprintf(log, sizeof(log), "%s.log", base);
    snprintf(dsl, sizeof(dsl), "%s.dsl", base);
    write_file(dat, table, len);
    int rc = run_iasl("-d", dat, log);
    char *out = read_text(log);
    if (rc != 0 || strstr(out, "Error") || strstr(out, "error") || strstr(out, "Warning") ||
        strstr(out, "does not contain a valid"))
        fail_msg("iasl -d %s: exit %d:\n%s", dat, rc, out);
    free(out);
    char *text = read_text(dsl);
    if (strstr(text, "Incorrect") || strstr(text, "Error") || strstr(text, "error"))
        fail_msg("%s:\n%s", dsl, text);
    return text;
}

static void expect(const char *text, const char *what, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("%s does not contain \"%s\"", what, needle);
}

static void check_tables(unsigned ncpus, bool com1)
{
    uint32_t ids[64];
    assert_true(ncpus <= 64);
    for (unsigned i = 0; i < ncpus; i++)
        ids[i] = i;
    struct acpi_config cfg = {
        .ncpus = ncpus,
        .apic_ids = ids,
        .pci_mmio32_base = LAYOUT_PCI_MMIO,
        .pci_mmio32_size = LAYOUT_PCI_MMIO_SIZE,
        .pci_mmio64_base = 8 * GiB,
        .pci_mmio64_size = LAYOUT_PCI_MMIO64_SIZE,
        .pci_io_base = PORT_PCI_IO_WINDOW,
        .pci_io_end = PORT_PCI_IO_WINDOW_END,
        .has_com1 = com1,
    };
    int used = acpi_build_tables(&cfg, buf, sizeof(buf), LAYOUT_ACPI);
    assert_true(used > 0);
    struct acpi_walk w = {.buf = buf, .len = (size_t)used, .gpa = LAYOUT_ACPI};
    char s[128];

    /* iasl cannot take a bare RSDP (it is not a table with a header); test_acpi checks it. */
    const uint8_t *x = walk_xsdt(&w);
    assert_non_null(x);
    char *t = disassemble("xsdt", x, rd32(x + 4));
    expect(t, "xsdt.dsl", "\"XSDT\"");
    for (unsigned i = 0; i < 3; i++) {
        snprintf(s, sizeof(s), "ACPI Table Address   %u : %016llX", i,
                 (unsigned long long)rd64(x + 36 + 8 * i));
        expect(t, "xsdt.dsl", s);
    }
    free(t);

    const uint8_t *f = walk_find(&w, "FACP");
    t = disassemble("facp", f, rd32(f + 4));
    snprintf(s, sizeof(s), "PM1A Event Block Address : %08X", PORT_ACPI_PM1_EVT);
    expect(t, "facp.dsl", s);
    snprintf(s, sizeof(s), "PM1A Control Block Address : %08X", PORT_ACPI_PM1_CNT);
    expect(t, "facp.dsl", s);
    snprintf(s, sizeof(s), "PM Timer Block Address : %08X", PORT_ACPI_PM_TMR);
    expect(t, "facp.dsl", s);
    snprintf(s, sizeof(s), "GPE0 Block Address : %08X", PORT_ACPI_GPE0);
    expect(t, "facp.dsl", s);
    snprintf(s, sizeof(s), "SCI Interrupt : %04X", IRQ_ACPI_SCI);
    expect(t, "facp.dsl", s);
    snprintf(s, sizeof(s), "Address : %016X", PORT_RESET_CONTROL);
    expect(t, "facp.dsl", s);
    expect(t, "facp.dsl", "Reset Register Supported (V2) : 1");
    expect(t, "facp.dsl", "32-bit PM Timer (V1) : 1");
    expect(t, "facp.dsl", "Control Method Power Button (V1) : 0");
    expect(t, "facp.dsl", "Hardware Reduced (V5) : 0");
    expect(t, "facp.dsl", "8042 Present on ports 60/64 (V2) : 1");
    expect(t, "facp.dsl", "VGA Not Present (V4) : 1");
    free(t);

    t = disassemble("facs", walk_facs(&w), 64);
    expect(t, "facs.dsl", "\"FACS\"");
    free(t);

    const uint8_t *m = walk_find(&w, "APIC");
    t = disassemble("apic", m, rd32(m + 4));
    snprintf(s, sizeof(s), "Local Apic Address : %08llX", (unsigned long long)LAYOUT_LAPIC);
    expect(t, "apic.dsl", s);
    assert_int_equal(count(t, "[Processor Local APIC]"), ncpus);
    assert_int_equal(count(t, "[I/O APIC]"), 1);
    assert_int_equal(count(t, "[Interrupt Source Override]"), 2);
    assert_int_equal(count(t, "[Local APIC NMI]"), 1);
    snprintf(s, sizeof(s), "Address : %08llX", (unsigned long long)LAYOUT_IOAPIC);
    expect(t, "apic.dsl", s);
    free(t);

    const uint8_t *mc = walk_find(&w, "MCFG");
    t = disassemble("mcfg", mc, rd32(mc + 4));
    snprintf(s, sizeof(s), "Base Address : %016llX", (unsigned long long)LAYOUT_ECAM);
    expect(t, "mcfg.dsl", s);
    expect(t, "mcfg.dsl", "End Bus Number : FF");
    free(t);

    const uint8_t *d = walk_dsdt(&w);
    t = disassemble("dsdt", d, rd32(d + 4));
    const char *want[] = {"PNP0A08", "PNP0A03",  "_S5_",          "_PRT",
                          "_CRS",    "PNP0C02",  "PNP0303",       "PNP0B00",
                          "PNP0F13", "ACPI0007", "WordBusNumber", "QWordMemory"};
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        expect(t, "dsdt.dsl", want[i]);
    assert_int_equal(strstr(t, "PNP0501") != NULL, com1);
    /* 32 slots x 4 pins in _PRT, one processor device per vCPU. */
    assert_int_equal(count(t, "FFFF, \n"), 32 * 4);
    assert_int_equal(count(t, "\"ACPI0007\""), ncpus);
    free(t);

    /* The disassembly must compile back cleanly: catches AML that iasl only tolerates. */
    int rc = run_iasl("dsdt.dsl", NULL, "recompile.log");
    char *out = read_text("recompile.log");
    if (rc != 0 || !strstr(out, " 0 Errors, 0 Warnings"))
        fail_msg("iasl dsdt.dsl: exit %d:\n%s", rc, out);
    free(out);

    /* Load the DSDT into ACPICA's interpreter, as an OS would, and decode _CRS and _PRT with its
     * resource manager. */
    if (!*acpiexec) {
        printf("note: acpiexec not found next to iasl; AML interpreter check not run\n");
        return;
    }
    rc = run_tool(acpiexec, "-b",
                  "evaluate \\_S5; resources \\_SB.PCI0; resources \\_SB.MBRD; "
                  "resources \\_SB.PS2K; resources \\_SB.RTC",
                  "dsdt.dat", "acpiexec.log");
    out = read_text("acpiexec.log");
    /* No _SRS methods exist, so only AcpiSetCurrentResources may fail (AE_NOT_FOUND). */
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        if ((strstr(line, "AE_") &&
             !strstr(line, "AcpiSetCurrentResources failed: AE_NOT_FOUND")) ||
            strstr(line, "rror") || strstr(line, "xception") || strstr(line, "arning"))
            fail_msg("acpiexec: %s", line);
    free(out);
    assert_int_equal(rc, 0);
    out = read_text("acpiexec.log");
    snprintf(s, sizeof(s), "[Integer] = %016X", ACPI_S5_SLP_TYP);
    expect(out, "acpiexec \\_S5", s);
    assert_int_equal(count(out, "PCI IRQ Routing Table Package"), 32 * 4);
    assert_int_equal(count(out, "Resource Type : Bus Number Range"), 1);
    assert_int_equal(count(out, "Resource Type : I/O Range"), 2);
    assert_int_equal(count(out, "Resource Type : Memory Range"), 2);
    snprintf(s, sizeof(s), "Address Minimum : %08llX", (unsigned long long)LAYOUT_PCI_MMIO);
    expect(out, "acpiexec PCI0._CRS", s);
    snprintf(s, sizeof(s), "Address Maximum : %04X", PORT_PCI_IO_WINDOW_END);
    expect(out, "acpiexec PCI0._CRS", s);
    snprintf(s, sizeof(s), "Address : %08llX", (unsigned long long)LAYOUT_ECAM);
    expect(out, "acpiexec MBRD._CRS", s);
    free(out);
}

static void test_iasl_1cpu(void **state)
{
    check_tables(1, true);
}
static void test_iasl_2cpus(void **state)
{
    check_tables(2, true);
}
static void test_iasl_64cpus_no_com1(void **state)
{
    check_tables(64, false);
}

int main(int argc, char **argv)
{
    iasl = argc > 1 ? argv[1] : getenv("IASL");
    if (!iasl || !*iasl || access(iasl, X_OK) != 0) {
        printf("SKIP: iasl not installed (acpica-tools)\n");
        return 77;
    }
    snprintf(acpiexec, sizeof(acpiexec), "%s", iasl);
    char *slash = strrchr(acpiexec, '/');
    if (slash && (size_t)(slash - acpiexec) + sizeof("/acpiexec") <= sizeof(acpiexec))
        strcpy(slash, "/acpiexec");
    if (!slash || access(acpiexec, X_OK) != 0)
        acpiexec[0] = 0;
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iasl_1cpu),
        cmocka_unit_test(test_iasl_2cpus),
        cmocka_unit_test(test_iasl_64cpus_no_com1),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    /* Keep the files for a look when something failed. */
    if (r == 0) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    } else {
        fprintf(stderr, "iasl inputs and outputs kept in %s\n", tmpdir);
    }
    return r;
}
