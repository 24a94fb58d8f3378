/* Test double for the event loop: fds are polled when the test says so. */
#pragma once
#include "base/evloop.h"

#include <stdbool.h>

struct evloop *fake_evloop(void);
/* Poll the watched fds once (up to timeout_ms) and run the callbacks of those ready. */
int fake_evloop_step(int timeout_ms);
bool fake_evloop_watching(int fd);
