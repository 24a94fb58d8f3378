/* Host-side character backends (stdio, pty, file, unix socket, null) with QEMU's Ctrl-a escapes. */
#include "chardev/chardev.h"

#include "base/evloop.h"
#include "base/log.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CHR_INBUF 4096
#define CHR_OUTBUF (256 * 1024)
#define CHR_ESCAPE 0x01 /* Ctrl-a */
#define CHR_CLOSE_FLUSH_MS 1000

enum chardev_kind { CHR_NULL, CHR_STDIO, CHR_PTY, CHR_FILE, CHR_UNIX_SERVER, CHR_UNIX_CLIENT };

/* An fd as the event loop knows it: which events we asked for. */
struct chr_watch {
    int fd;
    bool registered;
    bool unpollable; /* regular files and /dev/null: epoll refuses them, and they never block */
    uint32_t events;
};

struct chardev {
    enum chardev_kind kind;
    char *spec;
    struct evloop *ev;
    chardev_quit_fn quit;
    void *quit_opaque;

    int in_fd, out_fd; /* -1 when absent; equal for pty and sockets */
    int listen_fd;     /* unix server */
    int pty_slave_fd;  /* held open so the master never sees a hangup when nobody listens */
    char *pty_path;
    char *sock_path;
    bool is_socket;
    bool in_eof;
    struct chr_watch w_in, w_out, w_listen;

    struct chardev_frontend fe;
    bool has_fe;
    bool delivering;

    /* Input read from the host but not yet taken by the frontend. Reading ahead keeps the
     * escapes (Ctrl-a x) working while the guest is not reading. */
    uint8_t inbuf[CHR_INBUF];
    size_t in_len;

    /* Output the host could not take yet; flushed when the fd is writable. */
    uint8_t *obuf;
    size_t ohead, olen;

    /* stdio escapes and timestamps */
    bool mux;
    bool got_escape;
    bool timestamps;
    bool line_start;
    uint64_t ts_start_ns;
};

/* ---- terminal state, restorable from a signal handler ---- */

static struct termios saved_tio;
static volatile sig_atomic_t saved_tio_valid;
static int saved_in_flags = -1, saved_out_flags = -1;

void chardev_restore_terminal(void)
{
    /* Only async-signal-safe calls here. */
    if (saved_tio_valid)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
    if (saved_in_flags >= 0)
        fcntl(STDIN_FILENO, F_SETFL, saved_in_flags);
    if (saved_out_flags >= 0)
        fcntl(STDOUT_FILENO, F_SETFL, saved_out_flags);
}

static void chr_fatal_signal(int sig)
{
    chardev_restore_terminal();
    /* SA_RESETHAND put the default action back: re-raise to die as the signal intended. */
    raise(sig);
}

static void chr_install_restore_handlers(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    atexit(chardev_restore_terminal);
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS, SIGILL,
                               SIGFPE, SIGABRT};
    for (unsigned i = 0; i < ARRAY_SIZE(sigs); i++) {
        struct sigaction old;
        /* Whoever installed a handler already (the VM layer, a sanitizer) keeps it and is
         * expected to call chardev_restore_terminal itself. */
        if (sigaction(sigs[i], NULL, &old) < 0 || old.sa_handler != SIG_DFL ||
            (old.sa_flags & SA_SIGINFO))
            continue;
        struct sigaction sa = {.sa_handler = chr_fatal_signal,
                               .sa_flags = SA_RESETHAND | SA_NODEFER};
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
    struct sigaction old;
    /* A closed stdout pipe must drop output, not kill the VM. */
    if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO))
        signal(SIGPIPE, SIG_IGN);
}

/* Raw mode as QEMU's stdio sets it: no echo, no line editing, no signals from keys (Ctrl-c
 * goes to the guest), output post-processing kept so "\n" still returns the carriage. */
static int chr_stdio_raw(void)
{
    struct termios tio;
    if (tcgetattr(STDIN_FILENO, &tio) < 0)
        return -errno;
    if (!saved_tio_valid) {
        saved_tio = tio;
        saved_tio_valid = 1;
    }
    tio.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    tio.c_oflag |= OPOST;
    tio.c_lflag &= ~(ECHO | ECHONL | ICANON | IEXTEN | ISIG);
    tio.c_cflag &= ~(CSIZE | PARENB);
    tio.c_cflag |= CS8;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &tio) < 0)
        return -errno;
    return 0;
}

static int chr_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* ---- event registration ---- */

static void chr_in_event(void *opaque, uint32_t events);
static void chr_out_event(void *opaque, uint32_t events);
static void chr_inout_event(void *opaque, uint32_t events);

static void chr_watch_set(struct chardev *c, struct chr_watch *w, uint32_t events,
                          evloop_fd_cb cb)
{
    if (w->fd < 0 || !c->ev || w->unpollable)
        return;
    if (!events) {
        /* Deregister rather than wait for nothing: epoll reports a hangup even then, and a
         * closed pipe would spin the loop. */
        if (w->registered)
            evloop_del_fd(c->ev, w->fd);
        w->registered = false;
        w->events = 0;
        return;
    }
    if (!w->registered) {
        int ret = evloop_add_fd(c->ev, w->fd, events, cb, c);
        if (ret < 0) {
            w->unpollable = true;
            if (ret != -EPERM)
                log_warn("chardev %s: cannot watch fd %d: %s", c->spec, w->fd, strerror(-ret));
            return;
        }
        w->registered = true;
        w->events = events;
    } else if (w->events != events) {
        evloop_mod_fd(c->ev, w->fd, events);
        w->events = events;
    }
}

static void chr_watch_drop(struct chardev *c, struct chr_watch *w)
{
    if (w->registered && c->ev)
        evloop_del_fd(c->ev, w->fd);
    w->registered = false;
    w->events = 0;
}

static bool chr_want_input(const struct chardev *c)
{
    return c->in_fd >= 0 && !c->in_eof && c->in_len < CHR_INBUF;
}

static void chr_update_watches(struct chardev *c)
{
    uint32_t in = chr_want_input(c) ? EPOLLIN : 0;
    uint32_t out = (c->out_fd >= 0 && c->olen) ? EPOLLOUT : 0;
    if (c->in_fd >= 0 && c->in_fd == c->out_fd) {
        c->w_in.fd = c->in_fd;
        chr_watch_set(c, &c->w_in, in | out, chr_inout_event);
        return;
    }
    c->w_in.fd = c->in_fd;
    c->w_out.fd = c->out_fd;
    chr_watch_set(c, &c->w_in, in, chr_in_event);
    chr_watch_set(c, &c->w_out, out, chr_out_event);
}

/* ---- output ---- */

static ssize_t chr_raw_write(struct chardev *c, const void *buf, size_t len)
{
    if (c->is_socket)
        return send(c->out_fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    return write(c->out_fd, buf, len);
}

static void chr_flush(struct chardev *c)
{
    while (c->olen) {
        ssize_t n = chr_raw_write(c, c->obuf + c->ohead, c->olen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                log_once(LOG_WARN, "chardev %s: write failed (%s); output is dropped",
                         c->spec, strerror(errno));
                c->olen = 0;
            }
            break;
        }
        c->ohead += n;
        c->olen -= n;
    }
    if (!c->olen)
        c->ohead = 0;
}

static void chr_output(struct chardev *c, const void *buf, size_t len)
{
    if (c->out_fd < 0 || !len)
        return;
    bool was_empty = !c->olen;
    if (was_empty) {
        ssize_t n;
        do
            n = chr_raw_write(c, buf, len);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_once(LOG_WARN, "chardev %s: write failed (%s); output is dropped", c->spec,
                         strerror(errno));
                return;
            }
            n = 0;
        }
        buf = (const uint8_t *)buf + n;
        len -= n;
        if (!len)
            return;
    }
    if (!c->obuf)
        c->obuf = xmalloc(CHR_OUTBUF);
    if (c->ohead + c->olen + len > CHR_OUTBUF && c->ohead) {
        memmove(c->obuf, c->obuf + c->ohead, c->olen);
        c->ohead = 0;
    }
    size_t room = CHR_OUTBUF - c->ohead - c->olen;
    if (len > room) {
        log_once(LOG_WARN, "chardev %s: the reader is not keeping up; output is dropped",
                 c->spec);
        len = room;
    }
    memcpy(c->obuf + c->ohead + c->olen, buf, len);
    c->olen += len;
    if (was_empty && c->olen)
        chr_update_watches(c);
}

static void chr_output_str(struct chardev *c, const char *s)
{
    chr_output(c, s, strlen(s));
}

static void chr_output_timestamped(struct chardev *c, const uint8_t *buf, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (c->line_start) {
            chr_output(c, buf + start, i - start);
            start = i;
            uint64_t ms = (clock_monotonic_ns() - c->ts_start_ns) / 1000000;
            char ts[48];
            snprintf(ts, sizeof(ts), "[%02u:%02u:%02u.%03u] ", (unsigned)(ms / 3600000),
                     (unsigned)(ms / 60000 % 60), (unsigned)(ms / 1000 % 60),
                     (unsigned)(ms % 1000));
            chr_output_str(c, ts);
            c->line_start = false;
        }
        if (buf[i] == '\n')
            c->line_start = true;
    }
    chr_output(c, buf + start, len - start);
}

void chardev_write(struct chardev *c, const void *buf, size_t len)
{
    if (!c)
        return;
    if (c->timestamps)
        chr_output_timestamped(c, buf, len);
    else
        chr_output(c, buf, len);
}

/* ---- input ---- */

static void chr_drain(struct chardev *c);

static void chr_deliver(struct chardev *c)
{
    if (c->delivering)
        return; /* accept_input called from inside receive: the loop below continues */
    c->delivering = true;
    while (c->in_len && c->has_fe) {
        size_t n = c->fe.can_read(c->fe.opaque);
        if (!n)
            break;
        n = MIN(n, c->in_len);
        uint8_t tmp[CHR_INBUF];
        memcpy(tmp, c->inbuf, n);
        memmove(c->inbuf, c->inbuf + n, c->in_len - n);
        c->in_len -= n;
        c->fe.receive(c->fe.opaque, tmp, n);
    }
    if (!c->has_fe)
        c->in_len = 0; /* nobody listens: input is dropped, as on an unconnected port */
    c->delivering = false;
    chr_update_watches(c);
}

static void chr_print_help(struct chardev *c)
{
    static const char *const help[] = {
        "% h    print this help\n\r",
        "% x    exit emulator\n\r",
        "% s    save disk data back to file (if -snapshot)\n\r",
        "% t    toggle console timestamps\n\r",
        "% b    send break (magic sysrq)\n\r",
        "% c    switch between console and monitor\n\r",
        "% %  sends %\n\r",
    };
    chr_output_str(c, "\n\r");
    for (unsigned i = 0; i < ARRAY_SIZE(help); i++) {
        for (const char *p = help[i]; *p; p++) {
            if (*p == '%')
                chr_output_str(c, "C-a");
            else
                chr_output(c, p, 1);
        }
    }
}

/* One byte typed on the console: true when it goes to the guest. Mirrors QEMU's mux. */
static bool chr_escape_byte(struct chardev *c, uint8_t ch)
{
    if (!c->got_escape) {
        if (ch == CHR_ESCAPE) {
            c->got_escape = true;
            return false;
        }
        return true;
    }
    c->got_escape = false;
    switch (ch) {
    case CHR_ESCAPE:
        return true;
    case 'h':
    case '?':
        chr_print_help(c);
        break;
    case 'x':
        chr_output_str(c, "vmkit: Terminated\n\r");
        if (c->quit) {
            c->quit(c->quit_opaque);
        } else {
            chr_drain(c);
            exit(0); /* what QEMU does; atexit restores the terminal */
        }
        break;
    case 't':
        c->timestamps = !c->timestamps;
        c->ts_start_ns = clock_monotonic_ns();
        c->line_start = false;
        break;
    case 'c':
        chr_output_str(c, "\n\rvmkit: the monitor is not on this console; use -monitor or "
                          "-qmp\n\r");
        break;
    case 'b':
        /* Whatever was typed before the break goes first, as far as the guest takes it. */
        chr_deliver(c);
        if (c->has_fe && c->fe.send_break)
            c->fe.send_break(c->fe.opaque);
        break;
    case 's':
    default:
        break; /* QEMU swallows unknown escapes too */
    }
    return false;
}

static void chr_close_client(struct chardev *c);

static void chr_read_input(struct chardev *c)
{
    size_t room = CHR_INBUF - c->in_len;
    if (!room || c->in_fd < 0)
        return;
    uint8_t buf[CHR_INBUF];
    ssize_t n = read(c->in_fd, buf, room);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        if (c->kind == CHR_UNIX_SERVER) {
            chr_close_client(c);
            return;
        }
        log_warn("chardev %s: read failed (%s); input stops", c->spec, strerror(errno));
        n = 0;
    }
    if (n == 0) {
        if (c->kind == CHR_UNIX_SERVER) {
            chr_close_client(c);
            return;
        }
        c->in_eof = true;
        if (c->kind == CHR_UNIX_CLIENT) {
            /* The server left: nothing will read what we send either. */
            chr_watch_drop(c, &c->w_in);
            close(c->in_fd);
            c->in_fd = c->out_fd = -1;
            c->olen = c->ohead = 0;
            return;
        }
        chr_update_watches(c);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (!c->mux || chr_escape_byte(c, buf[i]))
            c->inbuf[c->in_len++] = buf[i];
    }
    chr_deliver(c);
}

static void chr_in_event(void *opaque, uint32_t events)
{
    chr_read_input(opaque);
}

static void chr_out_event(void *opaque, uint32_t events)
{
    struct chardev *c = opaque;
    if (events & (EPOLLERR | EPOLLHUP) && !(events & EPOLLOUT)) {
        c->olen = 0; /* the reader went away */
    } else {
        chr_flush(c);
    }
    chr_update_watches(c);
}

static void chr_inout_event(void *opaque, uint32_t events)
{
    struct chardev *c = opaque;
    if (events & EPOLLOUT)
        chr_flush(c);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        chr_read_input(c);
    if (c->in_fd >= 0)
        chr_update_watches(c);
}

/* ---- unix sockets ---- */

static void chr_accept_event(void *opaque, uint32_t events);

static void chr_attach_client(struct chardev *c, int fd)
{
    c->in_fd = c->out_fd = fd;
    c->w_in = (struct chr_watch){.fd = fd};
    c->in_eof = false;
    c->got_escape = false;
    /* One client at a time: others wait in the backlog until this one leaves. */
    chr_watch_drop(c, &c->w_listen);
    chr_update_watches(c);
}

static void chr_close_client(struct chardev *c)
{
    if (c->in_fd < 0)
        return;
    chr_watch_drop(c, &c->w_in);
    close(c->in_fd);
    c->in_fd = c->out_fd = -1;
    c->w_in.fd = -1;
    c->olen = c->ohead = 0;
    if (c->listen_fd >= 0)
        chr_watch_set(c, &c->w_listen, EPOLLIN, chr_accept_event);
}

static void chr_accept_event(void *opaque, uint32_t events)
{
    struct chardev *c = opaque;
    int fd = accept4(c->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (c->in_fd >= 0) {
        close(fd);
        return;
    }
    chr_attach_client(c, fd);
}

static int chr_parse_onoff(const char *v, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true"}, *const no[] = {"off", "no", "false"};
    for (unsigned i = 0; i < ARRAY_SIZE(yes); i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

/* "[path=]PATH[,server[=on|off]][,nowait|,wait=on|off]", QEMU's spelling as the config layer
 * accepts it: "server"/"wait" alone mean on, "noserver"/"nowait" off; ",," is a comma in PATH. */
static int chr_parse_unix(const char *spec, const char *arg, char **path, bool *server,
                          bool *wait)
{
    *server = false;
    *wait = true;
    size_t n = strlen(arg);
    char *p = xmalloc(n + 1), *o = p;
    const char *s = arg;
    if (!strncmp(s, "path=", 5))
        s += 5;
    while (*s) {
        if (*s == ',') {
            if (s[1] == ',') {
                *o++ = ',';
                s += 2;
                continue;
            }
            break;
        }
        *o++ = *s++;
    }
    *o = 0;
    while (*s == ',') {
        s++;
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char opt[32];
        if (len >= sizeof(opt))
            goto bad;
        memcpy(opt, s, len);
        opt[len] = 0;
        s += len;
        char *eq = strchr(opt, '=');
        const char *key = opt;
        bool val = true;
        if (eq) {
            *eq = 0;
            if (chr_parse_onoff(eq + 1, &val) < 0)
                goto bad;
        } else if (!strncmp(opt, "no", 2)) {
            key = opt + 2;
            val = false;
        }
        if (!strcmp(key, "server"))
            *server = val;
        else if (!strcmp(key, "wait"))
            *wait = val;
        else
            goto bad;
    }
    if (!*p) {
        log_error("chardev %s: the socket path is missing; use unix:PATH[,server][,nowait]", spec);
        free(p);
        return -EINVAL;
    }
    *path = p;
    return 0;
bad:
    log_error("chardev %s: unknown socket option; use unix:PATH[,server][,nowait]", spec);
    free(p);
    return -EINVAL;
}

static int chr_open_unix(struct chardev *c, const char *arg)
{
    char *path;
    bool server, wait;
    int ret = chr_parse_unix(c->spec, arg, &path, &server, &wait);
    if (ret < 0)
        return ret;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_error("chardev %s: the socket path is longer than %zu bytes", c->spec,
                  sizeof(sa.sun_path) - 1);
        free(path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    c->sock_path = path;
    c->is_socket = true;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ret = -errno;
        log_error("chardev %s: cannot create a socket: %s", c->spec, strerror(errno));
        return ret;
    }
    if (!server) {
        c->kind = CHR_UNIX_CLIENT;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            ret = -errno;
            log_error("chardev %s: cannot connect to %s: %s; start the server first", c->spec,
                      path, strerror(errno));
            close(fd);
            return ret;
        }
        chr_set_nonblock(fd);
        chr_attach_client(c, fd);
        return 0;
    }
    c->kind = CHR_UNIX_SERVER;
    /* As QEMU: a stale socket file from an earlier run is replaced. */
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        ret = -errno;
        log_error("chardev %s: cannot listen on %s: %s; check the directory exists and is "
                  "writable", c->spec, path, strerror(errno));
        close(fd);
        return ret;
    }
    c->listen_fd = fd;
    c->w_listen.fd = fd;
    if (wait) {
        fprintf(stderr, "vmkit: waiting for connection on: disconnected:unix:%s,server=on\n",
                path);
        int cfd;
        do
            cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        while (cfd < 0 && errno == EINTR);
        if (cfd < 0) {
            ret = -errno;
            log_error("chardev %s: accept failed: %s", c->spec, strerror(errno));
            return ret;
        }
        chr_set_nonblock(cfd);
        chr_set_nonblock(fd);
        chr_attach_client(c, cfd);
        return 0;
    }
    chr_set_nonblock(fd);
    chr_watch_set(c, &c->w_listen, EPOLLIN, chr_accept_event);
    return 0;
}

/* ---- the other backends ---- */

static int chr_open_stdio(struct chardev *c)
{
    c->kind = CHR_STDIO;
    c->mux = true;
    c->in_fd = STDIN_FILENO;
    c->out_fd = STDOUT_FILENO;
    chr_install_restore_handlers();
    if (isatty(STDIN_FILENO)) {
        int ret = chr_stdio_raw();
        if (ret < 0)
            log_warn("chardev %s: cannot put the terminal in raw mode: %s", c->spec,
                     strerror(-ret));
    }
    /* Both flags first: on a terminal fds 0 and 1 usually share one open file description. */
    if (saved_in_flags < 0 && saved_out_flags < 0) {
        int in_fl = fcntl(STDIN_FILENO, F_GETFL), out_fl = fcntl(STDOUT_FILENO, F_GETFL);
        saved_in_flags = in_fl;
        saved_out_flags = out_fl;
    }
    chr_set_nonblock(STDIN_FILENO);
    chr_set_nonblock(STDOUT_FILENO);
    return 0;
}

static int chr_open_pty(struct chardev *c, const char *label)
{
    c->kind = CHR_PTY;
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || grantpt(fd) < 0 || unlockpt(fd) < 0) {
        int ret = -errno;
        log_error("chardev %s: cannot allocate a pseudo-terminal: %s", c->spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        return ret;
    }
    char name[128];
    if (ptsname_r(fd, name, sizeof(name)) != 0) {
        int ret = -errno;
        log_error("chardev %s: cannot name the pseudo-terminal: %s", c->spec, strerror(errno));
        close(fd);
        return ret;
    }
    int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave >= 0) {
        /* The guest's console is already a terminal: the pty must pass bytes through. */
        struct termios tio;
        if (tcgetattr(slave, &tio) == 0) {
            cfmakeraw(&tio);
            tcsetattr(slave, TCSANOW, &tio);
        }
    }
    c->pty_slave_fd = slave;
    c->pty_path = xstrdup(name);
    c->in_fd = c->out_fd = fd;
    chr_set_nonblock(fd);
    fprintf(stderr, "char device redirected to %s (label %s)\n", name, label);
    return 0;
}

static int chr_open_file(struct chardev *c, const char *path)
{
    c->kind = CHR_FILE;
    if (!*path) {
        log_error("chardev %s: the file name is missing; use file:PATH", c->spec);
        return -EINVAL;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) {
        int ret = -errno;
        log_error("chardev %s: cannot open %s for writing: %s", c->spec, path, strerror(errno));
        return ret;
    }
    c->out_fd = fd;
    return 0;
}

int chardev_open_label(const char *spec, const char *label, struct evloop *ev,
                       chardev_quit_fn quit, void *quit_opaque, struct chardev **out)
{
    struct chardev *c = xzalloc(sizeof(*c));
    c->spec = xstrdup(spec);
    c->ev = ev;
    c->quit = quit;
    c->quit_opaque = quit_opaque;
    c->in_fd = c->out_fd = c->listen_fd = c->pty_slave_fd = -1;
    c->w_in.fd = c->w_out.fd = c->w_listen.fd = -1;
    int ret;
    if (!strcmp(spec, "stdio") || !strcmp(spec, "mon:stdio"))
        ret = chr_open_stdio(c);
    else if (!strcmp(spec, "pty"))
        ret = chr_open_pty(c, label ? label : "serial0");
    else if (!strncmp(spec, "file:", 5))
        ret = chr_open_file(c, spec + 5);
    else if (!strncmp(spec, "unix:", 5))
        ret = chr_open_unix(c, spec + 5);
    else if (!strcmp(spec, "null") || !strcmp(spec, "none"))
        ret = 0;
    else {
        log_error("chardev %s: unknown character device; use stdio, mon:stdio, pty, null, "
                  "none, file:PATH or unix:PATH[,server][,nowait]", spec);
        ret = -EINVAL;
    }
    if (ret < 0) {
        chardev_close(c);
        *out = NULL;
        return ret;
    }
    chr_update_watches(c);
    *out = c;
    return 0;
}

int chardev_open(const char *spec, struct evloop *ev, chardev_quit_fn quit, void *quit_opaque,
                 struct chardev **out)
{
    return chardev_open_label(spec, "serial0", ev, quit, quit_opaque, out);
}

/* Give pending terminal output a bounded chance to reach the user: the guest's last words
 * matter. A pty or socket nobody reads would only delay the exit. */
static void chr_drain(struct chardev *c)
{
    if (c->kind != CHR_STDIO)
        return;
    uint64_t deadline = clock_monotonic_ns() + CHR_CLOSE_FLUSH_MS * 1000000ULL;
    while (c->olen && c->out_fd >= 0 && clock_monotonic_ns() < deadline) {
        size_t before = c->olen;
        chr_flush(c);
        if (c->olen && c->olen == before) {
            struct timespec ts = {0, 10 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
}

void chardev_close(struct chardev *c)
{
    if (!c)
        return;
    chr_drain(c);
    chr_watch_drop(c, &c->w_in);
    chr_watch_drop(c, &c->w_out);
    chr_watch_drop(c, &c->w_listen);
    if (c->kind == CHR_STDIO) {
        chardev_restore_terminal();
        /* Forget it: fds 0 and 1 may be something else by exit time. */
        saved_tio_valid = 0;
        saved_in_flags = saved_out_flags = -1;
    } else {
        if (c->in_fd >= 0)
            close(c->in_fd);
        if (c->out_fd >= 0 && c->out_fd != c->in_fd)
            close(c->out_fd);
    }
    if (c->listen_fd >= 0) {
        close(c->listen_fd);
        if (c->sock_path)
            unlink(c->sock_path);
    }
    if (c->pty_slave_fd >= 0)
        close(c->pty_slave_fd);
    free(c->pty_path);
    free(c->sock_path);
    free(c->obuf);
    free(c->spec);
    free(c);
}

void chardev_set_frontend(struct chardev *c, const struct chardev_frontend *fe)
{
    if (!c)
        return;
    if (fe && fe->can_read && fe->receive) {
        c->fe = *fe;
        c->has_fe = true;
        chr_deliver(c);
    } else {
        c->has_fe = false;
    }
}

void chardev_accept_input(struct chardev *c)
{
    if (!c)
        return;
    chr_deliver(c);
}

const char *chardev_pty_path(const struct chardev *c)
{
    return c ? c->pty_path : NULL;
}
