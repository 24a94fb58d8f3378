/* Crash-test writer: random writes and flushes to an image, logging each request before it
 * is issued and each completed flush, until it is killed. Usage: crash_writer IMAGE LOG SEED */
#include "block/block.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void pattern(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(((off + i) * 2654435761u >> 7) ^ seed ^ ((off + i) >> 12));
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: crash_writer IMAGE LOG SEED\n");
        return 2;
    }
    unsigned seed = (unsigned)atoi(argv[3]);
    int log = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    struct blk_open_opts o = {.format = "qcow2"};
    struct blk *b;
    if (log < 0 || blk_open(argv[1], &o, NULL, &b) < 0)
        return 1;
    uint64_t size = blk_size(b);
    struct blk_info info;
    blk_get_info(b, &info);
    uint64_t cs = info.cluster_size;
    srand(seed);
    uint8_t *buf = malloc(256 * 1024);
    for (unsigned gen = 1;; gen++) {
        int op = rand() % 20;
        uint64_t len = 1 + (uint64_t)rand() % (op < 10 ? 4096 : 200000);
        uint64_t off = ((uint64_t)rand() * 4099u) % size;
        if (off + len > size)
            len = size - off;
        unsigned pseed = (seed * 1000003u + gen) & 0xffffff;
        char line[96];
        int r;
        if (op == 19 && size >= cs) {
            off = (off / cs) * cs;
            len = (cs < size - off ? cs : size - off);
            snprintf(line, sizeof(line), "C %llu %llu %u\n", (unsigned long long)off,
                     (unsigned long long)len, pseed);
            (void)!write(log, line, strlen(line));
            pattern(buf, len, off, pseed);
            memset(buf, buf[0], len / 2); /* compressible */
            r = blk_pwrite_compressed(b, off, buf, len);
        } else if (op == 16) {
            /* Discard: frees clusters, the most delicate ordering. Contents become undefined. */
            snprintf(line, sizeof(line), "D %llu %llu 0\n", (unsigned long long)off,
                     (unsigned long long)len);
            (void)!write(log, line, strlen(line));
            r = blk_discard_sync(b, off, len);
        } else if (op >= 17) {
            snprintf(line, sizeof(line), "Z %llu %llu 0\n", (unsigned long long)off,
                     (unsigned long long)len);
            (void)!write(log, line, strlen(line));
            r = blk_write_zeroes_sync(b, off, len, op == 18 ? BLK_ZERO_MAY_UNMAP : 0);
        } else {
            snprintf(line, sizeof(line), "W %llu %llu %u\n", (unsigned long long)off,
                     (unsigned long long)len, pseed);
            (void)!write(log, line, strlen(line));
            pattern(buf, len, off, pseed);
            r = blk_pwrite(b, off, buf, len);
        }
        if (r < 0) {
            fprintf(stderr, "crash_writer: I/O error %d\n", r);
            return 1;
        }
        if (rand() % 4 == 0) {
            if (blk_flush_sync(b) < 0)
                return 1;
            (void)!write(log, "F\n", 2);
        }
    }
}
