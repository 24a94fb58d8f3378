/* Host-side character backends for serial ports and consoles: stdio, pty, file, unix socket, null. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evloop;
struct chardev;

/* The frontend (a UART, a virtio console) takes input through these; can_read returns how many
 * bytes it can accept now. When it returns 0 the backend stops reading until
 * chardev_accept_input() says there is room again, so a slow guest loses nothing. */
struct chardev_frontend {
    size_t (*can_read)(void *opaque);
    void (*receive)(void *opaque, const uint8_t *buf, size_t len);
    void *opaque;
    /* Optional: the user sent a break (stdio Ctrl-a b), e.g. for the guest's magic SysRq. */
    void (*send_break)(void *opaque);
};

/* Called for the stdio escape "Ctrl-a x" and when the peer of a server socket requests quit. */
typedef void (*chardev_quit_fn)(void *opaque);

/* spec is QEMU's -serial/-chardev spelling: "stdio", "mon:stdio", "pty", "file:PATH",
 * "unix:PATH[,server][,nowait|,wait=off]", "none", "null".
 * stdio puts the terminal in raw mode (restored at exit, on signals too) and handles QEMU's
 * Ctrl-a escapes: x quits, h prints help, c is reserved for the monitor, b sends a break,
 * t toggles timestamps, Ctrl-a Ctrl-a sends one Ctrl-a. With no quit callback, Ctrl-a x exits
 * the process as QEMU does. Returns 0 or -errno with an error logged naming the spec. */
int chardev_open(const char *spec, struct evloop *ev, chardev_quit_fn quit, void *quit_opaque,
                 struct chardev **out);
/* The same, naming the device in messages the way QEMU does ("char device redirected to
 * /dev/pts/3 (label serial1)"); chardev_open uses "serial0". "none" and "null" both give a
 * backend that drops output and never has input. */
int chardev_open_label(const char *spec, const char *label, struct evloop *ev,
                       chardev_quit_fn quit, void *quit_opaque, struct chardev **out);
/* Flushes pending output for up to a second, restores the terminal for stdio. NULL is a no-op. */
void chardev_close(struct chardev *c);
void chardev_set_frontend(struct chardev *c, const struct chardev_frontend *fe);
void chardev_accept_input(struct chardev *c);
/* Best effort: output to a disconnected socket or a full pty is dropped, never blocks a vCPU. */
void chardev_write(struct chardev *c, const void *buf, size_t len);
/* For "pty": the slave path (printed to the user as QEMU does). NULL otherwise. */
const char *chardev_pty_path(const struct chardev *c);
/* Put every terminal stdio touched back as it was (termios and fd flags); only
 * async-signal-safe calls, so a signal handler may call it. chardev_open("stdio") also
 * registers it with atexit and, for SIGTERM/SIGINT/SIGHUP/SIGQUIT and the fatal signals still at
 * their default action, installs a handler that restores and re-raises; it sets SIGPIPE to
 * ignored if it was default. Callers (chardev_write, chardev_accept_input, ...) hold the
 * machine lock or run on the event loop; the backend has no lock of its own. */
void chardev_restore_terminal(void);
