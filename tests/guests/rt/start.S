/* PVH entry for test guests: Xen ELF note, 32-bit entry, switch to long mode, and the AP trampoline. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MSR_EFER 0xC0000080
#define EFER_LME 0x100
#define CR0_PE 0x1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define SEL_CODE64 0x08
#define SEL_DATA 0x10
#define SMP_AP_STACKS 8 /* as in rt.h */

/* The loader finds our 32-bit entry point through this note. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                          /* namesz */
    .long 4                          /* descsz */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .long pvh_start32

    .section .text.boot, "ax", @progbits
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %edi                  /* struct hvm_start_info * */
    lgdt gdt_ptr
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $(CR0_PE | CR0_PG), %eax
    movl %eax, %cr0
    ljmp $SEL_CODE64, $pvh_start64

    .code64
pvh_start64:
    movl $SEL_DATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movq $boot_stack_top, %rsp
    movl %edi, %edi                  /* upper halves are undefined after the mode switch */
    xorl %ebp, %ebp
    call rt_pvh_main
1:  cli
    hlt
    jmp 1b

/* Application processors arrive here from the trampoline, already in long mode: record the
 * initial APIC ID, count, then run smp_ap_work(n) on a stack of their own if a guest set it
 * (n = 1.. in check-in order, up to SMP_AP_STACKS), and halt. */
    .globl smp_ap_start64
smp_ap_start64:
    movl $SEL_DATA, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl $1, %eax
    cpuid
    shrl $24, %ebx
    lock btsq %rbx, smp_ap_seen(%rip)
    movl $1, %edi
    lock xaddl %edi, smp_ap_count(%rip)
    incl %edi
    movq smp_ap_work(%rip), %rax
    testq %rax, %rax
    jz 2f
    cmpl $SMP_AP_STACKS, %edi
    ja 2f
    movl %edi, %esp
    shll $12, %esp
    addq $smp_ap_stacks, %rsp
    call *%rax
2:  cli
    hlt
    jmp 2b

/* Real-mode trampoline: copied below 1 MiB, entered by SIPI with CS = page >> 4, IP = 0.
 * Goes straight from real mode to long mode (PE and PG set together). */
    .section .rodata.trampoline, "a", @progbits
    .code16
    .globl smp_trampoline_start, smp_trampoline_end
smp_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (tramp_gdt_ptr - smp_trampoline_start)
    movl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl $(CR0_PE | CR0_PG), %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE64, $smp_ap_start64
    .balign 4
tramp_gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt
smp_trampoline_end:
    .code64

    .section .data.boot, "aw", @progbits
    .balign 16
gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF         /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF         /* 0x10: flat data */
    .quad 0x00CF9A000000FFFF         /* 0x18: 32-bit code */
gdt_end:
    .balign 4
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt

/* Identity map of the first 4 GiB with 2 MiB pages, built by the assembler so booting
 * costs no instructions; the top GiB (PCI hole, ECAM, APICs) is uncached. */
    .balign 4096
    .globl boot_pml4
boot_pml4:
    .quad boot_pdpt + 0x3
    .fill 511, 8, 0
boot_pdpt:
    .quad boot_pd + 0x0000 + 0x3
    .quad boot_pd + 0x1000 + 0x3
    .quad boot_pd + 0x2000 + 0x3
    .quad boot_pd + 0x3000 + 0x3
    .fill 508, 8, 0
boot_pd:
    .set i, 0
    .rept 2048
    .if i >= 1536
    .quad (i << 21) | 0x9B            /* P RW PWT PCD PS */
    .else
    .quad (i << 21) | 0x83            /* P RW PS */
    .endif
    .set i, i + 1
    .endr

    .section .bss.stack, "aw", @nobits
    .balign 16
    .globl boot_stack_top
boot_stack:
    .skip 16384
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
