/* Unit tests for the event loop: fds, timers, cross-thread calls, stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <unistd.h>
#include "base/evloop.h"

struct ctx {
    struct evloop *ev;
    int fired, calls, reads;
    int pipefd[2];
};

static void on_timer(void *opaque)
{
    struct ctx *c = opaque;
    if (++c->fired == 3)
        evloop_stop(c->ev);
}

static void test_periodic_timer_fires_and_stop_returns(void **state)
{
    struct ctx c = {.ev = evloop_new()};
    struct evtimer *t = evtimer_new(c.ev, on_timer, &c);
    uint64_t start = clock_monotonic_ns();
    evtimer_arm(t, 1000000, 1000000);
    assert_int_equal(evloop_run(c.ev), 0);
    assert_int_equal(c.fired, 3);
    assert_true(clock_monotonic_ns() - start >= 3000000);
    evtimer_free(t);
    evloop_free(c.ev);
}

static void on_call(void *opaque)
{
    struct ctx *c = opaque;
    c->calls++;
    evloop_stop(c->ev);
}

static void *caller(void *opaque)
{
    struct ctx *c = opaque;
    usleep(2000);
    evloop_call(c->ev, on_call, c);
    return NULL;
}

static void test_call_from_another_thread_runs_on_loop(void **state)
{
    struct ctx c = {.ev = evloop_new()};
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    evloop_set_lock(c.ev, &lock);
    pthread_t th;
    pthread_create(&th, NULL, caller, &c);
    assert_int_equal(evloop_run(c.ev), 0);
    pthread_join(th, NULL);
    assert_int_equal(c.calls, 1);
    /* The lock was released when the loop returned. */
    assert_int_equal(pthread_mutex_trylock(&lock), 0);
    pthread_mutex_unlock(&lock);
    evloop_free(c.ev);
}

static void on_readable(void *opaque, uint32_t events)
{
    struct ctx *c = opaque;
    char b;
    assert_true(events & EPOLLIN);
    assert_int_equal(read(c->pipefd[0], &b, 1), 1);
    c->reads++;
    /* Deleting itself from inside its callback must be safe. */
    evloop_del_fd(c->ev, c->pipefd[0]);
    evloop_stop(c->ev);
}

static void test_fd_callback_and_self_delete(void **state)
{
    struct ctx c = {.ev = evloop_new()};
    assert_int_equal(pipe(c.pipefd), 0);
    assert_int_equal(evloop_add_fd(c.ev, c.pipefd[0], EPOLLIN, on_readable, &c), 0);
    assert_int_equal(write(c.pipefd[1], "x", 1), 1);
    assert_int_equal(evloop_run(c.ev), 0);
    assert_int_equal(c.reads, 1);
    close(c.pipefd[0]);
    close(c.pipefd[1]);
    evloop_free(c.ev);
}

static void test_stop_before_run_is_kept(void **state)
{
    struct evloop *ev = evloop_new();
    evloop_stop(ev); /* e.g. a vCPU powered off before the main loop started */
    assert_int_equal(evloop_run(ev), 0); /* returns at once instead of hanging */
    struct ctx c = {.ev = ev};
    struct evtimer *t = evtimer_new(ev, on_timer, &c);
    evtimer_arm(t, 1000000, 1000000);
    assert_int_equal(evloop_run(ev), 0); /* the next run is not stopped by the old request */
    assert_int_equal(c.fired, 3);
    evtimer_free(t);
    evloop_free(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periodic_timer_fires_and_stop_returns),
        cmocka_unit_test(test_call_from_another_thread_runs_on_loop),
        cmocka_unit_test(test_fd_callback_and_self_delete),
        cmocka_unit_test(test_stop_before_run_is_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
