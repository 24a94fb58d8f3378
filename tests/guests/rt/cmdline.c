/* "key=value" lookups in the kernel command line. */
#include "rt.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

/* Finds the word that starts with key followed by '=' (or ends, when want_value is false). */
static const char *find_word(const char *key, bool want_value)
{
    size_t klen = strlen(key);
    const char *p = rt_boot.cmdline;
    while (*p) {
        while (is_space(*p))
            p++;
        const char *w = p;
        while (*p && !is_space(*p))
            p++;
        size_t wlen = (size_t)(p - w);
        if (wlen >= klen && !memcmp(w, key, klen)) {
            if (want_value && wlen > klen && w[klen] == '=')
                return w + klen + 1;
            if (!want_value && wlen == klen)
                return w;
        }
    }
    return NULL;
}

int cmdline_get(const char *key, char *buf, size_t size)
{
    const char *v = find_word(key, true);
    if (!v || !size)
        return -1;
    size_t n = 0;
    while (v[n] && !is_space(v[n]) && n + 1 < size) {
        buf[n] = v[n];
        n++;
    }
    buf[n] = '\0';
    return (int)n;
}

bool cmdline_has(const char *word)
{
    return find_word(word, false) != NULL;
}

bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = (unsigned)(*s - 'A' + 10);
        else
            return false;
        if (v > (UINT64_MAX - d) / base)
            return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

bool cmdline_get_u64(const char *key, uint64_t *out)
{
    char buf[32];
    if (cmdline_get(key, buf, sizeof(buf)) <= 0)
        return false;
    return parse_u64(buf, out);
}
