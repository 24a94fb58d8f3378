/* Fuzz target: open a qcow2 image made of the input bytes, read it, check it, write to it.
 * Built as a libFuzzer target with -Dfuzz=true (clang), and as a corpus replayer always. */
#include "block/block.h"
#include "base/log.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct blk_aio *engine(void)
{
    static struct blk_aio *e;
    if (!e && blk_aio_new(BLK_AIO_THREADS, &e) < 0)
        abort();
    return e;
}

static void exercise(struct blk *b, bool rw)
{
    static uint8_t buf[256 * 1024];
    uint64_t size = blk_size(b);
    /* The start, some clusters spread over the disk, and the end. */
    for (uint64_t off = 0; off < size && off < 1024 * 1024; off += sizeof(buf))
        (void)blk_pread(b, off, buf, (size_t)(size - off < sizeof(buf) ? size - off : sizeof(buf)));
    for (int i = 1; i < 8 && size; i++) {
        uint64_t off = size / 8 * (uint64_t)i;
        (void)blk_pread(b, off, buf, (size_t)(size - off < 4096 ? size - off : 4096));
    }
    uint64_t pos = 0, pnum;
    unsigned status;
    for (int i = 0; i < 64 && pos < size; i++) {
        if (blk_block_status(b, pos, size - pos, &pnum, &status, NULL, NULL) < 0 || !pnum)
            break;
        pos += pnum;
    }
    struct blk_check_result res;
    (void)blk_check(b, rw ? BLK_FIX_ERRORS | BLK_FIX_LEAKS : 0, &res);
    struct blk_snapshot *list;
    unsigned n;
    if (blk_snapshot_list(b, &list, &n) == 0)
        blk_snapshot_list_free(list, n);
    if (!rw)
        return;
    memset(buf, 0xa5, 8192);
    (void)blk_pwrite(b, 0, buf, size < 8192 ? (size_t)size : 8192);
    if (size > 100000)
        (void)blk_pwrite(b, size / 2 + 17, buf, 5000);
    (void)blk_write_zeroes_sync(b, 0, size < 65536 ? size : 65536, BLK_ZERO_MAY_UNMAP);
    (void)blk_discard_sync(b, size / 4, size / 4);
    (void)blk_flush_sync(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_ERROR);
    int fd = memfd_create("fuzz.qcow2", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    /* Backing files would reach outside the input: open without them. */
    struct blk_open_opts o = {.format = "qcow2", .read_only = true, .no_backing = true,
                              .aio = BLK_AIO_THREADS, .no_repair = true};
    struct blk *b;
    if (blk_open(path, &o, engine(), &b) == 0) {
        exercise(b, false);
        blk_close(b);
        o.read_only = false;
        o.no_repair = false;
        if (blk_open(path, &o, engine(), &b) == 0) {
            exercise(b, true);
            blk_close(b);
        }
    }
    close(fd);
    return 0;
}
