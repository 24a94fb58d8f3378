/* Unit tests for split virtqueues: chains, indirect tables, EVENT_IDX, index wraparound, and
 * every hostile-driver case ending in NEEDS_RESET without touching memory outside guest RAM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/util.h"
#include "hw/virtio/virtq.h"
#include "machine/machine.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RAM_SIZE (1 * MiB)
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define ITABLE 0x8000
#define BUF 0x10000
#define QSIZE 8

struct fx {
    struct machine m;
    uint8_t *ram;
    struct virtio_dev vd;
    unsigned irqs[VIRTIO_MAX_QUEUES + 1];
    unsigned config_irqs;
    unsigned kicks;
    uint16_t avail_idx; /* driver's shadow */
};

static void fake_notify(void *transport, uint16_t vector, uint8_t isr)
{
    struct fx *f = transport;
    if (isr & 2)
        f->config_irqs++;
    else if (vector < VIRTIO_MAX_QUEUES)
        f->irqs[vector]++;
}
static const struct virtio_transport_ops fake_tops = {.notify = fake_notify};

static void dev_notify(struct virtio_dev *vd, unsigned q)
{
    (void)q;
    ((struct fx *)vd->opaque)->kicks++;
}
static const struct virtio_dev_ops dev_ops = {.queue_notify = dev_notify};

static void *gpa(struct fx *f, uint64_t a)
{
    return f->ram + a;
}

static void put_desc(struct fx *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    struct virtq_desc d = {addr, len, flags, next};
    memcpy(gpa(f, table + 16 * i), &d, 16);
}

static void publish(struct fx *f, uint16_t head)
{
    uint16_t *ring = gpa(f, AVAIL + 4);
    ring[f->avail_idx % QSIZE] = head;
    f->avail_idx++;
    *(uint16_t *)gpa(f, AVAIL + 2) = f->avail_idx;
}

static uint16_t used_idx(struct fx *f)
{
    return *(uint16_t *)gpa(f, USED + 2);
}

/* Bring the device to DRIVER_OK with queue 0 at DESC/AVAIL/USED. */
static void start(struct fx *f, uint64_t features)
{
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_set_guest_features(&f->vd, 0, (uint32_t)features);
    virtio_set_guest_features(&f->vd, 1, (uint32_t)(features >> 32));
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                  VIRTIO_STATUS_FEATURES_OK);
    assert_true(f->vd.status & VIRTIO_STATUS_FEATURES_OK);
    struct virtq *vq = &f->vd.vqs[0];
    vq->size = QSIZE;
    vq->desc_gpa = DESC;
    vq->avail_gpa = AVAIL;
    vq->used_gpa = USED;
    vq->msix_vector = 0;
    assert_int_equal(virtq_enable(vq), 0);
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                  VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    assert_true(virtio_dev_ready(&f->vd));
    f->avail_idx = 0;
}

#define F_ALL                                                                                      \
    (VIRTIO_F_BIT(VIRTIO_F_VERSION_1) | VIRTIO_F_BIT(VIRTIO_F_RING_INDIRECT_DESC) |                \
     VIRTIO_F_BIT(VIRTIO_F_RING_EVENT_IDX))
#define F_PLAIN (VIRTIO_F_BIT(VIRTIO_F_VERSION_1) | VIRTIO_F_BIT(VIRTIO_F_RING_INDIRECT_DESC))

static int setup(void **state)
{
    struct fx *f = xzalloc(sizeof(*f));
    machine_init(&f->m);
    f->ram = xzalloc(RAM_SIZE);
    guest_mem_init_buffer(&f->m.mem, f->ram, RAM_SIZE);
    virtio_dev_init(&f->vd, VIRTIO_ID_RNG, &dev_ops, f, 8);
    f->vd.name = "test-virtio";
    assert_false(f->vd.host_features & VIRTIO_F_BIT(VIRTIO_F_RING_PACKED)); /* off by default */
    f->vd.host_features |= VIRTIO_F_BIT(VIRTIO_F_RING_PACKED);
    assert_int_equal(virtio_add_queue(&f->vd, QSIZE), 0);
    assert_int_equal(virtio_add_queue(&f->vd, QSIZE), 1);
    f->vd.m = &f->m;
    f->vd.tops = &fake_tops;
    f->vd.transport = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    virtio_dev_destroy(&f->vd);
    machine_destroy(&f->m);
    free(f->ram);
    free(f);
    return 0;
}

static void test_direct_chain(void **state)
{
    struct fx *f = *state;
    start(f, F_ALL);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    assert_null(virtq_pop(vq));
    assert_true(virtq_empty(vq));
    put_desc(f, DESC, 3, BUF, 16, VIRTQ_DESC_F_NEXT, 5);
    put_desc(f, DESC, 5, BUF + 0x100, 32, VIRTQ_DESC_F_NEXT, 1);
    put_desc(f, DESC, 1, BUF + 0x200, 64, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 3);
    assert_false(virtq_empty(vq));
    struct virtq_elem *e = virtq_pop(vq);
    assert_non_null(e);
    assert_int_equal(e->head, 3);
    assert_int_equal(e->nout, 2);
    assert_int_equal(e->nin, 1);
    assert_int_equal(e->out_len, 48);
    assert_int_equal(e->in_len, 64);
    assert_ptr_equal(e->out[0].iov_base, gpa(f, BUF));
    assert_ptr_equal(e->out[1].iov_base, gpa(f, BUF + 0x100));
    assert_ptr_equal(e->in[0].iov_base, gpa(f, BUF + 0x200));
    assert_int_equal(e->in_gpa[0], BUF + 0x200);
    /* EVENT_IDX: the device asks to be kicked at the next entry. */
    assert_int_equal(*(uint16_t *)gpa(f, USED + 4 + 8 * QSIZE), 1);
    virtq_push(vq, e, 1000); /* more than the buffers hold: clamped */
    assert_int_equal(used_idx(f), 1);
    assert_int_equal(*(uint32_t *)gpa(f, USED + 4), 3);
    assert_int_equal(*(uint32_t *)gpa(f, USED + 8), 64);
    virtq_notify(vq);
    assert_int_equal(f->irqs[0], 1);
    /* Nothing new: no second interrupt. */
    virtq_notify(vq);
    assert_int_equal(f->irqs[0], 1);
    assert_null(virtq_pop(vq));
    assert_false(f->vd.broken);
}

static void test_indirect_chain(void **state)
{
    struct fx *f = *state;
    start(f, F_ALL);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    put_desc(f, ITABLE, 0, BUF, 10, VIRTQ_DESC_F_NEXT, 2);
    put_desc(f, ITABLE, 2, BUF + 0x40, 20, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    put_desc(f, ITABLE, 1, BUF + 0x80, 30, VIRTQ_DESC_F_WRITE, 0);
    put_desc(f, DESC, 0, ITABLE, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
    struct virtq_elem *e = virtq_pop(vq);
    assert_non_null(e);
    assert_int_equal(e->nout, 1);
    assert_int_equal(e->nin, 2);
    assert_int_equal(e->in_len, 50);
    assert_ptr_equal(e->in[1].iov_base, gpa(f, BUF + 0x80));
    /* iov helpers across segments */
    const char msg[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    assert_int_equal(iov_from_buf(e->in, e->nin, 15, msg, sizeof(msg)), 35);
    assert_memory_equal(gpa(f, BUF + 0x40 + 15), msg, 5);
    assert_memory_equal(gpa(f, BUF + 0x80), msg + 5, 30);
    char back[8];
    assert_int_equal(iov_to_buf(e->in, e->nin, 18, back, 8), 8);
    assert_memory_equal(back, msg + 3, 8);
    virtq_push(vq, e, 50);
    assert_int_equal(used_idx(f), 1);
    assert_false(f->vd.broken);
}

static void test_event_idx_suppression(void **state)
{
    struct fx *f = *state;
    start(f, F_ALL);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    uint16_t *used_event = gpa(f, AVAIL + 4 + 2 * QSIZE);
    *used_event = 0;
    put_desc(f, DESC, 0, BUF, 4, VIRTQ_DESC_F_WRITE, 0);
    unsigned irqs_at[8];
    *used_event = 3; /* "interrupt me when used idx passes 3", i.e. after entry 4 */
    for (unsigned i = 0; i < 6; i++) {
        publish(f, 0);
        struct virtq_elem *e = virtq_pop(vq);
        assert_non_null(e);
        virtq_push(vq, e, 4);
        virtq_notify(vq);
        irqs_at[i] = f->irqs[0];
    }
    /* First notify always fires (nothing signalled yet); then only crossing used_event=3. */
    assert_int_equal(irqs_at[0], 1);
    assert_int_equal(irqs_at[1], 1);
    assert_int_equal(irqs_at[2], 1);
    assert_int_equal(irqs_at[3], 2); /* used idx 3 -> 4 crosses event 3 */
    assert_int_equal(irqs_at[4], 2);
    assert_int_equal(irqs_at[5], 2);
    /* The math itself, with wraparound. */
    assert_true(virtq_need_event(0xffff, 0, 0xffff));
    assert_true(virtq_need_event(0xfffe, 2, 0xfff0));
    assert_false(virtq_need_event(5, 2, 1));
    assert_true(virtq_need_event(5, 6, 2));
    assert_false(virtq_need_event(10, 6, 2));
    /* Device-side kick suppression writes avail_event. */
    uint16_t *avail_event = gpa(f, USED + 4 + 8 * QSIZE);
    virtq_set_notification(vq, true);
    assert_int_equal(*avail_event, f->avail_idx);
}

static void test_no_interrupt_flag(void **state)
{
    struct fx *f = *state;
    start(f, F_PLAIN);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    put_desc(f, DESC, 0, BUF, 4, VIRTQ_DESC_F_WRITE, 0);
    *(uint16_t *)gpa(f, AVAIL) = VIRTQ_AVAIL_F_NO_INTERRUPT;
    publish(f, 0);
    virtq_push(vq, virtq_pop(vq), 4);
    virtq_notify(vq);
    assert_int_equal(f->irqs[0], 0);
    *(uint16_t *)gpa(f, AVAIL) = 0;
    publish(f, 0);
    virtq_push(vq, virtq_pop(vq), 4);
    virtq_notify(vq);
    assert_int_equal(f->irqs[0], 1);
    /* Without EVENT_IDX, suppressing kicks uses the used ring's flag. */
    virtq_set_notification(vq, false);
    assert_int_equal(*(uint16_t *)gpa(f, USED), VIRTQ_USED_F_NO_NOTIFY);
    virtq_set_notification(vq, true);
    assert_int_equal(*(uint16_t *)gpa(f, USED), 0);
}

static void test_wraparound(void **state)
{
    struct fx *f = *state;
    start(f, F_ALL);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    for (unsigned i = 0; i < QSIZE; i++)
        put_desc(f, DESC, i, BUF + 64 * i, 64, VIRTQ_DESC_F_WRITE, 0);
    /* 70000 requests, a few in flight at a time: both 16-bit indices wrap. */
    for (unsigned round = 0; round < 70000 / 3; round++) {
        for (unsigned k = 0; k < 3; k++)
            publish(f, (uint16_t)((round + k) % QSIZE));
        for (unsigned k = 0; k < 3; k++) {
            struct virtq_elem *e = virtq_pop(vq);
            assert_non_null(e);
            assert_int_equal(e->head, (round + k) % QSIZE);
            virtq_push(vq, e, 1);
        }
        assert_null(virtq_pop(vq));
    }
    assert_int_equal(used_idx(f), (uint16_t)(70000 / 3 * 3));
    assert_int_equal(vq->last_avail_idx, f->avail_idx);
    assert_false(f->vd.broken);
}

static void test_unpop_and_stale(void **state)
{
    struct fx *f = *state;
    start(f, F_ALL);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    put_desc(f, DESC, 2, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 2);
    struct virtq_elem *e = virtq_pop(vq);
    virtq_unpop(vq, e);
    e = virtq_pop(vq);
    assert_non_null(e);
    assert_int_equal(e->head, 2);
    /* A reset while the element is in flight: the late push must not touch the ring. */
    virtio_dev_reset(&f->vd);
    memset(gpa(f, USED), 0x5a, 16);
    virtq_push(vq, e, 8);
    assert_int_equal(*(uint8_t *)gpa(f, USED + 2), 0x5a);
}

/* ---- hostile drivers ---- */

/* After a protocol violation: NEEDS_RESET, one config interrupt, nothing popped; a reset and a
 * clean restart make the queue work again. */
static void expect_broken(struct fx *f)
{
    struct virtq *vq = virtio_queue(&f->vd, 0);
    assert_null(virtq_pop(vq));
    assert_true(f->vd.broken);
    assert_true(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
    assert_int_equal(f->config_irqs, 1);
    assert_null(virtq_pop(vq)); /* stays broken, no second interrupt */
    assert_int_equal(f->config_irqs, 1);
    /* The driver cannot clear the bit itself. */
    virtio_set_status(&f->vd, f->vd.status & ~VIRTIO_STATUS_NEEDS_RESET);
    assert_true(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
    virtio_set_status(&f->vd, 0);
    assert_false(f->vd.broken);
    assert_int_equal(f->vd.status, 0);
    assert_false(vq->enabled);
    memset(f->ram, 0, RAM_SIZE);
    start(f, F_ALL);
    put_desc(f, DESC, 0, BUF, 4, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 0);
    struct virtq_elem *e = virtq_pop(vq);
    assert_non_null(e);
    virtq_push(vq, e, 4);
    assert_int_equal(used_idx(f), 1);
}

static void hostile(void **state, void (*build)(struct fx *f))
{
    struct fx *f = *state;
    start(f, F_ALL);
    build(f);
    expect_broken(f);
}

static void b_outside_ram(struct fx *f)
{
    put_desc(f, DESC, 0, RAM_SIZE - 8, 16, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 0);
}
static void b_addr_overflow(struct fx *f)
{
    put_desc(f, DESC, 0, UINT64_MAX - 7, 64, 0, 0);
    publish(f, 0);
}
static void b_huge_len(struct fx *f)
{
    put_desc(f, DESC, 0, BUF, 0xffffffffu, VIRTQ_DESC_F_WRITE, 0);
    publish(f, 0);
}
static void b_loop(struct fx *f)
{
    put_desc(f, DESC, 0, BUF, 4, VIRTQ_DESC_F_NEXT, 1);
    put_desc(f, DESC, 1, BUF, 4, VIRTQ_DESC_F_NEXT, 0);
    publish(f, 0);
}
static void b_self_loop(struct fx *f)
{
    put_desc(f, DESC, 4, BUF, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 4);
    publish(f, 4);
}
static void b_next_out_of_range(struct fx *f)
{
    put_desc(f, DESC, 0, BUF, 4, VIRTQ_DESC_F_NEXT, QSIZE);
    publish(f, 0);
}
static void b_head_out_of_range(struct fx *f)
{
    publish(f, 200);
}
static void b_write_then_read(struct fx *f)
{
    put_desc(f, DESC, 0, BUF, 4, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    put_desc(f, DESC, 1, BUF, 4, 0, 0);
    publish(f, 0);
}
static void b_avail_jump(struct fx *f)
{
    put_desc(f, DESC, 0, BUF, 4, VIRTQ_DESC_F_WRITE, 0);
    *(uint16_t *)gpa(f, AVAIL + 2) = QSIZE + 1;
}
static void b_indirect_bad_size(struct fx *f)
{
    put_desc(f, DESC, 0, ITABLE, 24, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
}
static void b_indirect_zero(struct fx *f)
{
    put_desc(f, DESC, 0, ITABLE, 0, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
}
static void b_indirect_nested(struct fx *f)
{
    put_desc(f, ITABLE, 0, ITABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
    put_desc(f, ITABLE + 0x100, 0, BUF, 4, 0, 0);
    put_desc(f, DESC, 0, ITABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
}
static void b_indirect_loop(struct fx *f)
{
    for (unsigned i = 0; i < 32; i++)
        put_desc(f, ITABLE, i, BUF, 4, VIRTQ_DESC_F_NEXT, (uint16_t)((i + 1) % 32));
    put_desc(f, DESC, 0, ITABLE, 32 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
}
static void b_indirect_outside(struct fx *f)
{
    put_desc(f, DESC, 0, RAM_SIZE - 16, 64, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
}
static void b_indirect_huge(struct fx *f)
{
    put_desc(f, DESC, 0, ITABLE, 0xfffffff0u, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
}
static void b_indirect_with_next(struct fx *f)
{
    put_desc(f, ITABLE, 0, BUF, 4, 0, 0);
    put_desc(f, DESC, 0, ITABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
    put_desc(f, DESC, 1, BUF, 4, 0, 0);
    publish(f, 0);
}

static void test_hostile_outside_ram(void **s) { hostile(s, b_outside_ram); }
static void test_hostile_addr_overflow(void **s) { hostile(s, b_addr_overflow); }
static void test_hostile_huge_len(void **s) { hostile(s, b_huge_len); }
static void test_hostile_loop(void **s) { hostile(s, b_loop); }
static void test_hostile_self_loop(void **s) { hostile(s, b_self_loop); }
static void test_hostile_next_range(void **s) { hostile(s, b_next_out_of_range); }
static void test_hostile_head_range(void **s) { hostile(s, b_head_out_of_range); }
static void test_hostile_write_then_read(void **s) { hostile(s, b_write_then_read); }
static void test_hostile_avail_jump(void **s) { hostile(s, b_avail_jump); }
static void test_hostile_indirect_size(void **s) { hostile(s, b_indirect_bad_size); }
static void test_hostile_indirect_zero(void **s) { hostile(s, b_indirect_zero); }
static void test_hostile_indirect_nested(void **s) { hostile(s, b_indirect_nested); }
static void test_hostile_indirect_loop(void **s) { hostile(s, b_indirect_loop); }
static void test_hostile_indirect_outside(void **s) { hostile(s, b_indirect_outside); }
static void test_hostile_indirect_huge(void **s) { hostile(s, b_indirect_huge); }
static void test_hostile_indirect_next(void **s) { hostile(s, b_indirect_with_next); }

static void test_indirect_without_feature(void **state)
{
    struct fx *f = *state;
    start(f, VIRTIO_F_BIT(VIRTIO_F_VERSION_1));
    put_desc(f, ITABLE, 0, BUF, 4, 0, 0);
    put_desc(f, DESC, 0, ITABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

/* Rings that are not in RAM, misaligned, or of a bad size fail at queue_enable. */
static void bad_ring(struct fx *f, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
    virtio_set_status(&f->vd, 0);
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_set_guest_features(&f->vd, 1, 1);
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                  VIRTIO_STATUS_FEATURES_OK);
    struct virtq *vq = &f->vd.vqs[0];
    vq->size = size;
    vq->desc_gpa = desc;
    vq->avail_gpa = avail;
    vq->used_gpa = used;
    assert_int_equal(virtq_enable(vq), -EINVAL);
    assert_false(vq->enabled);
    assert_true(f->vd.status & VIRTIO_STATUS_NEEDS_RESET);
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                  VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
    assert_false(virtio_dev_ready(&f->vd));
    assert_null(virtq_pop(vq));
}

static void test_hostile_rings(void **state)
{
    struct fx *f = *state;
    bad_ring(f, QSIZE, 0xfee00000, AVAIL, USED);           /* desc in MMIO space */
    bad_ring(f, QSIZE, DESC, AVAIL, RAM_SIZE - 8);         /* used ring crosses the end of RAM */
    bad_ring(f, QSIZE, DESC, UINT64_MAX - 3, USED);        /* wraps around */
    bad_ring(f, QSIZE, DESC + 8, AVAIL, USED);             /* misaligned */
    bad_ring(f, 6, DESC, AVAIL, USED);                     /* not a power of two */
    bad_ring(f, 0, DESC, AVAIL, USED);
    bad_ring(f, 2 * QSIZE, DESC, AVAIL, USED);             /* above the maximum */
}

static void test_features(void **state)
{
    struct fx *f = *state;
    /* FEATURES_OK refused without VERSION_1 and with bits the device did not offer. */
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    virtio_set_guest_features(&f->vd, 0, 0);
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                  VIRTIO_STATUS_FEATURES_OK);
    assert_false(f->vd.status & VIRTIO_STATUS_FEATURES_OK);
    virtio_set_guest_features(&f->vd, 1, 1 | 2); /* VERSION_1 | ACCESS_PLATFORM */
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                  VIRTIO_STATUS_FEATURES_OK);
    assert_false(f->vd.status & VIRTIO_STATUS_FEATURES_OK);
    virtio_set_guest_features(&f->vd, 1, 1);
    virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                  VIRTIO_STATUS_FEATURES_OK);
    assert_true(f->vd.status & VIRTIO_STATUS_FEATURES_OK);
    /* Frozen afterwards. */
    virtio_set_guest_features(&f->vd, 0, 1u << VIRTIO_F_RING_EVENT_IDX);
    assert_false(virtio_has_feature(&f->vd, VIRTIO_F_RING_EVENT_IDX));
    assert_int_equal(virtio_get_host_features(&f->vd, 1) & 1, 1);
    assert_int_equal(virtio_get_host_features(&f->vd, 1) & 2, 0); /* no ACCESS_PLATFORM */
    assert_int_equal(virtio_get_host_features(&f->vd, 2), 0);
    /* packed=on|off, QEMU's property. */
    assert_int_equal(virtio_parse_common_opt(&f->vd, NULL, "packed", "maybe"), -EINVAL);
    assert_int_equal(virtio_parse_common_opt(&f->vd, NULL, "other", "on"), 0);
    assert_int_equal(virtio_parse_common_opt(&f->vd, NULL, "packed", "off"), 1);
    assert_false(f->vd.host_features & VIRTIO_F_BIT(VIRTIO_F_RING_PACKED));
    assert_int_equal(virtio_parse_common_opt(&f->vd, NULL, "packed", "on"), 1);
    assert_true(f->vd.host_features & VIRTIO_F_BIT(VIRTIO_F_RING_PACKED));
}

/* ---- packed rings ---- */

#define PF_AVAIL (1u << 7)
#define PF_USED (1u << 15)
#define F_PACKED (F_ALL | VIRTIO_F_BIT(VIRTIO_F_RING_PACKED))

struct pdrv {
    unsigned pos, used_pos;
    bool wrap, used_wrap;
    unsigned chain[QSIZE];
};

static void pdesc(struct fx *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
                  uint16_t id, uint16_t flags)
{
    uint8_t *e = gpa(f, table + 16 * i);
    memcpy(e, &addr, 8);
    memcpy(e + 8, &len, 4);
    memcpy(e + 12, &id, 2);
    memcpy(e + 14, &flags, 2);
}

/* Driver side: make a chain of n buffers (len each, the last write-only) available. */
static uint16_t psubmit(struct fx *f, struct pdrv *d, unsigned n, uint32_t len, uint16_t extra)
{
    uint16_t id = (uint16_t)d->pos;
    for (unsigned i = 0; i < n; i++) {
        uint16_t fl = (uint16_t)((d->wrap ? PF_AVAIL : PF_USED) | (i + 1 < n ? 1 : 0) |
                                 (i + 1 == n ? 2 : 0) | extra);
        pdesc(f, DESC, d->pos, BUF + 0x100 * d->pos, len, id, fl);
        if (++d->pos == QSIZE) {
            d->pos = 0;
            d->wrap = !d->wrap;
        }
    }
    d->chain[id] = n;
    return id;
}

/* Driver side: the next used entry, or -1. */
static int pused(struct fx *f, struct pdrv *d, uint32_t *len)
{
    uint8_t *e = gpa(f, DESC + 16 * d->used_pos);
    uint16_t fl, id;
    memcpy(&fl, e + 14, 2);
    if (!!(fl & PF_AVAIL) != d->used_wrap || !!(fl & PF_USED) != d->used_wrap)
        return -1;
    memcpy(&id, e + 12, 2);
    memcpy(len, e + 8, 4);
    d->used_pos += d->chain[id];
    if (d->used_pos >= QSIZE) {
        d->used_pos -= QSIZE;
        d->used_wrap = !d->used_wrap;
    }
    return id;
}

static void test_packed_chains_and_wrap(void **state)
{
    struct fx *f = *state;
    start(f, F_PACKED);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    assert_true(vq->packed);
    struct pdrv d = {0, 0, true, true, {0}};
    assert_null(virtq_pop(vq));
    assert_true(virtq_empty(vq));
    /* 3-descriptor chains on an 8-entry ring: both wrap counters flip many times. */
    for (unsigned r = 0; r < 100; r++) {
        uint16_t id = psubmit(f, &d, 3, 16, 0);
        assert_false(virtq_empty(vq));
        struct virtq_elem *e = virtq_pop(vq);
        assert_non_null(e);
        assert_int_equal(e->head, id);
        assert_int_equal(e->nout, 2);
        assert_int_equal(e->nin, 1);
        assert_int_equal(e->ndescs, 3);
        assert_ptr_equal(e->out[0].iov_base, gpa(f, BUF + 0x100 * id));
        if (r == 50) { /* put it back once: the same chain comes out again */
            virtq_unpop(vq, e);
            e = virtq_pop(vq);
            assert_int_equal(e->head, id);
        }
        virtq_push(vq, e, 16);
        uint32_t len;
        assert_int_equal(pused(f, &d, &len), id);
        assert_int_equal(len, 16);
        assert_int_equal(pused(f, &d, &len), -1);
    }
    assert_false(f->vd.broken);
    /* Indirect: one ring entry pointing to a table of packed descriptors. */
    pdesc(f, ITABLE, 0, BUF, 10, 0, 0);
    pdesc(f, ITABLE, 1, BUF + 0x40, 20, 0, 2);
    uint16_t id = psubmit(f, &d, 1, 0, 0);
    pdesc(f, DESC, id, ITABLE, 32, id, (uint16_t)((d.pos == 0 ? !d.wrap : d.wrap) ? PF_AVAIL : PF_USED) | 4);
    struct virtq_elem *e = virtq_pop(vq);
    assert_non_null(e);
    assert_int_equal(e->nout, 1);
    assert_int_equal(e->nin, 1);
    assert_int_equal(e->in_len, 20);
    virtq_push(vq, e, 20);
    uint32_t len;
    assert_int_equal(pused(f, &d, &len), id);
    assert_false(f->vd.broken);
}

static void test_packed_notify(void **state)
{
    struct fx *f = *state;
    start(f, F_PACKED);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    struct pdrv d = {0, 0, true, true, {0}};
    uint16_t *drv_flags = gpa(f, AVAIL + 2), *drv_off = gpa(f, AVAIL);
    *drv_flags = 1; /* DISABLE */
    psubmit(f, &d, 1, 8, 0);
    virtq_push(vq, virtq_pop(vq), 8);
    virtq_notify(vq);
    assert_int_equal(f->irqs[0], 0);
    *drv_flags = 0; /* ENABLE */
    psubmit(f, &d, 1, 8, 0);
    virtq_push(vq, virtq_pop(vq), 8);
    virtq_notify(vq);
    assert_int_equal(f->irqs[0], 1);
    virtq_notify(vq); /* nothing new */
    assert_int_equal(f->irqs[0], 1);
    /* DESC: interrupt once the used position passes 4 (wrap counter 1). */
    *drv_flags = 2;
    *drv_off = 4 | 0x8000;
    unsigned irqs[4];
    for (unsigned i = 0; i < 4; i++) { /* used positions 2 -> 3 -> 4 -> 5 -> 6 */
        psubmit(f, &d, 1, 8, 0);
        virtq_push(vq, virtq_pop(vq), 8);
        virtq_notify(vq);
        irqs[i] = f->irqs[0];
    }
    assert_int_equal(irqs[0], 1);
    assert_int_equal(irqs[1], 1);
    assert_int_equal(irqs[2], 2); /* 4 -> 5 crosses event 4 */
    assert_int_equal(irqs[3], 2);
    /* Device-side kick suppression. */
    virtq_set_notification(vq, false);
    assert_int_equal(*(uint16_t *)gpa(f, USED + 2), 1);
    virtq_set_notification(vq, true);
    assert_int_equal(*(uint16_t *)gpa(f, USED + 2), 0);
}

static void phostile(void **state, void (*build)(struct fx *f, struct pdrv *d))
{
    struct fx *f = *state;
    start(f, F_PACKED);
    struct pdrv d = {0, 0, true, true, {0}};
    build(f, &d);
    expect_broken(f);
}

static void pb_too_long(struct fx *f, struct pdrv *d)
{
    /* Every entry available and chained: the walk must stop at the ring size. */
    for (unsigned i = 0; i < QSIZE; i++)
        pdesc(f, DESC, i, BUF, 4, 0, PF_AVAIL | 1);
    (void)d;
}
static void pb_outside(struct fx *f, struct pdrv *d)
{
    psubmit(f, d, 1, 16, 0);
    pdesc(f, DESC, 0, RAM_SIZE - 4, 16, 0, PF_AVAIL | 2);
}
static void pb_write_read(struct fx *f, struct pdrv *d)
{
    (void)d;
    pdesc(f, DESC, 0, BUF, 4, 0, PF_AVAIL | 2 | 1);
    pdesc(f, DESC, 1, BUF, 4, 0, PF_AVAIL);
}
static void pb_nested(struct fx *f, struct pdrv *d)
{
    (void)d;
    pdesc(f, ITABLE, 0, ITABLE + 0x100, 16, 0, 4);
    pdesc(f, DESC, 0, ITABLE, 16, 0, PF_AVAIL | 4);
}
static void pb_indirect_next(struct fx *f, struct pdrv *d)
{
    (void)d;
    pdesc(f, ITABLE, 0, BUF, 16, 0, 2);
    pdesc(f, DESC, 0, ITABLE, 16, 0, PF_AVAIL | 4 | 1);
    pdesc(f, DESC, 1, BUF, 16, 0, PF_AVAIL | 2);
}
static void pb_indirect_size(struct fx *f, struct pdrv *d)
{
    (void)d;
    pdesc(f, DESC, 0, ITABLE, 20, 0, PF_AVAIL | 4);
}
static void test_packed_hostile_long(void **s) { phostile(s, pb_too_long); }
static void test_packed_hostile_outside(void **s) { phostile(s, pb_outside); }
static void test_packed_hostile_write_read(void **s) { phostile(s, pb_write_read); }
static void test_packed_hostile_nested(void **s) { phostile(s, pb_nested); }
static void test_packed_hostile_indirect_next(void **s) { phostile(s, pb_indirect_next); }
static void test_packed_hostile_indirect_size(void **s) { phostile(s, pb_indirect_size); }

static void test_packed_ring_checks(void **state)
{
    struct fx *f = *state;
    struct virtq *vq = &f->vd.vqs[0];
    uint64_t feat = F_PACKED;
    for (unsigned c = 0; c < 3; c++) {
        virtio_set_status(&f->vd, 0);
        virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        virtio_set_guest_features(&f->vd, 0, (uint32_t)feat);
        virtio_set_guest_features(&f->vd, 1, (uint32_t)(feat >> 32));
        virtio_set_status(&f->vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                      VIRTIO_STATUS_FEATURES_OK);
        vq->size = c == 0 ? 6 : QSIZE; /* packed rings may have any size up to the maximum */
        vq->desc_gpa = c == 1 ? RAM_SIZE - 64 : DESC;
        vq->avail_gpa = c == 2 ? AVAIL + 2 : AVAIL;
        vq->used_gpa = USED;
        int r = virtq_enable(vq);
        if (c == 0) {
            assert_int_equal(r, 0);
            assert_true(vq->packed);
        } else {
            assert_int_equal(r, -EINVAL);
            assert_true(f->vd.broken);
        }
    }
}

/* Random rings, descriptors and indices (fixed seed): whatever the guest writes, every iovec the
 * core hands out lies inside guest RAM and every call returns (ASan watches the rest). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static unsigned fuzz_pops, fuzz_broken;

static void fuzz_round(struct fx *f, uint64_t features)
{
    memset(f->ram, 0, 0x20000);
    start(f, features);
    struct virtq *vq = virtio_queue(&f->vd, 0);
    bool packed = vq->packed;
    struct pdrv d = {0, 0, true, true, {0}};
    for (unsigned step = 0; step < 64 && !f->vd.broken; step++) {
        /* Mostly well-formed requests, as a driver makes them... */
        unsigned legit = (unsigned)(rnd() % 3);
        for (unsigned k = 0; k < legit; k++) {
            if (packed) {
                psubmit(f, &d, 1 + (unsigned)(rnd() % 3), 16, 0);
            } else {
                uint16_t h = (uint16_t)(rnd() % QSIZE);
                put_desc(f, DESC, h, BUF + 64 * h, 64, VIRTQ_DESC_F_WRITE, 0);
                publish(f, h);
            }
        }
        /* ...and a few bytes of scribbling over the rings and the indirect area. */
        for (unsigned k = 0; k < (rnd() & 3); k++) {
            uint64_t r = rnd();
            uint64_t where = (uint64_t[]){DESC, AVAIL, USED, ITABLE}[r & 3] + ((r >> 2) % 160);
            uint64_t v;
            switch ((r >> 12) % 5) {
            case 0: v = BUF + ((r >> 20) % 0x1000); break;        /* good address */
            case 1: v = RAM_SIZE - ((r >> 20) % 64); break;       /* near the end */
            case 2: v = (r >> 20) % 4; break;                     /* small index/flag */
            case 3: v = ITABLE; break;
            default: v = r >> 16; break;
            }
            unsigned len = 1u << ((r >> 40) % 4);
            memcpy(gpa(f, where), &v, len);
        }
        for (unsigned n = 0; n < 8; n++) {
            struct virtq_elem *e = virtq_pop(vq);
            if (!e)
                break;
            fuzz_pops++;
            for (unsigned i = 0; i < e->nout + e->nin; i++) {
                uint8_t *b = e->iov[i].iov_base;
                assert_true(b >= f->ram && b + e->iov[i].iov_len <= f->ram + RAM_SIZE);
            }
            static uint8_t pattern[4096];
            iov_from_buf(e->in, e->nin, 0, pattern, MIN(e->in_len, sizeof(pattern)));
            if (rnd() & 1)
                virtq_push(vq, e, (uint32_t)rnd());
            else
                virtq_unpop(vq, e);
            virtq_notify(vq);
        }
    }
    fuzz_broken += f->vd.broken;
    virtio_set_status(&f->vd, 0);
    f->config_irqs = 0;
}

static void test_fuzz(void **state)
{
    struct fx *f = *state;
    /* VIRTQ_FUZZ_SEED=N explores other sequences (the default one is fixed for CI). */
    const char *seed = getenv("VIRTQ_FUZZ_SEED");
    if (seed)
        rng_state = strtoull(seed, NULL, 0) * 0x9e3779b97f4a7c15ULL | 1;
    for (unsigned round = 0; round < 300; round++)
        fuzz_round(f, round & 1 ? F_ALL : F_PACKED);
    print_message("fuzz: %u chains popped, %u of 300 rounds ended in NEEDS_RESET\n", fuzz_pops,
                  fuzz_broken);
    /* Both outcomes must be exercised, or the generator is useless. */
    assert_true(fuzz_pops > 100);
    assert_true(fuzz_broken > 30 && fuzz_broken < 300);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_direct_chain),
        T(test_indirect_chain),
        T(test_event_idx_suppression),
        T(test_no_interrupt_flag),
        T(test_wraparound),
        T(test_unpop_and_stale),
        T(test_hostile_outside_ram),
        T(test_hostile_addr_overflow),
        T(test_hostile_huge_len),
        T(test_hostile_loop),
        T(test_hostile_self_loop),
        T(test_hostile_next_range),
        T(test_hostile_head_range),
        T(test_hostile_write_then_read),
        T(test_hostile_avail_jump),
        T(test_hostile_indirect_size),
        T(test_hostile_indirect_zero),
        T(test_hostile_indirect_nested),
        T(test_hostile_indirect_loop),
        T(test_hostile_indirect_outside),
        T(test_hostile_indirect_huge),
        T(test_hostile_indirect_next),
        T(test_indirect_without_feature),
        T(test_hostile_rings),
        T(test_features),
        T(test_packed_chains_and_wrap),
        T(test_packed_notify),
        T(test_packed_hostile_long),
        T(test_packed_hostile_outside),
        T(test_packed_hostile_write_read),
        T(test_packed_hostile_nested),
        T(test_packed_hostile_indirect_next),
        T(test_packed_hostile_indirect_size),
        T(test_packed_ring_checks),
        T(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
