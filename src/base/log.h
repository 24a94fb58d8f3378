/* Logging to stderr with a program prefix; every user-facing error goes through here. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
void log_set_prefix(const char *prefix); /* default "vmkit" */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Log a guest-triggered problem once per call site, so a hostile guest cannot flood the log. */
#define log_once(level, ...)                                                                       \
    do {                                                                                           \
        static bool logged_;                                                                       \
        if (!__atomic_exchange_n(&logged_, true, __ATOMIC_RELAXED))                                \
            log_msg(level, __VA_ARGS__);                                                           \
    } while (0)
