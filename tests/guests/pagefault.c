/* Page-fault guest: #PF error codes and CR2 for not-present, write-protect (CR0.WP), NX and user
 * accesses, demand mapping with retry, INVLPG after a PTE change, and CPU-set A/D bits. */
#include "rt/rt.h"
#include "rt/trap.h"

const char guest_name[] = "pagefault";

#define PTE_P 1ull
#define PTE_W 2ull
#define PTE_U 4ull
#define PTE_A 0x20ull
#define PTE_D 0x40ull
#define PTE_NX (1ull << 63)
#define PF_P 1
#define PF_W 2
#define PF_U 4
#define PF_I 0x10

enum { PF_FAIL, PF_MAP, PF_RESUME, PF_MKWRITE, PF_RET };
static volatile int pf_mode;
static volatile uint64_t pf_count, pf_cr2, pf_err, pf_rip, pf_cs, pf_resume, pf_map_flags;
static const char *volatile user_err;

static void *va(unsigned page, unsigned off) { return (void *)(uintptr_t)(TEST_VA + page * 4096ull + off); }
static uint64_t *phys(unsigned frame) { return (uint64_t *)(uintptr_t)trap_frame_page(frame); }

static void on_pf(struct trap_frame *f)
{
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    pf_cr2 = cr2;
    pf_err = f->error;
    pf_rip = f->rip;
    pf_cs = f->cs;
    pf_count++;
    unsigned idx = (unsigned)((cr2 - TEST_VA) >> 12);
    if ((pf_mode == PF_MAP || pf_mode == PF_MKWRITE) && (cr2 < TEST_VA || idx >= 16))
        test_fail("#PF outside the test window: cr2 %lx error %lx rip %lx", cr2, f->error, f->rip);
    switch (pf_mode) {
    case PF_MAP: /* demand paging: map the frame and retry the instruction */
        *trap_test_pte(idx) = trap_frame_page(idx) | pf_map_flags;
        invlpg(cr2);
        break;
    case PF_MKWRITE:
        *trap_test_pte(idx) |= PTE_W;
        invlpg(cr2);
        break;
    case PF_RESUME:
        f->rip = pf_resume;
        break;
    case PF_RET: /* the fault was on a call target: return to the caller */
        f->rip = *(uint64_t *)(uintptr_t)f->rsp;
        f->rsp += 8;
        break;
    default:
        test_fail("unexpected #PF: cr2 %lx error %lx rip %lx cs %lx", cr2, f->error, f->rip, f->cs);
    }
}

/* A load/store that, if it faults, continues after itself (PF_RESUME); v keeps dflt then. */
static uint64_t probe_read(void *p, uint64_t dflt)
{
    uint64_t v = dflt;
    __asm__ volatile("lea 1f(%%rip), %%rax\n\t"
                     "mov %%rax, %[res]\n\t"
                     "mov (%[p]), %[v]\n"
                     "1:"
                     : [v] "+r"(v), [res] "=m"(pf_resume)
                     : [p] "r"(p)
                     : "rax", "memory");
    return v;
}

static void probe_write(void *p, uint64_t v)
{
    __asm__ volatile("lea 1f(%%rip), %%rax\n\t"
                     "mov %%rax, %[res]\n\t"
                     "mov %[v], (%[p])\n"
                     "1:"
                     : [res] "=m"(pf_resume)
                     : [p] "r"(p), [v] "r"(v)
                     : "rax", "memory");
}

static void expect_pf(uint64_t before, void *addr, uint64_t err, const char *what)
{
    CHECK(pf_count == before + 1, "%s: %lu page faults, want 1", what, pf_count - before);
    CHECK(pf_cr2 == (uint64_t)(uintptr_t)addr, "%s: cr2 %lx, want %p", what, pf_cr2, addr);
    CHECK(pf_err == err, "%s: error code %lx, want %lx", what, pf_err, err);
}

#define UCHECK(cond, msg) do { if (!(cond) && !user_err) user_err = (msg); } while (0)

static void user_probe(unsigned page, bool write, uint64_t want_err, const char *msg)
{
    uint64_t before = pf_count;
    if (write)
        probe_write(va(page, 0x18), 0x1234);
    else
        probe_read(va(page, 0x18), 0);
    UCHECK(pf_count == before + 1, msg);
    UCHECK(pf_err == want_err, msg);
    UCHECK(pf_cr2 == (uint64_t)(uintptr_t)va(page, 0x18), msg);
    UCHECK(pf_cs == USER_CS, msg);
}

static void user_main(void)
{
    user_probe(7, false, PF_P | PF_U, "user read of a supervisor page: wrong #PF");
    user_probe(7, true, PF_P | PF_W | PF_U, "user write of a supervisor page: wrong #PF");
    user_probe(8, false, PF_U, "user read of a not-present page: wrong #PF");
    user_probe(8, true, PF_W | PF_U, "user write of a not-present page: wrong #PF");
    user_probe(9, true, PF_P | PF_W | PF_U, "user write of a read-only user page: wrong #PF");
    uint64_t before = pf_count;
    UCHECK(probe_read(va(9, 0x20), 0) == 0x9999, "user read of a read-only user page");
    probe_write(va(10, 0x20), 0xabcd);
    UCHECK(pf_count == before && phys(10)[4] == 0xabcd, "user write of a user page faulted");
    __asm__ volatile("int $0x80" ::: "memory");
    for (;;)
        ;
}

static void on_done(struct trap_frame *f)
{
    CHECK((f->cs & 3) == 3, "int $0x80 not from ring 3");
    if (user_err)
        test_fail("ring 3: %s (cr2 %lx error %lx cs %lx)", user_err, pf_cr2, pf_err, pf_cs);
    CHECK(phys(7)[3] == 0x7777, "a faulting user write reached the supervisor page");
    rt_printf("pagefault: %lu page faults as expected\n", pf_count);
    test_pass();
}

void guest_main(void)
{
    trap_init();
    trap_set_handler(14, on_pf, 0);
    trap_set_handler(0x80, on_done, 3);
    uint32_t id[4];
    cpuid(0x80000001, 0, id);
    CHECK(id[3] & (1u << 20), "CPUID reports no NX");
    wrmsr(0xC0000080, rdmsr(0xC0000080) | (1u << 11)); /* EFER.NXE */
    uint64_t cr0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    __asm__ volatile("mov %0, %%cr0" ::"r"(cr0 | (1u << 16))); /* CR0.WP */
    for (unsigned i = 0; i < 16; i++) {
        memset(phys(i), 0, 4096);
        phys(i)[1] = 0x1000 + i;
        *trap_test_pte(i) = 0;
    }
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0\n\tmov %0, %%cr3" : "=r"(cr3)::"memory");

    /* Not present, read then write: demand-map in the handler and retry. */
    pf_mode = PF_MAP;
    pf_map_flags = PTE_P | PTE_W;
    uint64_t n = pf_count;
    uint64_t v = *(volatile uint64_t *)va(0, 8);
    expect_pf(n, va(0, 8), 0, "not-present read");
    CHECK(v == 0x1000, "read after demand map: %lx", v);
    CHECK(pf_cs == KERNEL_CS, "#PF frame cs %lx", pf_cs);
    n = pf_count;
    *(volatile uint64_t *)va(1, 0x10) = 0x77;
    expect_pf(n, va(1, 0x10), PF_W, "not-present write");
    CHECK(phys(1)[2] == 0x77, "write after demand map did not reach the frame");

    /* Read-only page, ring 0, CR0.WP=1: the write faults with P|W; made writable, it retries. */
    pf_mode = PF_MKWRITE;
    *trap_test_pte(2) = trap_frame_page(2) | PTE_P;
    invlpg((uint64_t)(uintptr_t)va(2, 0));
    CHECK(*(volatile uint64_t *)va(2, 8) == 0x1002, "read of a read-only page");
    n = pf_count;
    *(volatile uint64_t *)va(2, 0x20) = 0x22;
    expect_pf(n, va(2, 0x20), PF_P | PF_W, "ring-0 write to a read-only page with CR0.WP");
    CHECK(phys(2)[4] == 0x22, "write after making the page writable");

    /* NX: fetching from a no-execute page faults with the I/D bit, rip = cr2. */
    pf_mode = PF_RET;
    ((uint8_t *)phys(3))[0x40] = 0xC3; /* ret */
    *trap_test_pte(3) = trap_frame_page(3) | PTE_P | PTE_W | PTE_NX;
    invlpg((uint64_t)(uintptr_t)va(3, 0));
    void (*fn)(void) = (void (*)(void))va(3, 0x40);
    n = pf_count;
    fn();
    expect_pf(n, va(3, 0x40), PF_P | PF_I, "execute from an NX page");
    CHECK(pf_rip == (uint64_t)(uintptr_t)va(3, 0x40), "NX #PF rip %lx", pf_rip);
    *trap_test_pte(3) &= ~PTE_NX;
    invlpg((uint64_t)(uintptr_t)va(3, 0));
    n = pf_count;
    fn();
    CHECK(pf_count == n, "executing after clearing NX still faulted");

    /* INVLPG after repointing a PTE: the next access sees the new frame. */
    pf_mode = PF_FAIL;
    *trap_test_pte(4) = trap_frame_page(4) | PTE_P | PTE_W;
    invlpg((uint64_t)(uintptr_t)va(4, 0));
    CHECK(*(volatile uint64_t *)va(4, 8) == 0x1004, "read through PTE 4");
    *trap_test_pte(4) = trap_frame_page(5) | PTE_P | PTE_W;
    invlpg((uint64_t)(uintptr_t)va(4, 0));
    CHECK(*(volatile uint64_t *)va(4, 8) == 0x1005, "INVLPG did not drop the old translation");

    /* Accessed and dirty bits. */
    *trap_test_pte(6) = trap_frame_page(6) | PTE_P | PTE_W;
    invlpg((uint64_t)(uintptr_t)va(6, 0));
    CHECK(!(*trap_test_pte(6) & (PTE_A | PTE_D)), "A/D set before any access");
    (void)*(volatile uint64_t *)va(6, 8);
    uint64_t pte = *trap_test_pte(6);
    CHECK((pte & PTE_A) && !(pte & PTE_D), "after a read: PTE %lx, want A set and D clear", pte);
    *(volatile uint64_t *)va(6, 8) = 1;
    pte = *trap_test_pte(6);
    CHECK((pte & PTE_A) && (pte & PTE_D), "after a write: PTE %lx, want A and D set", pte);
    CHECK(*trap_test_pte(0) & PTE_A, "the demand-mapped page has no A bit");

    /* Ring 3: supervisor, not-present and read-only user pages. */
    *trap_test_pte(7) = trap_frame_page(7) | PTE_P | PTE_W;
    phys(7)[3] = 0x7777;
    *trap_test_pte(8) = 0;
    *trap_test_pte(9) = trap_frame_page(9) | PTE_P | PTE_U;
    phys(9)[4] = 0x9999;
    *trap_test_pte(10) = trap_frame_page(10) | PTE_P | PTE_W | PTE_U;
    __asm__ volatile("mov %%cr3, %0\n\tmov %0, %%cr3" : "=r"(cr3)::"memory");
    pf_mode = PF_RESUME;
    trap_enter_ring3(user_main, 0x2);
}
