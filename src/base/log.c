/* Logging to stderr with a program prefix. */
#include "base/log.h"
#include <stdio.h>
#include <stdlib.h>

static enum log_level max_level = LOG_INFO;
static const char *log_prefix = "vmkit";

void log_set_level(enum log_level level)
{
    max_level = level;
}

void log_set_prefix(const char *prefix)
{
    log_prefix = prefix;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > max_level)
        return;
    /* One fprintf per line keeps lines from different threads whole. */
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    fprintf(stderr, "%s: %s%s%s\n", log_prefix, level == LOG_INFO ? "" : names[level],
            level == LOG_INFO ? "" : ": ", line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(LOG_ERROR, fmt, ap);
    va_end(ap);
    exit(1);
}
