/* Speed of the software CPU core: guest instructions per second on simple integer loops,
 * with the host's own speed on the same loop for scale. Not a timed test.
 * Usage: emu_bench [million-instructions]
 *        emu_bench --loop32 ITERATIONS   (the loop bench/emu/tcg_compare.py also runs in QEMU TCG) */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accel/emu/emu_cpu.h"

/* CPU time of this process: the figure stays meaningful on a busy shared host. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct loop {
    const char *name;
    const uint8_t *code;
    unsigned len;
    unsigned insns_per_iter;
};

/* add rax, rcx; xor rdx, rax; inc rcx; cmp rcx, rbx; jne -14 */
static const uint8_t alu_loop[] = {0x48, 0x01, 0xc8, 0x48, 0x31, 0xc2, 0x48, 0xff, 0xc1,
                                   0x48, 0x39, 0xd9, 0x75, 0xf2, 0xf4};
/* mov rax, [rsi+rcx*8]; add rdx, rax; mov [rdi+rcx*8], rdx; inc rcx; and rcx, 511; dec rbx; jnz */
static const uint8_t mem_loop[] = {0x48, 0x8b, 0x04, 0xce, 0x48, 0x01, 0xc2, 0x48, 0x89, 0x14, 0xcf,
                                   0x48, 0xff, 0xc1, 0x48, 0x81, 0xe1, 0xff, 0x01, 0x00, 0x00,
                                   0x48, 0xff, 0xcb, 0x75, 0xe6, 0xf4};

static double run(const struct loop *l, uint64_t iters, uint64_t *retired)
{
    static uint8_t ram[1 << 20];
    struct emu_cpu *cpu = calloc(1, sizeof(*cpu));
    memset(ram, 0, sizeof(ram));
    memcpy(ram + 0x1000, l->code, l->len);
    emu_cpu_init(cpu);
    emu_cpu_add_ram(cpu, 0, sizeof(ram), ram);
    emu_cpu_set_flat64(cpu);
    cpu->cpl = 0; /* so hlt stops the run */
    cpu->rip = 0x1000;
    cpu->r[3] = iters; /* rbx */
    cpu->r[6] = 0x10000;
    cpu->r[7] = 0x20000;
    double t0 = now();
    enum emu_stop st = emu_run(cpu, ~0ull >> 1);
    double t = now() - t0;
    *retired = cpu->insns;
    if (st != EMU_STOP_HLT) fprintf(stderr, "emu_bench: %s stopped unexpectedly (%d)\n", l->name, st);
    free(cpu);
    return t;
}

/* The alu loop as 32-bit code, byte for byte what bench/emu/loop32.S runs under QEMU's TCG. */
static const uint8_t alu_loop32[] = {0x01, 0xc8, 0x31, 0xc2, 0x41, 0x39, 0xd9, 0x75, 0xf7, 0xf4};

static int run_loop32(uint64_t iters)
{
    static uint8_t ram[1 << 16];
    struct emu_cpu *cpu = calloc(1, sizeof(*cpu));
    memcpy(ram + 0x1000, alu_loop32, sizeof(alu_loop32));
    emu_cpu_init(cpu);
    emu_cpu_add_ram(cpu, 0, sizeof(ram), ram);
    cpu->cr0 = EMU_CR0_PE | EMU_CR0_ET;
    for (unsigned i = 0; i < EMU_NSEG; i++)
        cpu->seg[i] = (struct emu_seg){.limit = 0xffffffff, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1};
    cpu->seg[EMU_CS] = (struct emu_seg){.sel = 8, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .db = 1, .g = 1};
    cpu->rip = 0x1000;
    cpu->r[3] = iters; /* ebx */
    emu_tlb_flush(cpu, true);
    double t0 = now();
    enum emu_stop st = emu_run(cpu, ~0ull >> 1);
    double t = now() - t0;
    if (st != EMU_STOP_HLT || (uint32_t)cpu->r[1] != (uint32_t)iters) {
        fprintf(stderr, "emu_bench: the 32-bit loop stopped unexpectedly (%d)\n", st);
        return 1;
    }
    printf("%-48s %7.1f M guest instructions/s (%" PRIu64 " M in %.2fs CPU)\n", "alu loop, 32-bit code",
           cpu->insns / t / 1e6, cpu->insns / 1000000, t);
    emu_cpu_destroy(cpu);
    free(cpu);
    return 0;
}

/* The alu loop natively, for scale. */
static double run_native_alu(uint64_t iters)
{
    double t0 = now();
    uint64_t a = 0, c = 0, d = 0;
    __asm__ volatile("1: add %%rcx, %%rax\n\t"
                     "xor %%rax, %%rdx\n\t"
                     "inc %%rcx\n\t"
                     "cmp %3, %%rcx\n\t"
                     "jne 1b"
                     : "+a"(a), "+c"(c), "+d"(d)
                     : "r"(iters)
                     : "cc");
    return now() - t0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--loop32")) return run_loop32(strtoull(argv[2], NULL, 0));
    uint64_t mil = argc > 1 ? strtoull(argv[1], NULL, 0) : 200;
    struct loop loops[] = {
        {"alu loop (add/xor/inc/cmp/jne)", alu_loop, sizeof(alu_loop), 5},
        {"memory loop (load/add/store/inc/and/dec/jnz)", mem_loop, sizeof(mem_loop), 7},
    };
    double alu_rate = 0;
    for (unsigned i = 0; i < 2; i++) {
        uint64_t iters = mil * 1000000 / loops[i].insns_per_iter, retired;
        double t = run(&loops[i], iters, &retired);
        double rate = retired / t / 1e6;
        if (i == 0) alu_rate = rate;
        printf("%-48s %7.1f M guest instructions/s (%" PRIu64 " M in %.2fs CPU)\n", loops[i].name, rate,
               retired / 1000000, t);
    }
    uint64_t iters = mil * 1000000 / 5 * 10;
    double t = run_native_alu(iters);
    double native = iters * 5 / t / 1e6;
    printf("%-48s %7.1f M instructions/s on the host CPU: the software CPU runs at 1/%.0f of it\n",
           "alu loop natively", native, native / alu_rate);
    return 0;
}
