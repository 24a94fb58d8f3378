/* Guest RAM allocation and the bounds-checked accessors device code must use. */
#include "machine/guest_mem.h"
#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void guest_mem_layout(struct guest_mem *m)
{
    uint64_t low = MIN(m->ram_size, LAYOUT_LOWMEM_MAX);
    m->regions[0] = (struct guest_mem_region){0, low, m->base};
    m->nregions = 1;
    if (m->ram_size > low) {
        m->regions[1] = (struct guest_mem_region){LAYOUT_4G, m->ram_size - low, m->base + low};
        m->nregions = 2;
    }
}

int guest_mem_init(struct guest_mem *m, uint64_t ram_size, const char *mem_path, bool prealloc)
{
    memset(m, 0, sizeof(*m));
    m->fd = -1;
    int fd;
    if (mem_path) {
        char *tmpl = xasprintf("%s/vmkit-ram.XXXXXX", mem_path);
        fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd >= 0)
            unlink(tmpl);
        free(tmpl);
    } else {
        fd = memfd_create("vmkit-ram", MFD_CLOEXEC);
    }
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)ram_size) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (prealloc && fallocate(fd, 0, 0, (off_t)ram_size) < 0) {
        int e = -errno;
        close(fd);
        return e == -ENOSPC ? -ENOMEM : e;
    }
    /* MAP_NORESERVE: guest RAM is committed as the guest touches it, like QEMU's. */
    void *p = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    madvise(p, ram_size, MADV_MERGEABLE);
    m->fd = fd;
    m->base = p;
    m->ram_size = ram_size;
    guest_mem_layout(m);
    return 0;
}

void guest_mem_init_buffer(struct guest_mem *m, void *buf, uint64_t size)
{
    memset(m, 0, sizeof(*m));
    m->fd = -1;
    m->base = buf;
    m->ram_size = size;
    m->regions[0] = (struct guest_mem_region){0, size, buf};
    m->nregions = 1;
}

void guest_mem_destroy(struct guest_mem *m)
{
    if (m->fd >= 0) {
        munmap(m->base, m->ram_size);
        close(m->fd);
    }
    memset(m, 0, sizeof(*m));
    m->fd = -1;
}

int guest_mem_clear(struct guest_mem *m)
{
    if (m->fd < 0) {
        memset(m->base, 0, m->ram_size);
        return 0;
    }
    /* Punching the hole both zeroes the RAM and returns it to the host. */
    if (fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)m->ram_size) < 0) {
        memset(m->base, 0, m->ram_size);
    }
    return 0;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct guest_mem_region *r = &m->regions[i];
        if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
            return r->host + (gpa - r->gpa);
    }
    return NULL;
}

static const struct guest_mem_region *guest_mem_region_at(const struct guest_mem *m,
                                                          uint64_t gpa)
{
    for (unsigned i = 0; i < m->nregions; i++)
        if (gpa >= m->regions[i].gpa && gpa - m->regions[i].gpa < m->regions[i].size)
            return &m->regions[i];
    return NULL;
}

/* Walk [gpa, gpa+len) region by region, so a range crossing from one region into the next
 * still works. With buf NULL it only checks; callers check first, so that any byte outside RAM
 * fails the whole access before anything is copied. */
static int guest_mem_walk(const struct guest_mem *m, uint64_t gpa, uint8_t *buf, uint64_t len,
                          bool to_guest)
{
    for (uint64_t done = 0; done < len;) {
        uint64_t a = gpa + done;
        const struct guest_mem_region *r = a < gpa ? NULL : guest_mem_region_at(m, a);
        if (!r)
            return -EFAULT;
        uint64_t n = MIN(len - done, r->size - (a - r->gpa));
        if (buf && to_guest)
            memcpy(r->host + (a - r->gpa), buf + done, n);
        else if (buf)
            memcpy(buf + done, r->host + (a - r->gpa), n);
        done += n;
    }
    return 0;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *buf, uint64_t len)
{
    int r = guest_mem_walk(m, gpa, NULL, len, false);
    return r ? r : guest_mem_walk(m, gpa, buf, len, false);
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *buf, uint64_t len)
{
    int r = guest_mem_walk(m, gpa, NULL, len, true);
    if (r)
        return r;
    guest_mem_walk(m, gpa, (uint8_t *)buf, len, true);
    guest_mem_written(m, gpa, len);
    return 0;
}

uint64_t guest_mem_low_size(const struct guest_mem *m)
{
    return m->regions[0].size;
}

uint64_t guest_mem_high_size(const struct guest_mem *m)
{
    return m->nregions > 1 ? m->regions[1].size : 0;
}
