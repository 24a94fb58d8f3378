/* The guest vmkit boots when the user names no -kernel (tests/guests/hello, built in). */
#pragma once
#include <stddef.h>
#include <stdint.h>

extern const uint8_t default_guest_elf[];
extern const size_t default_guest_elf_len;
