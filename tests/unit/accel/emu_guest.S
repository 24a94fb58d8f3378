/* Guest code for the software CPU's system tests: mode switches, exceptions, user mode. */
    .section .rodata

/* Real mode -> 32-bit protected mode -> long mode, like an SMP trampoline. Runs at 0x7000;
 * the test prepares identity page tables at 0x10000. */
    .set BASE, 0x7000
    .globl guest_boot_start, guest_boot_end
guest_boot_start:
    .code16
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (BASE + gdtr - guest_boot_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(BASE + pm32 - guest_boot_start)
    .code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x9000, %esp
    push $0x55
    pop %ebx
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0x10000, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $0x18, $(BASE + lm64 - guest_boot_start)
    .code64
lm64:
    movq $0x1234, 0x8000
    mov $0xdeadbeef, %eax
    hlt
    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
gdtr:
    .word gdtr - gdt - 1
    .long BASE + gdt - guest_boot_start
guest_boot_end:

/* A small long-mode kernel at 0x10000: entry points and exception handlers that record
 * what they saw at 0x8000.. and halt. Offsets are exported for the test. */
    .set KB, 0x10000
    .globl guest_kern_start, guest_kern_end
    .globl k_sti_hlt, h_irq, k_nmi, h_nmi
    .globl k_ud, k_pf, k_user, k_syscall, k_wp, k_1g, k_tlb1, k_tlb2, h_ud, h_pf, k_int80, h_int80
guest_kern_start:
k_ud:
    ud2
k_pf:
    mov 0x400000, %rax
    hlt
k_user:
    pushq $0x23
    pushq $0x1f000
    pushq $0x202
    pushq $0x2b
    pushq $(KB + u_code - guest_kern_start)
    iretq
u_code:
    mov $42, %eax
    syscall
    mov %rax, 0x1e000
    mov 0x8000, %rax
    hlt
k_syscall:
    mov %rcx, 0x8100
    mov %r11, 0x8108
    mov %rax, 0x8110
    mov $7, %eax
    sysretq
k_wp:
    movq $5, 0x30000
    hlt
k_1g:
    mov 0x40008800, %rax
    mov %rax, 0x8300
    hlt
k_tlb1:
    mov 0x50000, %rax
    mov %rax, 0x8200
    hlt
k_tlb2:
    invlpg 0x50000
    mov 0x50000, %rax
    mov %rax, 0x8208
    hlt
k_int80:
    mov $0x11, %ebx
    int $0x80
    mov %rbx, 0x8400
    hlt
h_int80:
    add $0x22, %ebx
    iretq
k_sti_hlt:
    sti
    hlt
    movq $0x99, 0x8508
    cli
    hlt
h_irq:
    movq $0x77, 0x8500
    mov 16(%rsp), %rax
    mov %rax, 0x8510
    iretq
k_nmi:
    cli
    hlt
    movq $0x99, 0x8508
    hlt
/* NMI handler: the first run raises a second NMI (port 0x80 in the test) and records the count
 * a few instructions later, which must still be 1: NMIs are blocked until iretq. */
h_nmi:
    incq 0x8600
    movq 0x8600, %rax
    cmpq $1, %rax
    jne 1f
    outb %al, $0x80
    nop
    nop
    movq 0x8600, %rax
    movq %rax, 0x8608
    mov 16(%rsp), %rax
    mov %rax, 0x8610
1:  iretq
h_ud:
    mov (%rsp), %rax
    mov %rax, 0x8000
    mov 8(%rsp), %rax
    mov %rax, 0x8008
    mov %rsp, %rax
    mov %rax, 0x8010
    hlt
h_pf:
    mov (%rsp), %rax
    mov %rax, 0x8020
    mov 8(%rsp), %rax
    mov %rax, 0x8028
    mov %cr2, %rax
    mov %rax, 0x8030
    mov %rsp, %rax
    mov %rax, 0x8038
    mov 16(%rsp), %rax
    mov %rax, 0x8040
    hlt
guest_kern_end:
    .section .note.GNU-stack, "", @progbits
