/* Benchmark guest for the software CPU vs QEMU's TCG: the alu loop of emu_bench in 32-bit
 * code from the PVH entry, ITERATIONS times, then "DONE" on COM1 and halt. */
    .section .note.Xen, "a"
    .balign 4
    .long 4, 4, 18          /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_entry

    .text
    .code32
    .globl pvh_entry
pvh_entry:
    mov $ITERATIONS, %ebx
    xor %eax, %eax
    xor %ecx, %ecx
    xor %edx, %edx
    .globl loop32_start
loop32_start:
1:  add %ecx, %eax
    xor %eax, %edx
    inc %ecx
    cmp %ebx, %ecx
    jne 1b
    .globl loop32_end
loop32_end:
    mov $0x3f8, %dx
    mov $msg, %esi
2:  lodsb
    test %al, %al
    jz 3f
    out %al, %dx
    jmp 2b
3:  cli
    hlt
    jmp 3b

    .section .rodata
msg: .asciz "DONE\n"
