/* Linux boot protocol entry for the bzImage guest: 64-bit entry at +0x200, RSI = boot_params. */
    .section .text.head, "ax", @progbits
    .code32
    .globl bz_start32
bz_start32:                          /* 32-bit boot protocol entry: not supported */
    cli
    hlt
    jmp bz_start32

    .org 0x200
    .code64
    .globl bz_start64
bz_start64:
    cli
    cld
    /* Linked at pref_address and not self-relocating: say so if the loader put us elsewhere. */
    leaq bz_start32(%rip), %rax
    cmpq $bz_start32, %rax
    jne wrong_place
    movq %rsi, %rbx
    leaq __bss_start(%rip), %rdi
    leaq __bss_end(%rip), %rcx
    subq %rdi, %rcx
    shrq $3, %rcx
    xorl %eax, %eax
    rep stosq
    movq $bz_stack_top, %rsp
    xorl %ebp, %ebp
    movq %rbx, %rdi
    call rt_linux_main
1:  cli
    hlt
    jmp 1b

wrong_place:
    leaq wrong_msg(%rip), %rsi
2:  movb (%rsi), %al
    testb %al, %al
    jz 1b
    movw $0x3F8, %dx
    outb %al, %dx
    incq %rsi
    jmp 2b
wrong_msg:
    .asciz "VMKIT-TEST: FAIL bzimage: not loaded at its pref_address 0x1000000\r\n"

    .section .stack, "aw", @nobits
    .balign 16
    .skip 16384
bz_stack_top:

    .section .note.GNU-stack, "", @progbits
