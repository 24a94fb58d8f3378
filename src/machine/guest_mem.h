/* Guest RAM: one memfd mapped once, split around the PCI hole; every guest address is checked here. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guest_mem_region {
    uint64_t gpa;  /* guest-physical start */
    uint64_t size; /* bytes */
    uint8_t *host; /* host mapping of this region */
};

struct guest_mem {
    int fd;                /* memfd (or hugetlbfs file) backing all RAM; -1 for test buffers */
    uint8_t *base;         /* the whole mapping, regions are slices of it */
    uint64_t ram_size;     /* total RAM in bytes */
    unsigned nregions;     /* 1 or 2 (below and above the PCI hole) */
    struct guest_mem_region regions[2];
    /* Set by the VM layer when the accelerator caches code it decoded from RAM (-accel emu);
     * NULL otherwise. Told of device writes through guest_mem_written. */
    void (*written)(void *opaque, uint64_t gpa, uint64_t len);
    void *written_opaque;
};

/* Allocate ram_size bytes of guest RAM. mem_path: NULL for memfd, or a directory (hugetlbfs)
 * to create the backing file in. Returns 0 or -errno (-ENOMEM when the host cannot give it). */
int guest_mem_init(struct guest_mem *m, uint64_t ram_size, const char *mem_path, bool prealloc);
/* Wrap a caller-owned buffer as RAM at gpa 0 (unit tests: no memfd, no PCI hole). */
void guest_mem_init_buffer(struct guest_mem *m, void *buf, uint64_t size);
void guest_mem_destroy(struct guest_mem *m);
/* Give all RAM back to the host and read as zeros again (machine reset). */
int guest_mem_clear(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len) if the whole range is RAM in one region, else NULL.
 * The only way device code may turn a guest address into a pointer. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* Copy to/from guest RAM; the range may span regions. 0 or -EFAULT. */
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *buf, uint64_t len);
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf, uint64_t len);

/* A device wrote [gpa, gpa+len) of RAM (through a guest_mem_ptr pointer: DMA): call after the
 * data is in RAM and before the guest is told (used ring, interrupt), so a CPU that cached code
 * from those pages drops it. guest_mem_write calls it itself; virtq_push does for every chain. */
static inline void guest_mem_written(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    if (m->written)
        m->written(m->written_opaque, gpa, len);
}

/* RAM below the PCI hole and above 4 GiB, for memory maps (e820, PVH, ACPI). */
uint64_t guest_mem_low_size(const struct guest_mem *m);
uint64_t guest_mem_high_size(const struct guest_mem *m);
