/* placeholder: emu.c */
