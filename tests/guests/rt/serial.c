/* Polled COM1 output and a small printf (%s %d %u %x %lx %p %c, width and zero padding). */
#include "rt.h"

#define COM1 0x3F8
#define LSR_THRE 0x20

void serial_init(void)
{
    outb(COM1 + 1, 0x00); /* no interrupts: we poll */
    outb(COM1 + 3, 0x03); /* 8N1 */
}

void serial_putc(char c)
{
    /* Bounded: a UART that never drains must not hang the guest. */
    for (int i = 0; i < 100000 && !(inb(COM1 + 5) & LSR_THRE); i++)
        cpu_relax();
    outb(COM1, (uint8_t)c);
}

void rt_puts(const char *s)
{
    while (*s) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s++);
    }
}

struct out {
    char *buf;      /* NULL: serial */
    size_t size, len;
};

static void out_c(struct out *o, char c)
{
    if (!o->buf) {
        if (c == '\n')
            serial_putc('\r');
        serial_putc(c);
    } else if (o->len + 1 < o->size) {
        o->buf[o->len] = c;
    }
    o->len++;
}

static void out_num(struct out *o, uint64_t v, unsigned base, bool neg, int width, char pad)
{
    char tmp[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (neg)
        tmp[n++] = '-';
    for (int i = n; i < width; i++)
        out_c(o, pad);
    while (n)
        out_c(o, tmp[--n]);
}

static int out_fmt(struct out *o, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            out_c(o, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, lng = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            lng++;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int len = (int)strlen(s);
            for (int i = len; i < width; i++)
                out_c(o, ' ');
            while (*s)
                out_c(o, *s++);
            break;
        }
        case 'c':
            out_c(o, (char)va_arg(ap, int));
            break;
        case 'd': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            out_num(o, v < 0 ? (uint64_t)-v : (uint64_t)v, 10, v < 0, width, pad);
            break;
        }
        case 'u':
            out_num(o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, false, width, pad);
            break;
        case 'x':
            out_num(o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, false, width, pad);
            break;
        case 'p':
            out_c(o, '0');
            out_c(o, 'x');
            out_num(o, (uint64_t)(uintptr_t)va_arg(ap, void *), 16, false, width, pad);
            break;
        case '%':
            out_c(o, '%');
            break;
        case '\0':
            fmt--;
            break;
        default:
            out_c(o, '%');
            out_c(o, *fmt);
            break;
        }
    }
    if (o->buf && o->size)
        o->buf[o->len < o->size ? o->len : o->size - 1] = '\0';
    return (int)o->len;
}

int rt_vprintf(const char *fmt, va_list ap)
{
    struct out o = { 0 };
    return out_fmt(&o, fmt, ap);
}

int rt_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = rt_vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int rt_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    struct out o = { .buf = buf, .size = size };
    va_list ap;
    va_start(ap, fmt);
    int n = out_fmt(&o, fmt, ap);
    va_end(ap);
    return n;
}
