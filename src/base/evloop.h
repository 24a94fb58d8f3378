/* The VM process's event loop: epoll over fds, plus timers, run on one thread. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct evloop;
struct evtimer;

typedef void (*evloop_fd_cb)(void *opaque, uint32_t epoll_events);
typedef void (*evtimer_cb)(void *opaque);

struct evloop *evloop_new(void);
void evloop_free(struct evloop *ev);
/* Callbacks run with this mutex held (the machine lock), so device code never races vCPUs. */
void evloop_set_lock(struct evloop *ev, pthread_mutex_t *lock);
/* gate(opaque, true) before and gate(opaque, false) after each batch of callbacks, outside the
 * lock: lets a deterministic accelerator hold host events to its vCPU slice boundaries. */
void evloop_set_gate(struct evloop *ev, void (*gate)(void *opaque, bool enter), void *opaque);

int evloop_add_fd(struct evloop *ev, int fd, uint32_t epoll_events, evloop_fd_cb cb, void *opaque);
int evloop_mod_fd(struct evloop *ev, int fd, uint32_t epoll_events);
void evloop_del_fd(struct evloop *ev, int fd);

/* Runs until evloop_stop(); returns 0 or -errno. Safe to call evloop_stop from any thread. */
int evloop_run(struct evloop *ev);
void evloop_stop(struct evloop *ev);
/* Run fn(opaque) on the loop thread soon (from any thread, e.g. a vCPU). */
void evloop_call(struct evloop *ev, void (*fn)(void *), void *opaque);

/* Timers on CLOCK_MONOTONIC. period_ns 0 = one-shot; ns 0 disarms. */
struct evtimer *evtimer_new(struct evloop *ev, evtimer_cb cb, void *opaque);
void evtimer_arm(struct evtimer *t, uint64_t ns_from_now, uint64_t period_ns);
void evtimer_free(struct evtimer *t);

uint64_t clock_monotonic_ns(void);
