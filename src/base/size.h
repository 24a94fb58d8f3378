/* Parsing sizes the way QEMU does: "2048" (unit given by the caller), "2G", "512M", "1.5G". */
#pragma once
#include <stdint.h>

/* default_unit multiplies a bare number (QEMU's -m takes MiB; qemu-img takes bytes).
 * Returns 0, or -EINVAL for a malformed string, -ERANGE for overflow. */
int size_parse(const char *s, uint64_t default_unit, uint64_t *out);
/* "2 GiB", "512 MiB", "1.5 KiB": for messages, qemu-img's human style. */
void size_format(uint64_t bytes, char *buf, unsigned buflen);
