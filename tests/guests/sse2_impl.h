/* SSE2 string routines and fxsave test of sse2_impl.c (built with SSE enabled). */
#pragma once
#include <stddef.h>
#include <stdint.h>

void *sse2_memcpy(void *d, const void *s, size_t n);
void *sse2_memset(void *d, int c, size_t n);
size_t sse2_strlen(const char *s);
void *sse2_memchr(const void *s, int c, size_t n);
int sse2_memcmp(const void *a, const void *b, size_t n);
/* Returns 0, or a negative step number that went wrong. areas: 16-byte aligned, 512 bytes. */
int sse2_fxsave_roundtrip(uint8_t area[512], uint8_t area2[512], uint32_t mxcsr);
