/* test_buf.c - bounded buffers: the maximum, sticky failure, caller storage */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/buf.h"

/* Past the maximum an append fails, the contents stay, and so do later
 * appends, small ones too: no value is kept with a hole in it. */
static void test_fails_closed(void **state)
{
    (void)state;
    struct mg_buf b;
    mg_buf_init(&b, 8);
    assert_int_equal(mg_buf_append(&b, "abcde", 5), 0);
    assert_int_equal(mg_buf_append(&b, "fghij", 5), MG_BUF_LIMIT);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "abcde");
    assert_int_equal(mg_buf_putc(&b, 'x'), MG_BUF_LIMIT); /* would fit, but it sticks */
    assert_int_equal(b.failed, MG_BUF_LIMIT);
    mg_buf_reset(&b);
    assert_int_equal(mg_buf_append(&b, "12345678", 8), 0);
    assert_int_equal(b.failed, 0);
    mg_buf_finish(&b);
}

/* Over caller storage: never more than cap - 1 bytes and a NUL, never a
 * write past it, nothing to free. */
static void test_fixed_storage(void **state)
{
    (void)state;
    char store[8];
    memset(store, 'Z', sizeof(store));
    struct mg_buf b;
    mg_buf_init_fixed(&b, store, 6);
    assert_int_equal(mg_buf_append(&b, "hello", 5), 0);
    assert_string_equal(store, "hello");
    assert_int_equal(mg_buf_putc(&b, '!'), MG_BUF_LIMIT);
    assert_string_equal(store, "hello");
    assert_int_equal(store[6], 'Z');
    assert_int_equal(store[7], 'Z');
    mg_buf_finish(&b); /* does not free caller storage */
    assert_null(b.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fails_closed),
        cmocka_unit_test(test_fixed_storage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
