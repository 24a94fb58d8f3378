/* Helpers shared by the block layer's unit tests: temp dirs, patterns, shelling out to qemu. */
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "block/block.h"
#include <sys/wait.h>
#include <errno.h>
#define KiB_ 1024ull
#define MiB_ (1024ull * KiB_)
#define GiB_ (1024ull * MiB_)
#define TiB_ (1024ull * GiB_)

static char bt_dir[256];

static inline void bt_setup_dir(void)
{
    if (bt_dir[0])
        return;
    snprintf(bt_dir, sizeof(bt_dir), "/var/tmp/vmkit-blktest-XXXXXX");
    if (!mkdtemp(bt_dir))
        abort();
}

static inline void bt_cleanup_dir(void)
{
    if (!bt_dir[0] || getenv("VMKIT_KEEP_TEST_FILES"))
        return;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", bt_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", bt_dir);
    bt_dir[0] = 0;
}

/* A path inside the test's directory (static buffer rotation of 8). */
static inline const char *bt_path(const char *name)
{
    static char bufs[8][320];
    static int n;
    bt_setup_dir();
    char *b = bufs[n++ % 8];
    snprintf(b, 320, "%s/%s", bt_dir, name);
    return b;
}

/* Runs a shell command; returns its exit status (or -1). */
static inline int bt_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int bt_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static inline int bt_have_qemu_img(void)
{
    return bt_sh("qemu-img --version >/dev/null 2>&1") == 0 &&
           bt_sh("qemu-io --version >/dev/null 2>&1") == 0;
}

/* Deterministic data that differs per offset and seed. */
static inline void bt_pattern(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        uint64_t x = (off + i) / 8 * 0x9E3779B97F4A7C15ull + seed * 0x632BE59BD9B4E019ull;
        buf[i] = (uint8_t)(x >> (8 * ((off + i) % 8)) ^ (x >> 56));
    }
}

static inline struct blk *bt_open(const char *path, const char *fmt, bool ro)
{
    struct blk_open_opts o = {.format = fmt, .read_only = ro};
    struct blk *b = NULL;
    int r = blk_open(path, &o, NULL, &b);
    if (r < 0)
        fprintf(stderr, "bt_open(%s) = %d\n", path, r);
    assert_int_equal(r, 0);
    return b;
}

static inline void bt_create_qcow2(const char *path, uint64_t size, const char *opts)
{
    struct blk_create_opts co = {.format = "qcow2"};
    assert_int_equal(blk_create_opts_parse(&co, opts ? opts : ""), 0);
    co.format = "qcow2";
    if (size)
        co.size = size;
    assert_int_equal(blk_create(path, &co), 0);
}

/* qemu-img check exit status: 0 clean, 2 corruptions, 3 leaks only. */
static inline int bt_qemu_check(const char *path)
{
    return bt_sh("qemu-img check -q '%s' >/dev/null 2>&1", path);
}
