/* The argv harness the config tests share: parse a NULL-terminated argument list with stdout and
 * stderr captured, and the OK/FAILS checks on the result. Include after cmocka.h. */
#pragma once
#include "config/vm_config.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* What the last parse printed; errors go to stderr, -help/-version to stdout. */
static char out_text[16384], err_text[16384];

static void read_back(FILE *f, char *buf, size_t len)
{
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
}

static enum vm_config_parse_result parse_argv(struct vm_config *c, const char **args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    FILE *eo = tmpfile(), *oo = tmpfile();
    assert_non_null(eo);
    assert_non_null(oo);
    fflush(stderr);
    fflush(stdout);
    int save_err = dup(2), save_out = dup(1);
    dup2(fileno(eo), 2);
    dup2(fileno(oo), 1);
    vm_config_init(c);
    enum vm_config_parse_result r = vm_config_parse_args(c, argc, (char **)args);
    fflush(stderr);
    fflush(stdout);
    dup2(save_err, 2);
    dup2(save_out, 1);
    close(save_err);
    close(save_out);
    read_back(eo, err_text, sizeof(err_text));
    read_back(oo, out_text, sizeof(out_text));
    fclose(eo);
    fclose(oo);
    return r;
}

#define PARSE(c, ...) parse_argv(c, (const char *[]){__VA_ARGS__, NULL})

/* Parses and expects success; the config is left for the caller to inspect and free. */
#define OK(c, ...)                                                                                 \
    do {                                                                                           \
        enum vm_config_parse_result r_ = PARSE(c, __VA_ARGS__);                                    \
        if (r_ != VM_CONFIG_RUN)                                                                   \
            fail_msg("expected success, got %d: %s", r_, err_text);                               \
    } while (0)

/* Parses, expects VM_CONFIG_ERROR and a message containing msg. */
#define FAILS(msg, ...)                                                                            \
    do {                                                                                           \
        struct vm_config c_;                                                                       \
        enum vm_config_parse_result r_ = PARSE(&c_, __VA_ARGS__);                                  \
        vm_config_free(&c_);                                                                       \
        if (r_ != VM_CONFIG_ERROR)                                                                 \
            fail_msg("expected an error containing \"%s\", got %d", msg, r_);                     \
        if (!strstr(err_text, msg))                                                                \
            fail_msg("expected \"%s\" in: %s", msg, err_text);                                    \
    } while (0)
