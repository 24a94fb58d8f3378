/* 16550A UART: the register model Linux's 8250 driver probes and drives, bridged to a chardev. */
#include "hw/devices.h"

#include "base/log.h"
#include "base/util.h"
#include "chardev/chardev.h"
#include "machine/machine.h"

#include <stdlib.h>
#include <string.h>

#define SERIAL_FIFO_SIZE 16

/* Register offsets. */
#define REG_RBR_THR 0 /* DLL when DLAB */
#define REG_IER 1     /* DLM when DLAB */
#define REG_IIR_FCR 2
#define REG_LCR 3
#define REG_MCR 4
#define REG_LSR 5
#define REG_MSR 6
#define REG_SCR 7

#define IER_RDI 0x01  /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_RLSI 0x04 /* receiver line status */
#define IER_MSI 0x08  /* modem status */

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_TIMEOUT 0x0C
#define IIR_FIFO_ENABLED 0xC0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_PE 0x04
#define LSR_FE 0x08
#define LSR_BI 0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_ERRORS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80
#define MSR_DELTAS 0x0F

struct serial {
    struct machine *m;
    struct chardev *chr;
    uint16_t port;
    unsigned irq;

    uint16_t divisor;
    uint8_t ier, lcr, mcr, lsr, msr, scr, fcr;

    uint8_t rx_fifo[SERIAL_FIFO_SIZE];
    unsigned rx_head, rx_count;

    /* THRE is an event, not just a state: it is raised when THR empties or ETBEI is enabled
     * with THR empty, and consumed by an IIR read that reports it or by a THR write. */
    bool thr_ipending;
    /* The character timeout: data sits in the FIFO below the trigger level and no more is
     * coming right now. We raise it when a burst of host input ends. */
    bool timeout_ipending;
    bool irq_level;
};

static unsigned serial_rx_capacity(const struct serial *s)
{
    return (s->fcr & FCR_ENABLE) ? SERIAL_FIFO_SIZE : 1;
}

static unsigned serial_rx_trigger(const struct serial *s)
{
    static const unsigned levels[4] = {1, 4, 8, 14};
    return (s->fcr & FCR_ENABLE) ? levels[s->fcr >> 6] : 1;
}

static uint8_t serial_iir(const struct serial *s)
{
    uint8_t iir;
    if ((s->ier & IER_RLSI) && (s->lsr & LSR_ERRORS))
        iir = IIR_RLSI;
    else if ((s->ier & IER_RDI) && s->rx_count >= serial_rx_trigger(s))
        iir = IIR_RDI;
    else if ((s->ier & IER_RDI) && s->timeout_ipending && s->rx_count)
        iir = IIR_TIMEOUT;
    else if ((s->ier & IER_THRI) && s->thr_ipending)
        iir = IIR_THRI;
    else if ((s->ier & IER_MSI) && (s->msr & MSR_DELTAS))
        iir = IIR_MSI;
    else
        iir = IIR_NO_INT;
    if (s->fcr & FCR_ENABLE)
        iir |= IIR_FIFO_ENABLED;
    return iir;
}

/* The ISA line is edge-triggered; driving it as "any interrupt pending" gives the edges the
 * 8250 driver expects as long as each new event first drops the line when it was consumed. */
static void serial_update_irq(struct serial *s)
{
    bool level = !(serial_iir(s) & IIR_NO_INT);
    if (level != s->irq_level) {
        s->irq_level = level;
        irq_set_level(&s->m->irq, s->irq, level);
    }
}

static void serial_rx_clear(struct serial *s)
{
    s->rx_head = s->rx_count = 0;
    s->lsr &= ~(LSR_DR | LSR_BI);
    s->timeout_ipending = false;
}

/* Queue one received byte; a full FIFO is an overrun, as on the real chip. */
static void serial_rx_push(struct serial *s, uint8_t byte)
{
    if (s->rx_count >= serial_rx_capacity(s)) {
        s->lsr |= LSR_OE;
        return;
    }
    s->rx_fifo[(s->rx_head + s->rx_count) % SERIAL_FIFO_SIZE] = byte;
    s->rx_count++;
    s->lsr |= LSR_DR;
}

static uint8_t serial_rx_pop(struct serial *s)
{
    if (!s->rx_count)
        return 0;
    uint8_t byte = s->rx_fifo[s->rx_head];
    s->rx_head = (s->rx_head + 1) % SERIAL_FIFO_SIZE;
    s->rx_count--;
    if (!s->rx_count)
        s->lsr &= ~LSR_DR;
    return byte;
}

/* In loopback the modem inputs are wired to the modem outputs; otherwise the "cable" reports
 * a peer that is always ready (DCD, DSR, CTS), as QEMU does. */
static void serial_update_msr(struct serial *s)
{
    uint8_t lines;
    if (s->mcr & MCR_LOOP) {
        lines = 0;
        if (s->mcr & MCR_RTS)
            lines |= MSR_CTS;
        if (s->mcr & MCR_DTR)
            lines |= MSR_DSR;
        if (s->mcr & MCR_OUT1)
            lines |= MSR_RI;
        if (s->mcr & MCR_OUT2)
            lines |= MSR_DCD;
    } else {
        lines = MSR_DCD | MSR_DSR | MSR_CTS;
    }
    uint8_t old = s->msr & 0xF0, changed = old ^ lines;
    uint8_t deltas = s->msr & MSR_DELTAS;
    if (changed & MSR_CTS)
        deltas |= MSR_DCTS;
    if (changed & MSR_DSR)
        deltas |= MSR_DDSR;
    if (changed & MSR_DCD)
        deltas |= MSR_DDCD;
    if ((old & MSR_RI) && !(lines & MSR_RI))
        deltas |= MSR_TERI;
    s->msr = lines | deltas;
}

static void serial_accept_more(struct serial *s)
{
    if (s->chr && !(s->mcr & MCR_LOOP) && s->rx_count < serial_rx_capacity(s))
        chardev_accept_input(s->chr);
}

static void serial_write_thr(struct serial *s, uint8_t byte)
{
    s->thr_ipending = false;
    s->lsr &= ~(LSR_THRE | LSR_TEMT);
    serial_update_irq(s);
    if (s->mcr & MCR_LOOP) {
        serial_rx_push(s, byte);
        s->timeout_ipending = true;
    } else if (s->chr) {
        chardev_write(s->chr, &byte, 1);
    }
    /* Transmission is instantaneous: THR empties at once and raises its interrupt again. */
    s->lsr |= LSR_THRE | LSR_TEMT;
    s->thr_ipending = true;
    serial_update_irq(s);
}

static uint8_t serial_read_reg(struct serial *s, unsigned reg)
{
    uint8_t v;
    switch (reg) {
    case REG_RBR_THR:
        if (s->lcr & LCR_DLAB)
            return s->divisor & 0xFF;
        v = serial_rx_pop(s);
        /* Whatever is left below the trigger will time out: keep reporting it. */
        s->timeout_ipending = s->rx_count > 0;
        serial_update_irq(s);
        serial_accept_more(s);
        return v;
    case REG_IER:
        if (s->lcr & LCR_DLAB)
            return s->divisor >> 8;
        return s->ier;
    case REG_IIR_FCR:
        v = serial_iir(s);
        if ((v & 0x0F) == IIR_THRI) {
            s->thr_ipending = false;
            serial_update_irq(s);
        }
        return v;
    case REG_LCR:
        return s->lcr;
    case REG_MCR:
        return s->mcr;
    case REG_LSR:
        v = s->lsr;
        if (s->lsr & LSR_ERRORS) {
            s->lsr &= ~LSR_ERRORS;
            serial_update_irq(s);
        }
        return v;
    case REG_MSR:
        v = s->msr;
        if (s->msr & MSR_DELTAS) {
            s->msr &= ~MSR_DELTAS;
            serial_update_irq(s);
        }
        return v;
    default:
        return s->scr;
    }
}

static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v)
{
    switch (reg) {
    case REG_RBR_THR:
        if (s->lcr & LCR_DLAB)
            s->divisor = (s->divisor & 0xFF00) | v;
        else
            serial_write_thr(s, v);
        return;
    case REG_IER: {
        if (s->lcr & LCR_DLAB) {
            s->divisor = (s->divisor & 0x00FF) | (uint16_t)v << 8;
            return;
        }
        uint8_t changed = (s->ier ^ v) & IER_THRI;
        s->ier = v & 0x0F;
        if (changed)
            s->thr_ipending = (s->ier & IER_THRI) && (s->lsr & LSR_THRE);
        serial_update_irq(s);
        return;
    }
    case REG_IIR_FCR:
        /* Toggling the enable bit flushes both FIFOs on the 16550A. */
        if ((v ^ s->fcr) & FCR_ENABLE)
            v |= FCR_CLEAR_RX | FCR_CLEAR_TX;
        if (v & FCR_CLEAR_RX)
            serial_rx_clear(s);
        s->fcr = v & (FCR_ENABLE | 0xC0);
        serial_update_irq(s);
        serial_accept_more(s);
        return;
    case REG_LCR:
        s->lcr = v;
        return;
    case REG_MCR: {
        bool was_loop = s->mcr & MCR_LOOP;
        s->mcr = v & 0x1F;
        serial_update_msr(s);
        serial_update_irq(s);
        if (was_loop && !(s->mcr & MCR_LOOP))
            serial_accept_more(s);
        return;
    }
    case REG_LSR:
    case REG_MSR:
        return; /* factory test registers: writes have no defined effect */
    default:
        s->scr = v;
        return;
    }
}

/* Wider accesses become byte cycles, as the ISA bridge would split them. */
static uint64_t serial_pio_read(void *opaque, uint64_t offset, unsigned size)
{
    struct serial *s = opaque;
    uint64_t v = 0;
    for (unsigned i = 0; i < size && i < 8; i++) {
        uint64_t reg = offset + i;
        v |= (uint64_t)(reg < 8 ? serial_read_reg(s, reg) : 0xFF) << (8 * i);
    }
    return v;
}

static void serial_pio_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct serial *s = opaque;
    for (unsigned i = 0; i < size && i < 8; i++) {
        uint64_t reg = offset + i;
        if (reg < 8)
            serial_write_reg(s, reg, value >> (8 * i));
    }
}

static const struct bus_ops serial_ops = {
    .read = serial_pio_read,
    .write = serial_pio_write,
};

static size_t serial_can_read(void *opaque)
{
    struct serial *s = opaque;
    if (s->mcr & MCR_LOOP)
        return 0; /* the receiver listens to the transmitter: host input waits */
    unsigned cap = serial_rx_capacity(s);
    return s->rx_count < cap ? cap - s->rx_count : 0;
}

static void serial_receive(void *opaque, const uint8_t *buf, size_t len)
{
    struct serial *s = opaque;
    for (size_t i = 0; i < len; i++)
        serial_rx_push(s, buf[i]);
    if (len)
        s->timeout_ipending = true;
    serial_update_irq(s);
}

/* A break on the line: the receiver sees a zero character flagged BI (Linux's SysRq trigger). */
static void serial_break(void *opaque)
{
    struct serial *s = opaque;
    if (s->mcr & MCR_LOOP)
        return;
    serial_rx_push(s, 0);
    s->lsr |= LSR_BI;
    s->timeout_ipending = true;
    serial_update_irq(s);
}

static void serial_reset(void *opaque)
{
    struct serial *s = opaque;
    s->divisor = 12; /* 9600 baud */
    s->ier = 0;
    s->lcr = 0;
    s->mcr = MCR_OUT2;
    s->lsr = LSR_THRE | LSR_TEMT;
    s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
    s->scr = 0;
    s->fcr = 0;
    serial_rx_clear(s);
    s->thr_ipending = false;
    serial_update_irq(s);
    serial_accept_more(s);
}

struct serial *serial_create(struct machine *m, uint16_t port, unsigned irq,
                             struct chardev *backend)
{
    struct serial *s = xzalloc(sizeof(*s));
    s->m = m;
    s->port = port;
    s->irq = irq;
    s->chr = backend;
    int ret = bus_register(&m->pio, port, 8, &serial_ops, s, "serial");
    if (ret < 0) {
        log_error("serial at port 0x%x: I/O range already in use (%d)", port, ret);
        free(s);
        return NULL;
    }
    serial_reset(s);
    machine_add_reset_handler(m, serial_reset, s);
    if (backend) {
        struct chardev_frontend fe = {
            .can_read = serial_can_read,
            .receive = serial_receive,
            .opaque = s,
            .send_break = serial_break,
        };
        chardev_set_frontend(backend, &fe);
    }
    return s;
}
