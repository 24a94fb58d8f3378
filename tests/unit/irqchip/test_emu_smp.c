/* The software CPU across threads, as -accel emu runs vCPUs: locked read-modify-writes on shared
 * RAM must be atomic against another vCPU's (lock inc, lock xadd, xchg). Lives with the irqchip
 * tests because both are what whole-machine SMP under emu stands on. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "accel/emu/emu_cpu.h"

#define ITER 200000u
#define RAM_SIZE 0x10000
static uint8_t *ram;

/* At 0x1000: mov ecx, ITER; 1: lock inc dword [rip -> 0x3000]; mov eax, 1;
 * lock xadd [rip -> 0x3008], eax; mov eax, 1; xchg [rip -> 0x3010], eax; dec ecx; jnz 1b; hlt */
static void build_code(void)
{
    uint8_t *p = ram + 0x1000;
    unsigned n = 0;
#define B(x) (p[n++] = (uint8_t)(x))
#define D(x) do { uint32_t v_ = (uint32_t)(x); memcpy(p + n, &v_, 4); n += 4; } while (0)
    B(0xB9); D(ITER);
    unsigned loop = n;
    B(0xF0); B(0xFF); B(0x05); D(0x3000 - (0x1000 + n + 4));                  /* lock inc */
    B(0xB8); D(1);                                                          /* mov eax, 1 */
    B(0xF0); B(0x0F); B(0xC1); B(0x05); D(0x3008 - (0x1000 + n + 4));      /* lock xadd */
    B(0xB8); D(1);
    B(0x87); B(0x05); D(0x3010 - (0x1000 + n + 4));                         /* xchg */
    B(0xFF); B(0xC9);                                                       /* dec ecx */
    B(0x75);
    uint8_t rel = (uint8_t)(loop - (n + 1));
    B(rel);                                                                 /* jnz */
    B(0xF4);                                                                /* hlt */
#undef B
#undef D
}

static void *run_cpu(void *arg)
{
    struct emu_cpu *cpu = arg;
    for (int i = 0; i < 100000; i++) {
        enum emu_stop s = emu_run(cpu, 1000000);
        if (s != EMU_STOP_BUDGET)
            return (void *)(uintptr_t)s;
    }
    return (void *)(uintptr_t)EMU_STOP_BUDGET;
}

static void test_locked_rmw_across_threads(void **state)
{
    ram = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(ram);
    memset(ram, 0, RAM_SIZE);
    build_code();
    struct emu_cpu *cpus = calloc(2, sizeof(*cpus));
    assert_non_null(cpus);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        emu_cpu_init(&cpus[i]);
        assert_int_equal(emu_cpu_add_ram(&cpus[i], 0, RAM_SIZE, ram), 0);
        emu_cpu_set_flat64(&cpus[i]);
        cpus[i].cpl = 0; /* hlt ends the run */
        cpus[i].seg[EMU_CS].dpl = cpus[i].seg[EMU_SS].dpl = 0;
        emu_tlb_flush(&cpus[i], true);
        cpus[i].rip = 0x1000;
        assert_int_equal(pthread_create(&t[i], NULL, run_cpu, &cpus[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_int_equal((uintptr_t)r, EMU_STOP_HLT);
    }
    uint32_t inc, xadd;
    memcpy(&inc, ram + 0x3000, 4);
    memcpy(&xadd, ram + 0x3008, 4);
    assert_int_equal(inc, 2 * ITER);
    assert_int_equal(xadd, 2 * ITER);
    for (int i = 0; i < 2; i++)
        emu_cpu_destroy(&cpus[i]);
    free(cpus);
    free(ram);
}

static void cpu_setup(struct emu_cpu *c, uint8_t *mem, struct emu_shared *sh, uint8_t *bits)
{
    emu_cpu_init(c);
    assert_int_equal(emu_cpu_add_ram(c, 0, RAM_SIZE, mem), 0);
    if (sh) { /* as emu.c does: one bitmap and log for all vCPUs */
        free(c->ram[0].code_bits);
        c->ram[0].code_bits = bits;
        c->shared = sh;
    }
    emu_cpu_set_flat64(c);
    c->cpl = 0;
    c->seg[EMU_CS].dpl = c->seg[EMU_SS].dpl = 0;
    emu_tlb_flush(c, true);
}

static uint64_t run_at(struct emu_cpu *c, uint64_t rip)
{
    c->rip = rip;
    c->halted = false;
    assert_int_equal(emu_run(c, 1000), EMU_STOP_HLT);
    return c->r[EMU_RAX];
}

/* Code decoded by vCPU B and then rewritten by vCPU A (which already had the page writable in
 * its TLB) must not run stale on B. Without the shared state it does: that is checked too, so
 * the test shows what the sharing buys. */
static void cross_modify(bool shared, uint64_t want)
{
    uint8_t *mem = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(mem);
    memset(mem, 0, RAM_SIZE);
    /* A at 0x1000: mov byte [0x2800], 0x77; hlt. At 0x1100: mov byte [0x2001], 2; hlt. */
    const uint8_t a1[] = {0xC6, 0x05, 0xF9, 0x17, 0x00, 0x00, 0x77, 0xF4};
    const uint8_t a2[] = {0xC6, 0x05, 0xFA, 0x0E, 0x00, 0x00, 0x02, 0xF4};
    /* B at 0x2000: mov eax, 1; hlt */
    const uint8_t b[] = {0xB8, 0x01, 0x00, 0x00, 0x00, 0xF4};
    memcpy(mem + 0x1000, a1, sizeof(a1));
    memcpy(mem + 0x1100, a2, sizeof(a2));
    memcpy(mem + 0x2000, b, sizeof(b));
    struct emu_shared sh;
    memset(&sh, 0, sizeof(sh));
    pthread_mutex_init(&sh.lock, NULL);
    uint8_t *bits = calloc(RAM_SIZE / 4096 / 8 + 1, 1);
    struct emu_cpu *c = calloc(2, sizeof(*c));
    assert_non_null(c);
    cpu_setup(&c[0], mem, shared ? &sh : NULL, bits);
    cpu_setup(&c[1], mem, shared ? &sh : NULL, bits);
    run_at(&c[0], 0x1000); /* A: page 0x2000 now writable through its TLB */
    assert_int_equal(mem[0x2800], 0x77);
    assert_int_equal(run_at(&c[1], 0x2000), 1); /* B: the first run fills its TLB */
    assert_int_equal(run_at(&c[1], 0x2000), 1); /* the second decodes and caches the block */
    assert_true(c[1].block_misses > 0);
    run_at(&c[0], 0x1100); /* A rewrites B's immediate */
    assert_int_equal(mem[0x2001], 2);
    assert_int_equal(run_at(&c[1], 0x2000), want);
    for (int i = 0; i < 2; i++) {
        if (shared)
            c[i].ram[0].code_bits = NULL;
        emu_cpu_destroy(&c[i]);
    }
    free(c);
    free(bits);
    free(mem);
    pthread_mutex_destroy(&sh.lock);
}

static void test_cross_modifying_code(void **state)
{
    cross_modify(true, 2);
    cross_modify(false, 1); /* per-vCPU state alone runs the stale block */
}

/* A device thread rewrites code another thread's vCPU is running from cached blocks (a
 * virtio-blk read landing on a code page), then reports it with emu_ram_written, as the emu
 * accelerator's mem_written hook does. The vCPU loops calling the function at 0x2000 until it
 * returns 2; it must see the new code. Without the report it keeps running the old code (the
 * test checks that too). */
struct dma_run {
    struct emu_cpu *cpu;
    volatile bool written;
    enum emu_stop stop;
};

static void *dma_cpu_thread(void *arg)
{
    struct dma_run *d = arg;
    unsigned after = 0;
    for (unsigned i = 0; i < 1000000 && after < 2000; i++) {
        d->stop = emu_run(d->cpu, 10000);
        if (d->stop != EMU_STOP_BUDGET)
            break;
        after += d->written; /* 20 million instructions after the write, it is stale for good */
    }
    return NULL;
}

static void dma_rewrite(bool report, enum emu_stop want)
{
    uint8_t *mem = aligned_alloc(4096, RAM_SIZE);
    assert_non_null(mem);
    memset(mem, 0, RAM_SIZE);
    /* 0x1000: 1: call 0x2000; inc dword [0x3000]; cmp eax, 2; jne 1b; hlt */
    const uint8_t loop[] = {0xE8, 0xFB, 0x0F, 0x00, 0x00, 0xFF, 0x05, 0xF5, 0x1F, 0x00, 0x00,
                            0x83, 0xF8, 0x02, 0x75, 0xF0, 0xF4};
    const uint8_t fn[] = {0xB8, 0x01, 0x00, 0x00, 0x00, 0xC3}; /* 0x2000: mov eax, 1; ret */
    memcpy(mem + 0x1000, loop, sizeof(loop));
    memcpy(mem + 0x2000, fn, sizeof(fn));
    struct emu_shared sh;
    memset(&sh, 0, sizeof(sh));
    pthread_mutex_init(&sh.lock, NULL);
    uint8_t *bits = calloc(RAM_SIZE / 4096 / 8 + 1, 1);
    struct emu_cpu *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    cpu_setup(c, mem, &sh, bits);
    c->rip = 0x1000;
    c->r[EMU_RSP] = 0x8000;
    struct dma_run d = {.cpu = c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, dma_cpu_thread, &d), 0);
    /* Let it run the function from cached blocks for a while. */
    for (int i = 0; i < 100000 && __atomic_load_n((uint32_t *)(mem + 0x3000), __ATOMIC_RELAXED) < 1000; i++)
        usleep(100);
    assert_true(__atomic_load_n((uint32_t *)(mem + 0x3000), __ATOMIC_RELAXED) >= 1000);
    mem[0x2001] = 2; /* the device's write: RAM only, nothing the CPU sees */
    if (report)
        emu_ram_written(&sh, &c->ram[0], 0x1ff0, 0x20);
    d.written = true;
    pthread_join(t, NULL);
    assert_int_equal(d.stop, want);
    if (want == EMU_STOP_HLT)
        assert_int_equal(c->r[EMU_RAX], 2);
    c->ram[0].code_bits = NULL;
    emu_cpu_destroy(c);
    free(c);
    free(bits);
    free(mem);
    pthread_mutex_destroy(&sh.lock);
}

static void test_device_write_into_running_code(void **state)
{
    dma_rewrite(true, EMU_STOP_HLT);
    dma_rewrite(false, EMU_STOP_BUDGET); /* unreported, the cached block runs stale */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_locked_rmw_across_threads),
        cmocka_unit_test(test_cross_modifying_code),
        cmocka_unit_test(test_device_write_into_running_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
