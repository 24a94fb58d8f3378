/* Libraries loaded on first use, so a VM that does not need them does not map them. */
#pragma once
#include <stddef.h>

/* Loads soname (once per process) and resolves names[0..n-1] into syms[]. 0, or -ENOENT with
 * why saying what is missing and which Debian package has it. */
int dynlib_load(const char *soname, const char *package, const char *const *names, void **syms,
                unsigned n, char *why, size_t why_len);
