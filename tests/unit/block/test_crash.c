/* Crash safety: a writer is SIGKILLed at random points; afterwards qemu-img check finds no
 * corruption and every flushed write reads back. VMKIT_CRASH_KILLS=n for a longer run. */
#include "blk_test.h"
#include <fcntl.h>
#include <signal.h>
#include <time.h>

static const char *writer;

static void pattern(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(((off + i) * 2654435761u >> 7) ^ seed ^ ((off + i) >> 12));
}

struct rec {
    char op;
    uint64_t off, len;
    unsigned seed;
};

static void apply(uint8_t *model, struct rec *r, uint8_t *tmp, bool compressed_fixup)
{
    if (r->op == 'Z') {
        memset(model + r->off, 0, r->len);
    } else {
        pattern(tmp, r->len, r->off, r->seed);
        if (compressed_fixup)
            memset(tmp, tmp[0], r->len / 2);
        memcpy(model + r->off, tmp, r->len);
    }
}

static void run_config(const char *opts, uint64_t size, int kills, unsigned seed)
{
    const char *img = bt_path("crash.qcow2"), *logp = bt_path("crash.log");
    bt_create_qcow2(img, size, opts);
    uint8_t *model = calloc(1, size), *unknown = calloc(1, size), *tmp = malloc(256 * 1024);
    uint8_t *now = malloc(size);
    srand(seed);
    for (int k = 0; k < kills; k++) {
        unlink(logp); /* a writer killed before it starts leaves no log: nothing happened */
        pid_t pid = fork();
        if (pid == 0) {
            char s[16];
            snprintf(s, sizeof(s), "%u", seed * 100 + (unsigned)k);
            execl(writer, writer, img, logp, s, (char *)NULL);
            _exit(127);
        }
        struct timespec ts = {0, (long)(20 + rand() % 130) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        assert_true(WIFSIGNALED(st)); /* it was still running: a real crash */
        /* Replay the log: flushed requests are known, the rest may or may not be there. */
        FILE *f = fopen(logp, "r");
        struct rec *pend = NULL;
        size_t np = 0, cap = 0;
        char line[128];
        memset(unknown, 0, size);
        while (f && fgets(line, sizeof(line), f)) {
            if (line[0] == 'F') {
                for (size_t i = 0; i < np; i++)
                    if (pend[i].op == 'D')
                        memset(unknown + pend[i].off, 1, pend[i].len);
                    else {
                        apply(model, &pend[i], tmp, pend[i].op == 'C');
                        memset(unknown + pend[i].off, 0, pend[i].len);
                    }
                np = 0;
                continue;
            }
            struct rec r;
            unsigned long long o, l;
            if (sscanf(line, "%c %llu %llu %u", &r.op, &o, &l, &r.seed) != 4)
                continue; /* a torn last line */
            r.off = o;
            r.len = l;
            if (np == cap)
                pend = realloc(pend, (cap = cap ? cap * 2 : 64) * sizeof(*pend));
            pend[np++] = r;
        }
        if (f)
            fclose(f);
        for (size_t i = 0; i < np; i++)
            memset(unknown + pend[i].off, 1, pend[i].len);
        free(pend);
        if (bt_have_qemu_img()) {
            int rc = bt_qemu_check(img);
            if (rc != 0 && rc != 3)
                bt_sh("qemu-img check '%s' >&2", img);
            assert_true(rc == 0 || rc == 3); /* leaks are allowed, corruption is not */
        }
        struct blk *b = bt_open(img, "qcow2", true);
        assert_int_equal(blk_pread(b, 0, now, size), 0);
        blk_close(b);
        for (uint64_t i = 0; i < size; i++)
            if (!unknown[i] && now[i] != model[i]) {
                fprintf(stderr, "kill %d: flushed data lost at %llu (have %02x want %02x)\n", k,
                        (unsigned long long)i, now[i], model[i]);
                fail();
            }
        memcpy(model, now, size); /* unflushed parts: whatever survived is the new truth */
    }
    /* Finally our own check agrees, and a repair leaves a clean image. */
    struct blk_open_opts o = {.format = "qcow2", .no_repair = true};
    struct blk *b;
    assert_int_equal(blk_open(img, &o, NULL, &b), 0);
    struct blk_check_result res;
    assert_int_equal(blk_check(b, BLK_FIX_LEAKS | BLK_FIX_ERRORS, &res), 0);
    assert_int_equal(res.corruptions, 0);
    assert_int_equal(res.leaks, 0);
    blk_close(b);
    if (bt_have_qemu_img())
        assert_int_equal(bt_qemu_check(img), 0);
    free(model);
    free(unknown);
    free(tmp);
    free(now);
}

static int kills(void)
{
    const char *e = getenv("VMKIT_CRASH_KILLS");
    return e ? atoi(e) : 10;
}

static void test_crash_small_clusters(void **st) { run_config("cluster_size=4k", 8 * MiB_, kills(), 1); }
static void test_crash_lazy(void **st) { run_config("lazy_refcounts=on", 16 * MiB_, kills(), 2); }

int main(int argc, char **argv)
{
    writer = getenv("VMKIT_CRASH_WRITER");
    if (!writer && argc > 1)
        writer = argv[1];
    if (!writer || access(writer, X_OK) != 0) {
        printf("SKIP: crash_writer not found (pass its path as the first argument)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_small_clusters),
        cmocka_unit_test(test_crash_lazy),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    bt_cleanup_dir();
    return r;
}
