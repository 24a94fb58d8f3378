/* A small AML (ACPI Machine Language) encoder: enough to emit vmkit's DSDT. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 16

enum aml_kind { AML_SCOPE, AML_DEVICE, AML_METHOD, AML_PACKAGE, AML_BUFFER };

/* A growing byte stream. Errors are sticky: the first one is kept in err and later calls do
 * nothing, so a whole table can be emitted and checked once at the end with aml_finish(). */
struct aml {
    uint8_t *data;
    size_t len, cap;
    int err;
    unsigned depth;
    struct {
        enum aml_kind kind;
        size_t start; /* offset where the PkgLength goes */
    } open[AML_MAX_DEPTH];
};

void aml_init(struct aml *a);
void aml_release(struct aml *a);
/* 0 when everything was well formed and every open construct was closed, else -errno. */
int aml_finish(struct aml *a);

/* Encoders for the grammar's building blocks, usable on their own (and by the tests). */
/* PkgLength for a construct whose body (excluding the PkgLength itself) is body_len bytes.
 * Writes 1-4 bytes to out; returns the count, or -EINVAL if the body is too large. */
int aml_pkglen_encode(size_t body_len, uint8_t out[4]);
/* NameString for an ASL path ("\\_SB.PCI0", "^FOO", "_HID", "" for NullName). Segments shorter
 * than 4 characters are padded with '_'. Returns the byte count, -EINVAL for a bad path,
 * -ENOSPC if cap is too small. */
int aml_namestring_encode(const char *path, uint8_t *out, size_t cap);
/* Compressed EISA ID ("PNP0A08" -> 0x080AD041), as ASL's EisaId() computes it. 0 if malformed. */
uint32_t aml_eisaid(const char *id);

/* Data and names. */
void aml_byte(struct aml *a, uint8_t b);
void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_integer(struct aml *a, uint64_t v); /* ZeroOp/OneOp/Byte/Word/DWord/QWord prefix */
void aml_string(struct aml *a, const char *s);
void aml_namestring(struct aml *a, const char *path);
void aml_eisaid_integer(struct aml *a, const char *id);
/* Name(path, <next object emitted>) */
void aml_name_decl(struct aml *a, const char *path);
/* Return(<next term emitted>) */
void aml_return(struct aml *a);

/* Nested constructs; each *_begin is closed by aml_end(), which fills in the PkgLength. */
void aml_scope_begin(struct aml *a, const char *path);
void aml_device_begin(struct aml *a, const char *path);
void aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized);
void aml_package_begin(struct aml *a, unsigned nelems);
void aml_buffer_begin(struct aml *a); /* BufferSize is computed from the content at aml_end() */
void aml_end(struct aml *a);

/* Resource template descriptors (emit inside aml_buffer_begin ... aml_res_end, aml_end). */
enum aml_mem_cache {
    AML_NONCACHEABLE = 0,
    AML_CACHEABLE = 1,
    AML_WRITECOMBINING = 2,
    AML_PREFETCHABLE = 3
};
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq_noflags(struct aml *a, unsigned irq); /* IRQNoFlags: ISA, edge, active high */
void aml_res_interrupt(struct aml *a, bool consumer, bool edge, bool active_low, bool shared,
                       uint32_t gsi);
/* Address-space descriptors as a bridge produces them (ResourceProducer, MinFixed, MaxFixed,
 * PosDecode, translation 0); length is computed from min..max. */
void aml_res_word_bus_number(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_memory(struct aml *a, enum aml_mem_cache cache, uint32_t min, uint32_t max);
void aml_res_qword_memory(struct aml *a, enum aml_mem_cache cache, uint64_t min, uint64_t max);
void aml_res_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t len);
void aml_res_end(struct aml *a); /* EndTag, checksum 0 (= "assume valid") */
