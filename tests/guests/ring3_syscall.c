/* Ring 3 guest: syscall/sysret (RCX/R11, SFMASK, swapgs), int $0x80 through a DPL 3 gate, and
 * ring-3 #GP faults caught in ring 0 with the right error code and frame, then iretq back. */
#include "rt/rt.h"
#include "rt/trap.h"

const char guest_name[] = "ring3_syscall";

#define SYS_ADD 1
#define SYS_EXIT 2
#define SYS_RCX 3
#define SYS_FLAGS 4

#define MSR_GS_BASE 0xC0000101
#define MSR_KERNEL_GS_BASE 0xC0000102

/* Ring 3 reads and writes these (the whole identity map is user-accessible). */
static const char *volatile user_err;
static volatile uint64_t user_tls[2] = {0x75736572746c73ull, 0};
static volatile uint64_t saved_r11, gp_rip, gp_err, gp_cs, gp_ss, gp_count, gp_skip;
static volatile uint64_t int80_count;
static uint64_t kernel_checks_failed;
static char kernel_err[120];

static void kfail(const char *what, uint64_t got, uint64_t want)
{
    if (!kernel_checks_failed++)
        rt_snprintf(kernel_err, sizeof(kernel_err), "%s: got %lx, want %lx", what, got, want);
}

static bool on_kernel_stack(void)
{
    uint64_t here = (uint64_t)(uintptr_t)__builtin_frame_address(0);
    return here < trap_percpu.kstack_top && here > trap_percpu.kstack_top - 8192;
}

static uint64_t on_syscall(struct trap_frame *f)
{
    /* swapgs made the kernel's GS base current and parked the user's in KERNEL_GS_BASE. */
    if (rdmsr(MSR_GS_BASE) != (uint64_t)(uintptr_t)&trap_percpu)
        kfail("GS base in the syscall handler", rdmsr(MSR_GS_BASE), (uint64_t)(uintptr_t)&trap_percpu);
    if (rdmsr(MSR_KERNEL_GS_BASE) != (uint64_t)(uintptr_t)user_tls)
        kfail("KERNEL_GS_BASE in the syscall handler", rdmsr(MSR_KERNEL_GS_BASE), (uint64_t)(uintptr_t)user_tls);
    if (!on_kernel_stack())
        kfail("syscall handler not on the kernel stack", (uint64_t)(uintptr_t)__builtin_frame_address(0), trap_percpu.kstack_top);
    switch (f->rax) {
    case SYS_ADD:
        return f->rdi + 2 * f->rsi + 3 * f->rdx;
    case SYS_RCX:
        saved_r11 = f->r11;
        return f->rcx;
    case SYS_FLAGS: {
        uint64_t fl;
        __asm__ volatile("pushfq\n\tpop %0" : "=r"(fl));
        saved_r11 = f->r11;
        return fl;
    }
    case SYS_EXIT:
        if (user_err)
            test_fail("ring 3: %s (last #GP: error %lx rip %lx cs %lx)", user_err, gp_err, gp_rip, gp_cs);
        if (kernel_checks_failed)
            test_fail("ring 0: %s (%lu failed checks)", kernel_err, kernel_checks_failed);
        CHECK(f->rdi == 0x600d, "exit code %lx", f->rdi);
        CHECK(trap_percpu.entries == 8, "%lu syscall entries, want 8", trap_percpu.entries);
        CHECK(int80_count == 2 && gp_count == 5, "int80 %lu #GP %lu", int80_count, gp_count);
        rt_printf("ring3: #DF on IST1; %lu syscalls, %lu int $0x80, %lu #GP from ring 3\n", trap_percpu.entries,
                  int80_count, gp_count);
        test_pass();
    }
    return (uint64_t)-38; /* -ENOSYS */
}

static void on_int80(struct trap_frame *f)
{
    if ((f->cs & 3) != 3 || f->cs != USER_CS || f->ss != USER_DS)
        kfail("int $0x80 frame cs/ss", f->cs << 16 | f->ss, (uint64_t)USER_CS << 16 | USER_DS);
    if (!on_kernel_stack())
        kfail("int $0x80 not on RSP0", (uint64_t)(uintptr_t)__builtin_frame_address(0), trap_percpu.kstack_top);
    int80_count++;
    f->rax = f->rdi * 7 + f->rsi;
}

static void on_gp(struct trap_frame *f)
{
    if ((f->cs & 3) != 3)
        test_fail("#GP in ring 0 at %lx error %lx", f->rip, f->error);
    gp_rip = f->rip;
    gp_err = f->error;
    gp_cs = f->cs;
    gp_ss = f->ss;
    gp_count++;
    f->rip += gp_skip;
}

static inline uint64_t sys3(uint64_t n, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

#define UCHECK(cond, msg) do { if (!(cond) && !user_err) user_err = (msg); } while (0)

/* Runs a faulting instruction in ring 3 and checks the #GP the kernel saw. */
#define GP_PROBE(insn, len, want_err, msg)                                                   \
    do {                                                                                     \
        uint64_t exp_rip_, before_ = gp_count;                                               \
        gp_skip = (len);                                                                     \
        __asm__ volatile("lea 1f(%%rip), %0\n1: " insn : "=&r"(exp_rip_)::"rax", "memory");  \
        UCHECK(gp_count == before_ + 1, msg ": no #GP");                                     \
        UCHECK(gp_rip == exp_rip_, msg ": wrong rip in the #GP frame");                      \
        UCHECK(gp_err == (want_err), msg ": wrong #GP error code");                          \
        UCHECK(gp_cs == USER_CS && gp_ss == USER_DS, msg ": #GP frame cs/ss not ring 3");    \
    } while (0)

static void user_main(void)
{
    uint64_t cs, gs0;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    UCHECK((cs & 3) == 3, "not running in ring 3");
    __asm__ volatile("mov %%gs:0, %0" : "=r"(gs0));
    UCHECK(gs0 == user_tls[0], "user GS base not in effect");

    /* Arguments in rdi/rsi/rdx, result in rax. */
    UCHECK(sys3(SYS_ADD, 5, 100, 1000) == 3205, "SYS_ADD result");
    UCHECK(sys3(SYS_ADD, 0xffffffff00000000ull, 0x80000000ull, 1) == 3, "SYS_ADD 64-bit arithmetic");
    UCHECK(sys3(99, 0, 0, 0) == (uint64_t)-38, "unknown syscall result");

    /* RCX = the instruction after syscall, R11 = RFLAGS at syscall; both survive sysret. */
    uint64_t ret_rcx, want_rcx, want_fl, r11_after;
    __asm__ volatile("lea 1f(%%rip), %1\n\t"
                     "pushfq\n\tpop %2\n\t"
                     "mov $3, %%eax\n\t"
                     "syscall\n"
                     "1:\n\t"
                     "mov %%r11, %3"
                     : "=a"(ret_rcx), "=&r"(want_rcx), "=&r"(want_fl), "=r"(r11_after)
                     :
                     : "rcx", "r11", "memory");
    UCHECK(ret_rcx == want_rcx, "RCX in the kernel is not the return address");
    UCHECK(saved_r11 == want_fl, "R11 in the kernel is not RFLAGS");
    UCHECK(r11_after == want_fl, "R11 changed across syscall/sysret");

    /* SFMASK clears DF in the kernel; sysret restores the user's DF and CF from R11. */
    uint64_t kfl, ufl;
    __asm__ volatile("std\n\tstc\n\t"
                     "mov $4, %%eax\n\t"
                     "syscall\n\t"
                     "pushfq\n\tpop %1\n\t"
                     "cld"
                     : "=a"(kfl), "=r"(ufl)
                     :
                     : "rcx", "r11", "memory", "cc");
    UCHECK(!(kfl & (1u << 10)), "DF not cleared by SFMASK in the kernel");
    UCHECK(!(kfl & (1u << 9)), "IF set in the kernel");
    UCHECK(saved_r11 & (1u << 10), "R11 lost DF");
    UCHECK((ufl & (1u << 10)) && (ufl & 1), "sysret did not restore DF and CF from R11");
    UCHECK((ufl & 3) == 3 && !(ufl & (1u << 9)), "unexpected user RFLAGS after sysret");

    __asm__ volatile("mov %%gs:0, %0" : "=r"(gs0));
    UCHECK(gs0 == user_tls[0], "user GS base not restored after sysret");

    /* int $0x80 through the DPL 3 gate, iretq back. */
    uint64_t r;
    __asm__ volatile("int $0x80" : "=a"(r) : "D"(6ull), "S"(1ull) : "memory");
    UCHECK(r == 43, "int $0x80 result");
    __asm__ volatile("int $0x80" : "=a"(r) : "D"(100ull), "S"(0ull) : "memory");
    UCHECK(r == 700, "second int $0x80 result");

    /* Privileged instructions raise #GP(0); int n through a DPL 0 gate raises #GP(n*8+2). */
    GP_PROBE("hlt", 1, 0, "hlt");
    GP_PROBE("cli", 1, 0, "cli");
    GP_PROBE("mov %%cr0, %%rax", 3, 0, "mov from cr0");
    GP_PROBE("inb $0x80, %%al", 2, 0, "in with IOPL 0");
    GP_PROBE("int $0x0d", 2, 0x0d * 8 + 2, "int $0x0d through a DPL 0 gate");

    __asm__ volatile("mov %%gs:0, %0" : "=r"(gs0));
    UCHECK(gs0 == user_tls[0], "user GS base changed by interrupts");
    sys3(SYS_ADD, 1, 1, 1);
    sys3(SYS_ADD, 2, 2, 2);
    sys3(SYS_EXIT, 0x600d, 0, 0);
    user_err = "SYS_EXIT returned";
    for (;;)
        sys3(SYS_EXIT, 0, 0, 0);
}

static volatile uint64_t df_count, df_err, df_frame, df_resume;

static void on_df(struct trap_frame *f)
{
    df_count++;
    df_err = f->error;
    df_frame = (uint64_t)(uintptr_t)f;
    trap_set_present(13, true);
    f->rip = df_resume; /* #DF is an abort: continue at a known point, not at the saved rip */
}

/* A #GP whose gate is not present raises #NP while delivering it: contributory on contributory
 * is a double fault, which must arrive on the IST1 stack with error code 0. */
static void check_double_fault(void)
{
    trap_set_handler(8, on_df, 0);
    trap_set_present(13, false);
    __asm__ volatile("lea 1f(%%rip), %%rax\n\t"
                     "mov %%rax, %0\n\t"
                     "movabs $0x8000000000000000, %%rax\n\t"
                     "mov (%%rax), %%rax\n"
                     "1:"
                     : "=m"(df_resume)
                     :
                     : "rax", "memory");
    CHECK(df_count == 1, "%lu double faults, want 1", df_count);
    CHECK(df_err == 0, "#DF error code %lx", df_err);
    CHECK(df_frame < trap_ist_top && df_frame > trap_ist_top - 4096,
          "#DF frame at %lx, not on the IST1 stack below %lx", df_frame, trap_ist_top);
}

void guest_main(void)
{
    trap_init();
    check_double_fault();
    trap_set_handler(0x80, on_int80, 3);
    trap_set_handler(13, on_gp, 0);
    trap_syscall_init(on_syscall);
    wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)user_tls);
    trap_enter_ring3(user_main, 0x2);
}
