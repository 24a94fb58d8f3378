/* Character backends: file output, unix socket server/client, pty, and stdio escapes on a pty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "chardev/chardev.h"
#include "fake_evloop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

/* ---- a frontend with an adjustable amount of room ---- */

static uint8_t got[8192];
static size_t got_len;
static size_t room = SIZE_MAX;
static unsigned quits;

static size_t fe_can_read(void *opaque)
{
    size_t free_space = sizeof(got) - got_len;
    return room < free_space ? room : free_space;
}

static void fe_receive(void *opaque, const uint8_t *buf, size_t len)
{
    assert_true(len <= fe_can_read(opaque)); /* the backend never pushes more than allowed */
    memcpy(got + got_len, buf, len);
    got_len += len;
    if (room != SIZE_MAX)
        room -= len;
}

static unsigned breaks;

static void fe_break(void *opaque)
{
    breaks++;
}

static const struct chardev_frontend fe = {fe_can_read, fe_receive, NULL, fe_break};

static void on_quit(void *opaque)
{
    quits++;
}

static char tmpdir[64];

static int setup(void **state)
{
    got_len = 0;
    room = SIZE_MAX;
    quits = 0;
    breaks = 0;
    strcpy(tmpdir, "/tmp/vmkit-chardev-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Step the loop until cond holds or about 2 s pass. */
#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        for (int i_ = 0; i_ < 200 && !(cond); i_++)                                                \
            fake_evloop_step(10);                                                                  \
        assert_true(cond);                                                                         \
    } while (0)

static ssize_t read_some(int fd, char *buf, size_t len, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    return read(fd, buf, len);
}

/* Read from fd until the collected text contains needle (or 2 s pass). */
static bool read_until(int fd, char *acc, size_t cap, const char *needle)
{
    size_t n = strlen(acc);
    for (int i = 0; i < 200 && !strstr(acc, needle); i++) {
        fake_evloop_step(0);
        ssize_t r = read_some(fd, acc + n, cap - 1 - n, 10);
        if (r > 0) {
            n += r;
            acc[n] = 0;
        }
    }
    return strstr(acc, needle) != NULL;
}

static void test_file_backend(void **state)
{
    char path[128], spec[160];
    snprintf(path, sizeof(path), "%s/out.log", tmpdir);
    FILE *f = fopen(path, "w");
    fputs("old contents that must go away", f);
    fclose(f);
    snprintf(spec, sizeof(spec), "file:%s", path);
    struct chardev *c;
    assert_int_equal(chardev_open(spec, fake_evloop(), on_quit, NULL, &c), 0);
    chardev_set_frontend(c, &fe);
    chardev_write(c, "hello ", 6);
    chardev_write(c, "world\n", 6);
    assert_null(chardev_pty_path(c));
    chardev_close(c);
    char buf[64] = {0};
    f = fopen(path, "r");
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    assert_int_equal(n, 12);
    assert_string_equal(buf, "hello world\n");

    snprintf(spec, sizeof(spec), "file:%s/no/such/dir/x", tmpdir);
    assert_int_equal(chardev_open(spec, fake_evloop(), on_quit, NULL, &c), -ENOENT);
    assert_null(c);
}

static void test_bad_specs(void **state)
{
    struct chardev *c;
    assert_int_equal(chardev_open("tcp:localhost:1", fake_evloop(), NULL, NULL, &c), -EINVAL);
    assert_int_equal(chardev_open("unix:", fake_evloop(), NULL, NULL, &c), -EINVAL);
    assert_int_equal(chardev_open("unix:/tmp/x,bogus", fake_evloop(), NULL, NULL, &c), -EINVAL);
    assert_int_equal(chardev_open("unix:/tmp/x,server=maybe", fake_evloop(), NULL, NULL, &c),
                     -EINVAL);
    assert_int_equal(chardev_open("null", fake_evloop(), NULL, NULL, &c), 0);
    chardev_write(c, "x", 1);
    chardev_close(c);
    chardev_close(NULL);
}

static int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_unix_server_round_trip(void **state)
{
    char path[128], spec[160];
    snprintf(path, sizeof(path), "%s/console.sock", tmpdir);
    snprintf(spec, sizeof(spec), "unix:%s,server,nowait", path);
    struct chardev *c;
    assert_int_equal(chardev_open(spec, fake_evloop(), on_quit, NULL, &c), 0);
    chardev_set_frontend(c, &fe);
    chardev_write(c, "dropped ", 8); /* nobody connected yet */

    int cl = connect_unix(path);
    assert_true(cl >= 0);
    fake_evloop_step(100); /* accept */
    assert_int_equal(write(cl, "ping", 4), 4);
    RUN_UNTIL(got_len == 4);
    assert_memory_equal(got, "ping", 4);
    chardev_write(c, "pong", 4);
    char buf[32] = {0};
    assert_int_equal(read_some(cl, buf, sizeof(buf), 1000), 4);
    assert_memory_equal(buf, "pong", 4); /* nothing from before the connection */

    /* Flow control: with no room the bytes wait in the backend, none are lost. */
    room = 0;
    assert_int_equal(write(cl, "0123456789", 10), 10);
    for (int i = 0; i < 5; i++)
        fake_evloop_step(10);
    assert_int_equal(got_len, 4);
    room = 3;
    chardev_accept_input(c);
    assert_int_equal(got_len, 7);
    room = SIZE_MAX;
    chardev_accept_input(c);
    assert_int_equal(got_len, 14);
    assert_memory_equal(got + 4, "0123456789", 10);

    /* The client leaves; the next one is served. */
    close(cl);
    for (int i = 0; i < 5; i++)
        fake_evloop_step(10);
    chardev_write(c, "lost", 4);
    cl = connect_unix(path);
    assert_true(cl >= 0);
    fake_evloop_step(100);
    assert_int_equal(write(cl, "again", 5), 5);
    RUN_UNTIL(got_len == 19);
    chardev_write(c, "ok", 2);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(read_some(cl, buf, sizeof(buf), 1000), 2);
    assert_string_equal(buf, "ok");
    close(cl);
    chardev_close(c);
    assert_int_equal(access(path, F_OK), -1); /* the server removes its socket */
}

static char wait_path[128];
static int wait_client = -1;

static void *connect_later(void *arg)
{
    for (int i = 0; i < 200 && wait_client < 0; i++) {
        usleep(10000);
        wait_client = connect_unix(wait_path);
    }
    return NULL;
}

/* Without nowait, opening blocks until the first client arrives, as QEMU's server=on does. */
static void test_unix_server_wait(void **state)
{
    char spec[160];
    snprintf(wait_path, sizeof(wait_path), "%s/wait.sock", tmpdir);
    snprintf(spec, sizeof(spec), "unix:path=%s,server=on,wait=on", wait_path);
    wait_client = -1;
    pthread_t t;
    pthread_create(&t, NULL, connect_later, NULL);
    struct chardev *c;
    assert_int_equal(chardev_open(spec, fake_evloop(), on_quit, NULL, &c), 0);
    pthread_join(t, NULL);
    assert_true(wait_client >= 0);
    chardev_set_frontend(c, &fe);
    chardev_write(c, "first", 5); /* the client is already attached: nothing dropped */
    char buf[8] = {0};
    assert_int_equal(read_some(wait_client, buf, sizeof(buf), 1000), 5);
    assert_string_equal(buf, "first");
    close(wait_client);
    chardev_close(c);
}

static void test_unix_client(void **state)
{
    char path[128], spec[160];
    snprintf(path, sizeof(path), "%s/peer.sock", tmpdir);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 1), 0);
    snprintf(spec, sizeof(spec), "unix:%s", path);
    struct chardev *c;
    assert_int_equal(chardev_open(spec, fake_evloop(), on_quit, NULL, &c), 0);
    chardev_set_frontend(c, &fe);
    int peer = accept(ls, NULL, NULL);
    assert_true(peer >= 0);
    chardev_write(c, "hi", 2);
    char buf[8] = {0};
    assert_int_equal(read_some(peer, buf, sizeof(buf), 1000), 2);
    assert_string_equal(buf, "hi");
    assert_int_equal(write(peer, "yo", 2), 2);
    RUN_UNTIL(got_len == 2);
    assert_memory_equal(got, "yo", 2);
    close(peer);
    close(ls);
    for (int i = 0; i < 5; i++)
        fake_evloop_step(10);
    chardev_write(c, "gone", 4); /* dropped, no SIGPIPE, no crash */
    chardev_close(c);
}

/* Containers without devpts have no pseudo-terminals: those tests say so and skip. */
static bool have_pty(void)
{
    int m, s;
    if (openpty(&m, &s, NULL, NULL, NULL) < 0) {
        print_message("SKIP: no pseudo-terminals here (openpty: %s)\n", strerror(errno));
        return false;
    }
    close(m);
    close(s);
    return true;
}

static void test_pty_backend(void **state)
{
    if (!have_pty())
        skip();
    struct chardev *c;
    assert_int_equal(chardev_open("pty", fake_evloop(), on_quit, NULL, &c), 0);
    chardev_set_frontend(c, &fe);
    const char *path = chardev_pty_path(c);
    assert_non_null(path);
    assert_true(!strncmp(path, "/dev/pts/", 9));
    int fd = open(path, O_RDWR | O_NOCTTY);
    assert_true(fd >= 0);
    struct termios tio;
    tcgetattr(fd, &tio);
    cfmakeraw(&tio);
    tcsetattr(fd, TCSANOW, &tio);
    assert_int_equal(write(fd, "in\x01x", 4), 4);
    RUN_UNTIL(got_len == 4);
    assert_memory_equal(got, "in\x01x", 4); /* no escapes on a pty: bytes pass through */
    assert_int_equal(quits, 0);
    chardev_write(c, "out", 3);
    char buf[16] = {0};
    assert_true(read_until(fd, buf, sizeof(buf), "out"));
    close(fd);
    chardev_close(c);
}

/* stdio on a pseudo-terminal: raw mode, the escapes, and the terminal put back. */
static void test_stdio_escapes_and_restore(void **state)
{
    if (!have_pty())
        skip();
    int master, slave;
    assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
    int saved0 = dup(0), saved1 = dup(1);
    dup2(slave, 0);
    dup2(slave, 1);
    struct termios before;
    tcgetattr(0, &before);
    assert_true(before.c_lflag & ICANON);

    struct chardev *c;
    assert_int_equal(chardev_open("stdio", fake_evloop(), on_quit, NULL, &c), 0);
    chardev_set_frontend(c, &fe);
    struct termios raw;
    tcgetattr(0, &raw);
    assert_false(raw.c_lflag & (ICANON | ECHO | ISIG));
    assert_false(raw.c_iflag & ICRNL);

    /* C-a C-a sends one C-a; C-a h prints the help and sends nothing; C-c reaches the guest. */
    assert_int_equal(write(master, "ab\x01\x01" "c\x01hd\x03", 9), 9);
    RUN_UNTIL(got_len == 6);
    assert_memory_equal(got, "ab\x01" "cd\x03", 6);
    char out[2048] = {0};
    /* Read up to the help's last line: the pty may hand it over in several pieces. */
    assert_true(read_until(master, out, sizeof(out), "C-a C-a  sends C-a"));
    assert_non_null(strstr(out, "C-a h    print this help"));
    assert_non_null(strstr(out, "C-a x    exit emulator"));

    /* The escape works even while the guest takes no input. */
    room = 0;
    assert_int_equal(write(master, "zz\x01x", 4), 4);
    RUN_UNTIL(quits == 1);
    assert_int_equal(got_len, 6);
    room = SIZE_MAX;
    chardev_accept_input(c);
    assert_int_equal(got_len, 8);
    assert_memory_equal(got + 6, "zz", 2);

    /* C-a b sends a break after what was typed before it. */
    assert_int_equal(write(master, "k\x01" "b", 3), 3);
    RUN_UNTIL(breaks == 1);
    assert_int_equal(got_len, 9);
    assert_int_equal(got[8], 'k');
    got_len = 8;

    /* C-a c is reserved for the monitor: a note, nothing sent. */
    assert_int_equal(write(master, "\x01" "c", 2), 2);
    memset(out, 0, sizeof(out));
    assert_true(read_until(master, out, sizeof(out), "monitor"));
    assert_int_equal(got_len, 8);

    chardev_write(c, "guest says hi\n", 14);
    memset(out, 0, sizeof(out));
    assert_true(read_until(master, out, sizeof(out), "guest says hi"));

    /* C-a t: lines after the next newline carry an elapsed-time stamp. */
    assert_int_equal(write(master, "\x01t", 2), 2);
    for (int i = 0; i < 5; i++)
        fake_evloop_step(10);
    chardev_write(c, "one\ntwo\n", 8);
    memset(out, 0, sizeof(out));
    assert_true(read_until(master, out, sizeof(out), "two"));
    assert_non_null(strstr(out, "[00:00:00."));
    assert_true(strstr(out, "[00:00:00.") > strstr(out, "one"));
    assert_int_equal(write(master, "\x01t", 2), 2);
    for (int i = 0; i < 5; i++)
        fake_evloop_step(10);
    assert_int_equal(got_len, 8);

    chardev_close(c);
    struct termios after;
    tcgetattr(0, &after);
    assert_int_equal(after.c_lflag, before.c_lflag);
    assert_int_equal(after.c_iflag, before.c_iflag);
    assert_false(fcntl(0, F_GETFL) & O_NONBLOCK);

    /* chardev_restore_terminal alone (what a signal handler calls) undoes raw mode too. */
    assert_int_equal(chardev_open("stdio", fake_evloop(), on_quit, NULL, &c), 0);
    tcgetattr(0, &raw);
    assert_false(raw.c_lflag & ICANON);
    chardev_restore_terminal();
    tcgetattr(0, &after);
    assert_int_equal(after.c_lflag, before.c_lflag);
    chardev_close(c);

    dup2(saved0, 0);
    dup2(saved1, 1);
    close(saved0);
    close(saved1);
    close(master);
    close(slave);
}

static void test_stdio_pipe_eof(void **state)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved0 = dup(0);
    dup2(p[0], 0);
    struct chardev *c;
    assert_int_equal(chardev_open("stdio", fake_evloop(), on_quit, NULL, &c), 0);
    chardev_set_frontend(c, &fe);
    assert_int_equal(write(p[1], "piped", 5), 5);
    close(p[1]);
    RUN_UNTIL(got_len == 5);
    assert_memory_equal(got, "piped", 5);
    /* EOF: stdin is no longer watched (a closed pipe would otherwise spin the loop). */
    RUN_UNTIL(!fake_evloop_watching(0));
    chardev_close(c);
    dup2(saved0, 0);
    close(saved0);
    close(p[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_server_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_server_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pty_backend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdio_escapes_and_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdio_pipe_eof, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
