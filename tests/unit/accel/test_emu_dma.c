/* Device writes into code pages under -accel emu: code the vCPU has decoded and cached, then
 * overwritten behind its back (a plain memcpy, as a device's DMA does), must run new once the
 * accelerator's mem_written hook (guest_mem_written) has been told; without the hook it runs
 * stale, which the test checks too, so it shows what the hook buys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accel/accel.h"
#include "machine/machine.h"

#define RAM_SIZE (1u << 20)
#define CODE 0x2000u
#define PORT 0xe9

static uint8_t *ram;
static struct machine m;
static struct accel *acc;
static struct vcpu *vcpu;

/* What the VM layer does (vm.c): guest_mem_written reaches the accelerator. */
static void hook(void *opaque, uint64_t gpa, uint64_t len)
{
    accel_emu_ops.mem_written(opaque, gpa, len);
}

static int setup(void **state)
{
    (void)state;
    ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(ram);
    memset(ram, 0, RAM_SIZE);
    machine_init(&m);
    guest_mem_init_buffer(&m.mem, ram, RAM_SIZE);
    struct accel_config cfg = {1, 1, 1, 1, 1, 1, "host"};
    assert_int_equal(accel_emu_ops.vm_create(&m, &cfg, &acc), 0);
    assert_int_equal(accel_emu_ops.map_memory(acc, 0, 0, RAM_SIZE, ram), 0);
    assert_int_equal(accel_emu_ops.vcpu_create(acc, 0, &vcpu), 0);
    m.mem.written = hook;
    m.mem.written_opaque = acc;
    /* 32-bit protected mode, flat, no paging: decoded blocks are cached in this mode. */
    struct vcpu_sregs s;
    assert_int_equal(accel_emu_ops.vcpu_get_sregs(vcpu, &s), 0);
    struct vcpu_segment code = {.base = 0, .limit = 0xffffffff, .selector = 8, .type = 0xb,
                                .present = 1, .dpl = 0, .db = 1, .s = 1, .g = 1};
    struct vcpu_segment data = code;
    data.selector = 0x10;
    data.type = 0x3;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.cr0 = 0x11; /* PE, ET */
    s.cr4 = 0;
    s.efer = 0;
    assert_int_equal(accel_emu_ops.vcpu_set_sregs(vcpu, &s), 0);
    struct vcpu_regs r = {.rip = CODE, .rflags = 2, .rsp = 0x8000};
    assert_int_equal(accel_emu_ops.vcpu_set_regs(vcpu, &r), 0);
    /* CODE: mov eax, 1; out PORT, al; jmp CODE */
    const uint8_t loop[] = {0xB8, 0x01, 0x00, 0x00, 0x00, 0xE6, PORT, 0xEB, 0xF7};
    memcpy(ram + CODE, loop, sizeof(loop));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    accel_emu_ops.vcpu_destroy(vcpu);
    accel_emu_ops.vm_destroy(acc);
    machine_destroy(&m);
    free(ram);
    return 0;
}

/* One trip round the loop: the value the code wrote to the port. */
static uint8_t run_once(void)
{
    struct vcpu_exit e;
    memset(&e, 0, sizeof(e));
    assert_int_equal(accel_emu_ops.vcpu_run(vcpu, &e), 0);
    assert_int_equal(e.reason, VCPU_EXIT_IO);
    assert_int_equal(e.io.port, PORT);
    assert_true(e.io.is_write);
    return e.io.data[0];
}

/* The value of the loop's mov, written as a device writes: straight into RAM. */
static void dma_imm(uint8_t v)
{
    ram[CODE + 1] = v;
}

static void test_dma_over_cached_code(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) /* the first trips decode, the later ones run cached blocks */
        assert_int_equal(run_once(), 1);

    dma_imm(2);
    assert_int_equal(run_once(), 1); /* nobody told the CPU: the cached block runs stale */
    guest_mem_written(&m.mem, CODE + 1, 4);
    assert_int_equal(run_once(), 2);
    assert_int_equal(run_once(), 2);

    /* A range that misses the page drops nothing (it costs one bit test per page). */
    dma_imm(3);
    guest_mem_written(&m.mem, CODE + 0x1000, 0x4000);
    guest_mem_written(&m.mem, 0, CODE);
    assert_int_equal(run_once(), 2);
    /* One that ends inside the page, starting pages below it, does. */
    guest_mem_written(&m.mem, CODE - 0x1800, 0x1801);
    assert_int_equal(run_once(), 3);

    /* guest_mem_write, the helper devices copy with, tells the CPU itself. */
    uint8_t four = 4;
    assert_int_equal(guest_mem_write(&m.mem, CODE + 1, &four, 1), 0);
    assert_int_equal(run_once(), 4);

    /* Lengths that run past RAM or wrap around are clipped, not trusted. */
    dma_imm(5);
    guest_mem_written(&m.mem, CODE, UINT64_MAX);
    assert_int_equal(run_once(), 5);
    dma_imm(6);
    guest_mem_written(&m.mem, CODE + 0x1000, UINT64_MAX - CODE);
    guest_mem_written(&m.mem, RAM_SIZE + 0x1000, 0x1000);
    assert_int_equal(run_once(), 5); /* neither covers the code's page */
    guest_mem_written(&m.mem, CODE | 0xfff, 1);
    assert_int_equal(run_once(), 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dma_over_cached_code, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
