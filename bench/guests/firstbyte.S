/* Start-up benchmark guest: writes to COM1 with its very first instructions (PVH entry, 32-bit),
 * so "exec to first serial byte" measures the VMM, not the guest. Then it halts for good. */
    .section .note.Xen, "a"
    .balign 4
    .long 4, 4, 18          /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_entry

    .text
    .code32
    .globl pvh_entry
pvh_entry:
    mov $0x3f8, %dx
    mov $msg, %esi
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  cli
    hlt
    jmp 2b

    .section .rodata
msg: .asciz "VMKIT-TEST: PASS firstbyte\n"
