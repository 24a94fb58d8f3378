/* 16550A register behaviour as Linux's 8250 driver sees it, with a fake chardev and irq chip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fake_machine.h"
#include "chardev/chardev.h"
#include "hw/devices.h"
#include "machine/layout.h"

#include <string.h>

/* ---- fake chardev: records output and the frontend the UART installs ---- */

struct chardev {
    int dummy;
};
static struct chardev fake_chr;
static struct chardev_frontend fe;
static bool fe_set;
static uint8_t tx[256];
static size_t tx_len;
static unsigned accept_calls;

void chardev_set_frontend(struct chardev *c, const struct chardev_frontend *f)
{
    fe = *f;
    fe_set = true;
}

void chardev_write(struct chardev *c, const void *buf, size_t len)
{
    if (tx_len + len <= sizeof(tx)) {
        memcpy(tx + tx_len, buf, len);
        tx_len += len;
    }
}

void chardev_accept_input(struct chardev *c)
{
    accept_calls++;
}

#define COM PORT_COM1
#define RBR (COM + 0)
#define THR (COM + 0)
#define IER (COM + 1)
#define IIR (COM + 2)
#define FCR (COM + 2)
#define LCR (COM + 3)
#define MCR (COM + 4)
#define LSR (COM + 5)
#define MSR (COM + 6)
#define SCR (COM + 7)

struct fixture {
    struct machine m;
    struct serial *s;
};

static int setup(void **state)
{
    static struct fixture f;
    fake_machine_init(&f.m, false);
    fe_set = false;
    tx_len = 0;
    accept_calls = 0;
    f.s = serial_create(&f.m, COM, IRQ_COM1, &fake_chr);
    assert_non_null(f.s);
    assert_true(fe_set);
    *state = &f;
    return 0;
}

static void rx(const char *s)
{
    fe.receive(fe.opaque, (const uint8_t *)s, strlen(s));
}

static void test_scratch_and_dlab(void **state)
{
    struct machine *m = &((struct fixture *)*state)->m;
    pio_out8(m, SCR, 0x55);
    assert_int_equal(pio_in8(m, SCR), 0x55);
    pio_out8(m, SCR, 0xAA);
    assert_int_equal(pio_in8(m, SCR), 0xAA);

    pio_out8(m, IER, 0x05);
    pio_out8(m, LCR, 0x83); /* DLAB + 8N1 */
    pio_out8(m, COM + 0, 0x01);
    pio_out8(m, COM + 1, 0x02);
    assert_int_equal(pio_in8(m, COM + 0), 0x01);
    assert_int_equal(pio_in8(m, COM + 1), 0x02);
    assert_int_equal(tx_len, 0); /* divisor writes are not output */
    pio_out8(m, LCR, 0x03);
    assert_int_equal(pio_in8(m, LCR), 0x03);
    assert_int_equal(pio_in8(m, IER), 0x05); /* IER was untouched by the DLM write */
    pio_out8(m, THR, 'x');
    assert_int_equal(tx_len, 1);
    assert_int_equal(tx[0], 'x');
    assert_int_equal(pio_in8(m, LSR) & 0x60, 0x60); /* THRE and TEMT at once */
}

static void test_loopback_probe(void **state)
{
    struct machine *m = &((struct fixture *)*state)->m;
    /* What 8250 autoconfig does: loopback with RTS|OUT2 must show CTS|DCD. */
    pio_out8(m, MCR, 0x10 | 0x0A);
    assert_int_equal(pio_in8(m, MSR) & 0xF0, 0x90);
    pio_out8(m, MCR, 0x10 | 0x05); /* DTR|OUT1 -> DSR|RI */
    assert_int_equal(pio_in8(m, MSR) & 0xF0, 0x60);
    /* Transmitted bytes come back on the receiver, not on the host side. */
    assert_int_equal(fe.can_read(fe.opaque), 0); /* host input waits during loopback */
    pio_out8(m, THR, 'L');
    assert_int_equal(tx_len, 0);
    assert_true(pio_in8(m, LSR) & 0x01);
    assert_int_equal(pio_in8(m, RBR), 'L');
    assert_false(pio_in8(m, LSR) & 0x01);
    unsigned before = accept_calls;
    pio_out8(m, MCR, 0x0B);
    assert_int_equal(pio_in8(m, MSR) & 0xF0, 0xB0);
    assert_true(accept_calls > before); /* leaving loopback asks the backend for more */
    assert_int_equal(fe.can_read(fe.opaque), 1);
}

static void test_fifo_trigger_and_reset(void **state)
{
    struct machine *m = &((struct fixture *)*state)->m;
    pio_out8(m, FCR, 0x47); /* enable, clear both, trigger 4 */
    assert_int_equal(pio_in8(m, IIR) & 0xC0, 0xC0);
    pio_out8(m, IER, 0x01);
    assert_int_equal(fe.can_read(fe.opaque), 16);
    rx("abc");
    /* Below the trigger: reported as a character timeout. */
    assert_int_equal(pio_in8(m, IIR), 0xCC);
    rx("d");
    assert_int_equal(pio_in8(m, IIR), 0xC4);
    assert_true(fake_irq.level[IRQ_COM1]);
    assert_int_equal(fe.can_read(fe.opaque), 12);
    assert_int_equal(pio_in8(m, RBR), 'a');
    assert_int_equal(pio_in8(m, RBR), 'b');
    /* FIFO reset drops what is queued. */
    pio_out8(m, FCR, 0x43);
    assert_false(pio_in8(m, LSR) & 0x01);
    assert_int_equal(pio_in8(m, IIR), 0xC1);
    assert_false(fake_irq.level[IRQ_COM1]);
    assert_int_equal(fe.can_read(fe.opaque), 16);
    /* Disabling the FIFO: one-byte holding register, IIR bits 7:6 clear. */
    pio_out8(m, FCR, 0x00);
    assert_int_equal(pio_in8(m, IIR) & 0xC0, 0x00);
    assert_int_equal(fe.can_read(fe.opaque), 1);
}

static void test_overrun_and_priorities(void **state)
{
    struct machine *m = &((struct fixture *)*state)->m;
    pio_out8(m, FCR, 0xC7);        /* trigger 14 */
    pio_out8(m, MCR, 0x10 | 0x0A); /* loopback: MSR deltas now pending */
    for (int i = 0; i < 17; i++)
        pio_out8(m, THR, 'A' + i);
    pio_out8(m, IER, 0x0F);
    /* Line status first. */
    assert_int_equal(pio_in8(m, IIR), 0xC6);
    uint8_t lsr = pio_in8(m, LSR);
    assert_true(lsr & 0x02);           /* overrun */
    assert_false(pio_in8(m, LSR) & 0x02); /* read clears it */
    /* Then received data (16 >= 14). */
    assert_int_equal(pio_in8(m, IIR), 0xC4);
    for (int i = 0; i < 16; i++)
        assert_int_equal(pio_in8(m, RBR), 'A' + i); /* the 17th was lost, FIFO order kept */
    /* Then THR empty; reading IIR that reports it consumes it. */
    assert_int_equal(pio_in8(m, IIR), 0xC2);
    /* Then modem status, until MSR is read. */
    assert_int_equal(pio_in8(m, IIR), 0xC0);
    assert_true(pio_in8(m, MSR) & 0x0F);
    assert_int_equal(pio_in8(m, IIR), 0xC1);
    assert_false(fake_irq.level[IRQ_COM1]);
}

static void test_thre_sequence(void **state)
{
    struct machine *m = &((struct fixture *)*state)->m;
    unsigned rises = fake_irq.rises[IRQ_COM1];
    /* Linux's UART_BUG_THRE probe: enabling ETBEI with THR empty interrupts, both times. */
    pio_out8(m, IER, 0x02);
    assert_true(fake_irq.level[IRQ_COM1]);
    assert_int_equal(fake_irq.rises[IRQ_COM1], rises + 1);
    assert_int_equal(pio_in8(m, IIR), 0x02);
    assert_false(fake_irq.level[IRQ_COM1]);
    assert_int_equal(pio_in8(m, IIR), 0x01); /* consumed by the read */
    pio_out8(m, IER, 0x00);
    pio_out8(m, IER, 0x02);
    assert_int_equal(pio_in8(m, IIR), 0x02);
    /* Each THR write empties at once and raises a fresh edge. */
    rises = fake_irq.rises[IRQ_COM1];
    pio_out8(m, THR, 'a');
    assert_int_equal(fake_irq.rises[IRQ_COM1], rises + 1);
    pio_out8(m, THR, 'b'); /* not acknowledged: the line drops and rises again */
    assert_int_equal(fake_irq.rises[IRQ_COM1], rises + 2);
    assert_true(fake_irq.level[IRQ_COM1]);
    pio_out8(m, IER, 0x00);
    assert_false(fake_irq.level[IRQ_COM1]);
    assert_int_equal(tx_len, 2);
    assert_memory_equal(tx, "ab", 2);
}

static void test_rx_flow_control(void **state)
{
    struct machine *m = &((struct fixture *)*state)->m;
    pio_out8(m, IER, 0x01);
    /* No FIFO: one byte at a time, and the backend is asked for more after each read. */
    assert_int_equal(fe.can_read(fe.opaque), 1);
    rx("x");
    assert_true(fake_irq.level[IRQ_COM1]);
    assert_int_equal(fe.can_read(fe.opaque), 0);
    unsigned before = accept_calls;
    assert_int_equal(pio_in8(m, RBR), 'x');
    assert_false(fake_irq.level[IRQ_COM1]);
    assert_int_equal(accept_calls, before + 1);
    assert_int_equal(fe.can_read(fe.opaque), 1);
    /* With the FIFO: 16 bytes, then the backend must hold the rest. */
    pio_out8(m, FCR, 0x01);
    rx("0123456789abcdef");
    assert_int_equal(fe.can_read(fe.opaque), 0);
    assert_false(pio_in8(m, LSR) & 0x02); /* nothing lost */
    before = accept_calls;
    assert_int_equal(pio_in8(m, RBR), '0');
    assert_int_equal(accept_calls, before + 1);
    assert_int_equal(fe.can_read(fe.opaque), 1);
}

static void test_break(void **state)
{
    struct machine *m = &((struct fixture *)*state)->m;
    assert_non_null(fe.send_break);
    pio_out8(m, IER, 0x05); /* line status + data */
    fe.send_break(fe.opaque);
    assert_true(fake_irq.level[IRQ_COM1]);
    assert_int_equal(pio_in8(m, IIR), 0x06);
    uint8_t lsr = pio_in8(m, LSR);
    assert_int_equal(lsr & 0x11, 0x11); /* BI with the zero character waiting */
    assert_int_equal(pio_in8(m, RBR), 0x00);
    assert_int_equal(pio_in8(m, IIR), 0x01);
    assert_false(fake_irq.level[IRQ_COM1]);
}

static void test_reset_state(void **state)
{
    struct machine *m = &((struct fixture *)*state)->m;
    pio_out8(m, IER, 0x0F);
    pio_out8(m, LCR, 0x1B);
    pio_out8(m, FCR, 0x01);
    pio_out8(m, SCR, 0x77);
    rx("q");
    assert_true(fake_irq.level[IRQ_COM1]);
    machine_reset_devices(m);
    assert_int_equal(pio_in8(m, IER), 0);
    assert_int_equal(pio_in8(m, LCR), 0);
    assert_int_equal(pio_in8(m, LSR), 0x60);
    assert_int_equal(pio_in8(m, IIR), 0x01);
    assert_int_equal(pio_in8(m, MSR) & 0xF0, 0xB0);
    assert_false(fake_irq.level[IRQ_COM1]);
}

static void test_no_backend_and_wide_access(void **state)
{
    struct machine m;
    fake_machine_init(&m, false);
    struct serial *s = serial_create(&m, 0x2F8, 3, NULL);
    assert_non_null(s);
    pio_out8(&m, 0x2F8, 'z'); /* dropped, no crash */
    assert_int_equal(pio_in8(&m, 0x2F8 + 5) & 0x60, 0x60);
    /* A 16-bit access becomes two byte cycles: SCR at +7 then nothing beyond. */
    pio_out(&m, 0x2F8 + 6, 2, 0x3400);
    assert_int_equal(pio_in8(&m, 0x2F8 + 7), 0x34);
    /* The same range cannot be claimed twice. */
    assert_null(serial_create(&m, 0x2F8, 3, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_scratch_and_dlab, setup),
        cmocka_unit_test_setup(test_loopback_probe, setup),
        cmocka_unit_test_setup(test_fifo_trigger_and_reset, setup),
        cmocka_unit_test_setup(test_overrun_and_priorities, setup),
        cmocka_unit_test_setup(test_thre_sequence, setup),
        cmocka_unit_test_setup(test_rx_flow_control, setup),
        cmocka_unit_test_setup(test_break, setup),
        cmocka_unit_test_setup(test_reset_state, setup),
        cmocka_unit_test(test_no_backend_and_wide_access),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
