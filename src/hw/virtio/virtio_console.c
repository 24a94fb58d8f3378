/* virtio-serial-pci and its virtconsole ports: the guest's hvc0.. backed by chardevs.
 *
 * Offers VIRTIO_CONSOLE_F_MULTIPORT as QEMU does: queues 0/1 are port 0's receive/transmit,
 * 2/3 the control receive/transmit queues, then 2n+2/2n+3 port n's. A driver that does not
 * accept MULTIPORT gets the single console port on queues 0/1 (Linux's hvc0 works either way). */
#include "hw/virtio/virtio.h"
#include "base/log.h"
#include "base/util.h"
#include "chardev/chardev.h"
#include "config/chardev_opts.h"
#include "config/qemu_opts.h"
#include "machine/machine.h"
#include "vm/device_models.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIRTIO_CONSOLE_F_MULTIPORT 1
#define CONSOLE_CONFIG_LEN 12 /* cols, rows, max_nr_ports, emerg_wr */
#define CONSOLE_MAX_PORTS 4   /* 2 + 2 + 2 * 3 = 10 queues */
#define CONSOLE_QSIZE 128
#define CONSOLE_INBUF 4096
#define CTRL_RXQ 2
#define CTRL_TXQ 3
#define CTRL_PENDING 32

/* Control messages (virtio 1.x 5.3.6.2). */
#define VIRTIO_CONSOLE_DEVICE_READY 0
#define VIRTIO_CONSOLE_DEVICE_ADD 1
#define VIRTIO_CONSOLE_DEVICE_REMOVE 2
#define VIRTIO_CONSOLE_PORT_READY 3
#define VIRTIO_CONSOLE_CONSOLE_PORT 4
#define VIRTIO_CONSOLE_RESIZE 5
#define VIRTIO_CONSOLE_PORT_OPEN 6
#define VIRTIO_CONSOLE_PORT_NAME 7

struct console_port {
    struct virtio_console *s;
    unsigned nr;
    bool present;          /* a virtconsole was plugged in as this port */
    bool ready;            /* MULTIPORT: the guest sent PORT_READY */
    struct chardev *chr;
    /* Input taken from the backend but not yet in a guest buffer. Bounded: can_read reports the
     * room left, and the backend stops reading at 0 until chardev_accept_input(). */
    uint8_t inbuf[CONSOLE_INBUF];
    size_t inlen;
};

struct ctrl_msg {
    uint32_t id;
    uint16_t event, value;
};

struct virtio_console {
    struct virtio_dev vdev;
    struct console_port ports[CONSOLE_MAX_PORTS];
    unsigned nports;       /* ports plugged so far (virtconsole n gets nr n) */
    /* Host -> guest control messages waiting for a buffer on the control receive queue. */
    struct ctrl_msg pending[CTRL_PENDING];
    unsigned npending;
};

/* The device the next virtconsole plugs into (QEMU: the last virtio-serial bus created). */
static struct virtio_console *last_console;

static bool multiport(const struct virtio_console *s)
{
    return virtio_has_feature(&s->vdev, VIRTIO_CONSOLE_F_MULTIPORT);
}

static unsigned port_rxq(unsigned nr)
{
    return nr == 0 ? 0 : 2 * nr + 2;
}

static struct console_port *port_of_queue(struct virtio_console *s, unsigned q, bool *tx)
{
    unsigned nr;
    if (q < 2)
        nr = 0;
    else if (q >= 4)
        nr = (q - 2) / 2;
    else
        return NULL;
    *tx = q & 1;
    if (nr >= CONSOLE_MAX_PORTS || (nr > 0 && !multiport(s)))
        return NULL;
    return &s->ports[nr];
}

static bool port_open(struct console_port *p)
{
    struct virtio_console *s = p->s;
    if (!p->present || !virtio_dev_ready(&s->vdev))
        return false;
    if (multiport(s) && !p->ready)
        return false;
    return virtio_queue(&s->vdev, port_rxq(p->nr))->enabled;
}

/* ---- control queue ---- */

static void ctrl_flush(struct virtio_console *s)
{
    struct virtq *vq = virtio_queue(&s->vdev, CTRL_RXQ);
    bool pushed = false;
    while (s->npending && virtq_ready(vq)) {
        struct virtq_elem *e = virtq_pop(vq);
        if (!e)
            break;
        uint8_t m[8];
        struct ctrl_msg *c = &s->pending[0];
        m[0] = (uint8_t)c->id, m[1] = (uint8_t)(c->id >> 8), m[2] = (uint8_t)(c->id >> 16);
        m[3] = (uint8_t)(c->id >> 24);
        m[4] = (uint8_t)c->event, m[5] = (uint8_t)(c->event >> 8);
        m[6] = (uint8_t)c->value, m[7] = (uint8_t)(c->value >> 8);
        size_t n = iov_from_buf(e->in, e->nin, 0, m, sizeof(m));
        virtq_push(vq, e, (uint32_t)n);
        pushed = true;
        memmove(s->pending, s->pending + 1, sizeof(s->pending[0]) * --s->npending);
    }
    if (pushed)
        virtq_notify(vq);
}

static void ctrl_send(struct virtio_console *s, uint32_t id, uint16_t event, uint16_t value)
{
    if (s->npending >= CTRL_PENDING) {
        /* Only a driver that never gives control buffers gets here; it has nothing to lose. */
        log_once(LOG_WARN, "%s: control messages dropped: the driver posts no control buffers",
                 s->vdev.name);
        return;
    }
    s->pending[s->npending++] = (struct ctrl_msg){id, event, value};
    ctrl_flush(s);
}

static void ctrl_handle(struct virtio_console *s, const uint8_t *m)
{
    uint32_t id = (uint32_t)m[0] | (uint32_t)m[1] << 8 | (uint32_t)m[2] << 16 | (uint32_t)m[3] << 24;
    uint16_t event = (uint16_t)(m[4] | m[5] << 8), value = (uint16_t)(m[6] | m[7] << 8);
    switch (event) {
    case VIRTIO_CONSOLE_DEVICE_READY:
        if (value != 1)
            return;
        for (unsigned i = 0; i < CONSOLE_MAX_PORTS; i++)
            if (s->ports[i].present)
                ctrl_send(s, i, VIRTIO_CONSOLE_DEVICE_ADD, 1);
        break;
    case VIRTIO_CONSOLE_PORT_READY: {
        if (id >= CONSOLE_MAX_PORTS || !s->ports[id].present || value != 1)
            return;
        struct console_port *p = &s->ports[id];
        p->ready = true;
        ctrl_send(s, id, VIRTIO_CONSOLE_CONSOLE_PORT, 1);
        /* The host side of a console is always connected, as QEMU's virtconsole. */
        ctrl_send(s, id, VIRTIO_CONSOLE_PORT_OPEN, 1);
        if (p->chr)
            chardev_accept_input(p->chr);
        break;
    }
    case VIRTIO_CONSOLE_PORT_OPEN:
        if (id < CONSOLE_MAX_PORTS && s->ports[id].chr && value)
            chardev_accept_input(s->ports[id].chr);
        break;
    default:
        break; /* unknown or host-only events from the guest are ignored, as QEMU does */
    }
}

static void ctrl_tx(struct virtio_console *s)
{
    struct virtq *vq = virtio_queue(&s->vdev, CTRL_TXQ);
    struct virtq_elem *e;
    for (unsigned n = 0; n < VIRTQ_MAX_SIZE && (e = virtq_pop(vq)); n++) {
        uint8_t m[8];
        if (iov_to_buf(e->out, e->nout, 0, m, sizeof(m)) == sizeof(m))
            ctrl_handle(s, m);
        virtq_push(vq, e, 0);
    }
    virtq_notify(vq);
}

/* ---- data ---- */

/* Move buffered input into the guest's receive buffers. */
static void port_flush_input(struct console_port *p)
{
    struct virtq *vq = virtio_queue(&p->s->vdev, port_rxq(p->nr));
    bool pushed = false;
    size_t before = p->inlen;
    while (p->inlen && port_open(p)) {
        struct virtq_elem *e = virtq_pop(vq);
        if (!e)
            break;
        size_t n = iov_from_buf(e->in, e->nin, 0, p->inbuf, p->inlen);
        memmove(p->inbuf, p->inbuf + n, p->inlen - n);
        p->inlen -= n;
        /* A chain with no writable space goes back empty rather than stalling the port. */
        virtq_push(vq, e, (uint32_t)n);
        pushed = true;
    }
    if (pushed)
        virtq_notify(vq);
    if (p->chr && p->inlen < before)
        chardev_accept_input(p->chr);
}

static void port_tx(struct console_port *p, unsigned q)
{
    struct virtq *vq = virtio_queue(&p->s->vdev, q);
    struct virtq_elem *e;
    for (unsigned n = 0; n < VIRTQ_MAX_SIZE && (e = virtq_pop(vq)); n++) {
        for (unsigned i = 0; i < e->nout && p->chr; i++)
            chardev_write(p->chr, e->out[i].iov_base, e->out[i].iov_len);
        virtq_push(vq, e, 0);
    }
    virtq_notify(vq);
}

static void console_queue_notify(struct virtio_dev *vd, unsigned q)
{
    struct virtio_console *s = vd->opaque;
    if (q == CTRL_RXQ || q == CTRL_TXQ) {
        if (!multiport(s))
            return;
        if (q == CTRL_TXQ)
            ctrl_tx(s);
        else
            ctrl_flush(s);
        return;
    }
    bool tx;
    struct console_port *p = port_of_queue(s, q, &tx);
    if (!p)
        return;
    if (tx)
        port_tx(p, q);
    else
        port_flush_input(p);
}

static void console_status_changed(struct virtio_dev *vd, uint8_t old, uint8_t new_status)
{
    struct virtio_console *s = vd->opaque;
    if (!(new_status & VIRTIO_STATUS_DRIVER_OK) || (old & VIRTIO_STATUS_DRIVER_OK))
        return;
    for (unsigned i = 0; i < CONSOLE_MAX_PORTS; i++)
        if (s->ports[i].chr)
            chardev_accept_input(s->ports[i].chr);
}

static void console_reset(struct virtio_dev *vd)
{
    struct virtio_console *s = vd->opaque;
    s->npending = 0;
    for (unsigned i = 0; i < CONSOLE_MAX_PORTS; i++) {
        s->ports[i].inlen = 0;
        s->ports[i].ready = false;
    }
}

static size_t port_can_read(void *opaque)
{
    struct console_port *p = opaque;
    return port_open(p) ? CONSOLE_INBUF - p->inlen : 0;
}

static void port_receive(void *opaque, const uint8_t *buf, size_t len)
{
    struct console_port *p = opaque;
    size_t room = CONSOLE_INBUF - p->inlen;
    if (len > room)
        len = room; /* the backend honours can_read; this only guards a misbehaving one */
    memcpy(p->inbuf + p->inlen, buf, len);
    p->inlen += len;
    port_flush_input(p);
}

static void console_release(struct virtio_dev *vd)
{
    struct virtio_console *s = vd->opaque;
    for (unsigned i = 0; i < CONSOLE_MAX_PORTS; i++)
        chardev_close(s->ports[i].chr);
    if (last_console == s)
        last_console = NULL;
    virtio_dev_destroy(vd);
    free(s);
}

static const struct virtio_dev_ops console_ops = {
    .queue_notify = console_queue_notify,
    .status_changed = console_status_changed,
    .reset = console_reset,
    .release = console_release,
};

/* ---- -device ---- */

static int check_opts(const char *driver, const char *opts, const char *const *known,
                      unsigned nknown, struct qemu_opts *o, struct virtio_dev *vd)
{
    char err[128];
    if (qemu_opts_parse(o, opts, NULL, err, sizeof(err)) < 0) {
        log_error("-device %s,%s: %s", driver, opts, err);
        return -EINVAL;
    }
    for (unsigned i = 0; i < o->n; i++) {
        bool ok = false;
        for (unsigned k = 0; k < nknown; k++)
            ok |= !strcmp(o->v[i].key, known[k]);
        int c = vd ? virtio_parse_common_opt(vd, driver, o->v[i].key, o->v[i].value) : 0;
        if (c < 0) {
            qemu_opts_free(o);
            return c;
        }
        if (!ok && !c) {
            log_error("-device %s: unknown property '%s'", driver, o->v[i].key);
            qemu_opts_free(o);
            return -EINVAL;
        }
    }
    return 0;
}

int virtio_serial_pci_create(struct vm_device_ctx *ctx, const char *opts)
{
    static const char *const known[] = {"id", "bus", "addr", "max_ports", "vectors"};
    struct qemu_opts o = {0};
    struct virtio_console *s = xzalloc(sizeof(*s));
    virtio_dev_init(&s->vdev, VIRTIO_ID_CONSOLE, &console_ops, s, CONSOLE_CONFIG_LEN);
    if (check_opts("virtio-serial-pci", opts, known, ARRAY_SIZE(known), &o, &s->vdev) < 0) {
        virtio_dev_destroy(&s->vdev);
        free(s);
        return -EINVAL;
    }
    unsigned max_ports = CONSOLE_MAX_PORTS;
    int r = qemu_opts_get_uint(&o, "max_ports", &max_ports);
    qemu_opts_free(&o);
    if ((r < 0 && r != -ENOENT) || max_ports < 1 || max_ports > CONSOLE_MAX_PORTS) {
        log_error("-device virtio-serial-pci: max_ports must be 1..%u", CONSOLE_MAX_PORTS);
        virtio_dev_destroy(&s->vdev);
        free(s);
        return -EINVAL;
    }
    s->vdev.host_features |= VIRTIO_F_BIT(VIRTIO_CONSOLE_F_MULTIPORT);
    s->vdev.config[4] = (uint8_t)max_ports; /* max_nr_ports */
    for (unsigned i = 0; i < CONSOLE_MAX_PORTS; i++) {
        s->ports[i].s = s;
        s->ports[i].nr = i;
    }
    /* port 0 rx/tx, control rx/tx, then the other ports' pairs */
    for (unsigned q = 0; q < 2 * max_ports + 2; q++)
        virtio_add_queue(&s->vdev, CONSOLE_QSIZE);
    r = virtio_pci_create(ctx->m, ctx->pci, &s->vdev, "virtio-serial-pci", -1);
    if (r < 0) {
        virtio_dev_destroy(&s->vdev);
        free(s);
        return r;
    }
    s->nports = 0;
    last_console = s;
    return 0;
}

int virtconsole_create(struct vm_device_ctx *ctx, const char *opts)
{
    static const char *const known[] = {"chardev", "id", "name", "bus", "nr"};
    struct qemu_opts o = {0};
    if (check_opts("virtconsole", opts, known, ARRAY_SIZE(known), &o, NULL) < 0)
        return -EINVAL;
    int ret = -EINVAL;
    const char *id = qemu_opts_get(&o, "chardev");
    struct virtio_console *s = last_console;
    if (!s) {
        log_error("-device virtconsole: no virtio-serial bus; put -device virtio-serial-pci "
                  "before it");
        goto out;
    }
    unsigned max_ports = s->vdev.config[4];
    unsigned nr = s->nports;
    int r = qemu_opts_get_uint(&o, "nr", &nr);
    if (r < 0 && r != -ENOENT) {
        log_error("-device virtconsole: nr= takes a port number");
        goto out;
    }
    if (nr >= max_ports || s->ports[nr].present) {
        log_error("-device virtconsole: port %u is taken or beyond max_ports=%u; add another "
                  "-device virtio-serial-pci before this virtconsole", nr, max_ports);
        goto out;
    }
    if (!id || !*id) {
        log_error("-device virtconsole: chardev= is missing; use -chardev BACKEND,id=ID and "
                  "-device virtconsole,chardev=ID");
        goto out;
    }
    const char *spec = vm_config_chardev_spec(ctx->cfg, id);
    if (!spec) {
        log_error("-device virtconsole,chardev=%s: no -chardev with id=%s", id, id);
        goto out;
    }
    if (!vm_config_chardev_claim(ctx->cfg, id)) {
        log_error("-device virtconsole,chardev=%s: chardev '%s' is already used by another device",
                  id, id);
        goto out;
    }
    struct chardev *chr;
    ret = chardev_open_label(spec, id, ctx->m->ev, NULL, NULL, &chr);
    if (ret < 0)
        goto out;
    struct console_port *p = &s->ports[nr];
    p->present = true;
    p->chr = chr;
    while (s->nports < CONSOLE_MAX_PORTS && s->ports[s->nports].present)
        s->nports++;
    struct chardev_frontend fe = {.can_read = port_can_read, .receive = port_receive, .opaque = p};
    chardev_set_frontend(chr, &fe);
    ret = 0;
out:
    qemu_opts_free(&o);
    return ret;
}
