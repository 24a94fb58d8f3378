/* i8042 keyboard controller with a PS/2 keyboard and mouse that answer Linux's probes at once. */
#include "hw/devices.h"

#include "base/log.h"
#include "base/util.h"
#include "machine/layout.h"
#include "machine/machine.h"

#include <stdlib.h>

#define STAT_OBF 0x01
#define STAT_SYS 0x04
#define STAT_CMD 0x08
#define STAT_UNLOCKED 0x10
#define STAT_AUXB 0x20

#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE 0x40

#define OUT_RESET 0x01 /* active low: clearing it resets the CPU */
#define OUT_A20 0x02
#define OUT_OBF_KBD 0x10
#define OUT_OBF_AUX 0x20

#define PS2_ACK 0xFA
#define PS2_RESEND 0xFE
#define PS2_SELFTEST_OK 0xAA

#define I8042_QUEUE 16

struct i8042_queue {
    uint16_t data[I8042_QUEUE]; /* bit 8: the byte is marked as coming from the mouse */
    unsigned head, count;
};

struct i8042 {
    struct machine *m;
    uint8_t ctr;        /* the command byte */
    uint8_t status;     /* bits other than OBF/AUXB, which follow the output buffer */
    uint8_t outport;
    uint8_t pending;    /* controller command waiting for its data byte, or 0 */
    uint8_t kbd_cmd;    /* keyboard command waiting for its parameter, or 0 */
    uint8_t aux_cmd;    /* mouse command waiting for its parameter, or 0 */
    uint8_t ob;         /* the output buffer */
    bool ob_full, ob_aux;
    bool irq_kbd, irq_aux;
    /* Bytes from the controller itself, the keyboard and the mouse, waiting for the
     * single output buffer. A disabled port keeps its bytes until it is enabled. */
    struct i8042_queue ctl_q, kbd_q, aux_q;
};

#define FROM_AUX 0x100

static void queue_push(struct i8042_queue *q, uint16_t v)
{
    if (q->count >= I8042_QUEUE)
        return; /* a real device would have stopped sending: drop, as its FIFO would */
    q->data[(q->head + q->count) % I8042_QUEUE] = v;
    q->count++;
}

static uint16_t queue_pop(struct i8042_queue *q)
{
    uint16_t v = q->data[q->head];
    q->head = (q->head + 1) % I8042_QUEUE;
    q->count--;
    return v;
}

static void i8042_update_irq(struct i8042 *k)
{
    bool kbd = k->ob_full && !k->ob_aux && (k->ctr & CTR_KBDINT);
    bool aux = k->ob_full && k->ob_aux && (k->ctr & CTR_AUXINT);
    if (kbd != k->irq_kbd) {
        k->irq_kbd = kbd;
        irq_set_level(&k->m->irq, IRQ_I8042_KBD, kbd);
    }
    if (aux != k->irq_aux) {
        k->irq_aux = aux;
        irq_set_level(&k->m->irq, IRQ_I8042_AUX, aux);
    }
}

static void i8042_refill(struct i8042 *k)
{
    if (!k->ob_full) {
        if (k->ctl_q.count) {
            uint16_t v = queue_pop(&k->ctl_q);
            k->ob = v & 0xFF;
            k->ob_full = true;
            k->ob_aux = v & FROM_AUX;
        } else if (k->kbd_q.count && !(k->ctr & CTR_KBDDIS)) {
            k->ob = queue_pop(&k->kbd_q);
            k->ob_full = true;
            k->ob_aux = false;
        } else if (k->aux_q.count && !(k->ctr & CTR_AUXDIS)) {
            k->ob = queue_pop(&k->aux_q);
            k->ob_full = true;
            k->ob_aux = true;
        }
    }
    i8042_update_irq(k);
}

static void i8042_reply(struct i8042 *k, uint8_t v)
{
    queue_push(&k->ctl_q, v);
    i8042_refill(k);
}

/* 0xD3: the controller loads its output buffer as if the mouse had sent the byte, even while
 * the aux port is disabled (Linux's aux loopback probe relies on that). */
static void i8042_aux_reply(struct i8042 *k, uint8_t v)
{
    queue_push(&k->ctl_q, FROM_AUX | v);
    i8042_refill(k);
}

static void kbd_send(struct i8042 *k, uint8_t v)
{
    queue_push(&k->kbd_q, v);
    i8042_refill(k);
}

static void aux_send(struct i8042 *k, uint8_t v)
{
    queue_push(&k->aux_q, v);
    i8042_refill(k);
}

/* A byte written to the keyboard: the commands atkbd uses, each acknowledged at once. */
static void kbd_write(struct i8042 *k, uint8_t v)
{
    if (k->kbd_cmd) {
        uint8_t cmd = k->kbd_cmd;
        k->kbd_cmd = 0;
        kbd_send(k, PS2_ACK);
        if (cmd == 0xF0 && v == 0)
            kbd_send(k, 0x02); /* current scancode set */
        return;
    }
    switch (v) {
    case 0xFF: /* reset and self test */
        k->kbd_q.count = 0;
        kbd_send(k, PS2_ACK);
        kbd_send(k, PS2_SELFTEST_OK);
        break;
    case 0xF2: /* identify: MF2 keyboard */
        kbd_send(k, PS2_ACK);
        kbd_send(k, 0xAB);
        kbd_send(k, 0x83);
        break;
    case 0xED: /* LEDs */
    case 0xF0: /* scancode set */
    case 0xF3: /* typematic rate */
        k->kbd_cmd = v;
        kbd_send(k, PS2_ACK);
        break;
    case 0xEE: /* echo */
        kbd_send(k, 0xEE);
        break;
    case 0xF4: case 0xF5: case 0xF6: case 0xF7: case 0xF8: case 0xF9: case 0xFA: case 0xFB:
    case 0xFC: case 0xFD:
        kbd_send(k, PS2_ACK);
        break;
    default:
        kbd_send(k, PS2_RESEND);
        break;
    }
}

/* A byte written to the mouse through 0xD4: a plain PS/2 mouse, so psmouse probes finish fast. */
static void aux_write(struct i8042 *k, uint8_t v)
{
    if (k->aux_cmd) {
        k->aux_cmd = 0;
        aux_send(k, PS2_ACK);
        return;
    }
    switch (v) {
    case 0xFF: /* reset: self test passed, device id 0 */
        k->aux_q.count = 0;
        aux_send(k, PS2_ACK);
        aux_send(k, PS2_SELFTEST_OK);
        aux_send(k, 0x00);
        break;
    case 0xF2: /* identify */
        aux_send(k, PS2_ACK);
        aux_send(k, 0x00);
        break;
    case 0xE9: /* status request: stream mode, resolution 2, rate 100 */
        aux_send(k, PS2_ACK);
        aux_send(k, 0x00);
        aux_send(k, 0x02);
        aux_send(k, 0x64);
        break;
    case 0xEB: /* read data: no movement */
        aux_send(k, PS2_ACK);
        aux_send(k, 0x08);
        aux_send(k, 0x00);
        aux_send(k, 0x00);
        break;
    case 0xE8: /* resolution */
    case 0xF3: /* sample rate */
        k->aux_cmd = v;
        aux_send(k, PS2_ACK);
        break;
    default:
        aux_send(k, PS2_ACK);
        break;
    }
}

static void i8042_write_outport(struct i8042 *k, uint8_t v)
{
    k->outport = v | OUT_A20; /* A20 is always on: there is no wrap-around to emulate */
    if (!(v & OUT_RESET))
        machine_request(k->m, MACHINE_REQ_RESET);
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
    if (cmd == 0x20) {
        i8042_reply(k, k->ctr);
    } else if (cmd > 0x20 && cmd < 0x40) {
        i8042_reply(k, 0); /* internal RAM: nothing useful lives there */
    } else if (cmd >= 0x60 && cmd < 0x80) {
        k->pending = cmd;
    } else if (cmd >= 0xF0) {
        /* Pulse output lines: bit 0 low pulses the CPU reset line. */
        if (!(cmd & 1))
            machine_request(k->m, MACHINE_REQ_RESET);
    } else {
        switch (cmd) {
        case 0xA7: k->ctr |= CTR_AUXDIS; break;
        case 0xA8: k->ctr &= ~CTR_AUXDIS; i8042_refill(k); break;
        case 0xA9: i8042_reply(k, 0x00); break; /* aux interface test: ok */
        case 0xAA: /* controller self test */
            k->status |= STAT_SYS;
            i8042_reply(k, 0x55);
            break;
        case 0xAB: i8042_reply(k, 0x00); break; /* keyboard interface test: ok */
        case 0xAD: k->ctr |= CTR_KBDDIS; break;
        case 0xAE: k->ctr &= ~CTR_KBDDIS; i8042_refill(k); break;
        case 0xC0: i8042_reply(k, 0x00); break; /* input port */
        case 0xD0: {
            uint8_t v = k->outport & ~(OUT_OBF_KBD | OUT_OBF_AUX);
            if (k->ob_full)
                v |= k->ob_aux ? OUT_OBF_AUX : OUT_OBF_KBD;
            i8042_reply(k, v);
            break;
        }
        case 0xD1: case 0xD2: case 0xD3: case 0xD4:
            k->pending = cmd;
            break;
        case 0xDD: case 0xDF: break; /* A20 off/on: A20 stays on */
        case 0xE0: i8042_reply(k, 0x00); break; /* test inputs */
        default:
            log_once(LOG_WARN, "i8042: guest sent unknown controller command 0x%02x, ignored", cmd);
            break;
        }
    }
}

static void i8042_write_data(struct i8042 *k, uint8_t v)
{
    uint8_t cmd = k->pending;
    k->pending = 0;
    if (cmd >= 0x60 && cmd < 0x80) {
        if (cmd == 0x60) {
            k->ctr = v;
            k->status = (k->status & ~STAT_SYS) | (v & CTR_SYS ? STAT_SYS : 0);
            i8042_refill(k);
        }
        return;
    }
    switch (cmd) {
    case 0xD1:
        i8042_write_outport(k, v);
        break;
    case 0xD2:
        kbd_send(k, v);
        break;
    case 0xD3:
        i8042_aux_reply(k, v);
        break;
    case 0xD4:
        /* Talking to a device re-enables its port, as on QEMU and real controllers. */
        k->ctr &= ~CTR_AUXDIS;
        aux_write(k, v);
        break;
    default:
        k->ctr &= ~CTR_KBDDIS;
        kbd_write(k, v);
        break;
    }
}

static uint64_t i8042_status_read(void *opaque, uint64_t offset, unsigned size)
{
    struct i8042 *k = opaque;
    uint8_t st = k->status | STAT_UNLOCKED;
    if (k->ob_full)
        st |= STAT_OBF | (k->ob_aux ? STAT_AUXB : 0);
    return st;
}

static void i8042_command_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct i8042 *k = opaque;
    k->status |= STAT_CMD;
    i8042_command(k, value);
}

static uint64_t i8042_data_read(void *opaque, uint64_t offset, unsigned size)
{
    struct i8042 *k = opaque;
    uint8_t v = k->ob;
    if (k->ob_full) {
        k->ob_full = false;
        /* Drop the line so the next byte is a fresh edge. */
        i8042_update_irq(k);
        i8042_refill(k);
    }
    return v;
}

static void i8042_data_write(void *opaque, uint64_t offset, uint64_t value, unsigned size)
{
    struct i8042 *k = opaque;
    k->status &= ~STAT_CMD;
    i8042_write_data(k, value);
}

static const struct bus_ops i8042_data_ops = {
    .read = i8042_data_read,
    .write = i8042_data_write,
};

static const struct bus_ops i8042_cmd_ops = {
    .read = i8042_status_read,
    .write = i8042_command_write,
};

static void i8042_reset(void *opaque)
{
    struct i8042 *k = opaque;
    /* The state firmware leaves behind: translation on, both ports' interrupts enabled. */
    k->ctr = CTR_XLATE | CTR_SYS | CTR_AUXINT | CTR_KBDINT;
    k->status = STAT_SYS;
    k->outport = OUT_RESET | OUT_A20;
    k->pending = k->kbd_cmd = k->aux_cmd = 0;
    k->ob_full = false;
    k->ctl_q.count = k->kbd_q.count = k->aux_q.count = 0;
    i8042_update_irq(k);
}

/* Port 0x61 (PC speaker/NMI status) sits between 0x60 and 0x64 and belongs to the PIT owner;
 * register the two ports separately so it stays free. */
struct i8042 *i8042_create(struct machine *m)
{
    struct i8042 *k = xzalloc(sizeof(*k));
    k->m = m;
    if (bus_register(&m->pio, PORT_I8042_DATA, 1, &i8042_data_ops, k, "i8042") < 0) {
        log_error("i8042: port 0x%x already in use", PORT_I8042_DATA);
        free(k);
        return NULL;
    }
    if (bus_register(&m->pio, PORT_I8042_CMD, 1, &i8042_cmd_ops, k, "i8042") < 0) {
        log_error("i8042: port 0x%x already in use", PORT_I8042_CMD);
        bus_unregister(&m->pio, PORT_I8042_DATA, k);
        free(k);
        return NULL;
    }
    i8042_reset(k);
    machine_add_reset_handler(m, i8042_reset, k);
    return k;
}
