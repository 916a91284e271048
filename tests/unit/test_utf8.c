/* test_utf8.c - strict UTF-8 decoding and encoding, table-driven */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/utf8.h"

struct dec_case {
    const char *in;
    size_t n;
    size_t len; /* 0: invalid */
    uint32_t cp;
};

static const struct dec_case cases[] = {
    {"A", 1, 1, 0x41},
    {"\xC3\xA9", 2, 2, 0xE9},
    {"\xE2\x82\xAC", 3, 3, 0x20AC},
    {"\xF0\x9F\x98\x80", 4, 4, 0x1F600},
    {"\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFF},
    {"\xC0\x80", 2, 0, 0},         /* overlong NUL */
    {"\xC1\xBF", 2, 0, 0},         /* overlong */
    {"\xE0\x80\xAF", 3, 0, 0},     /* overlong '/' */
    {"\xED\xA0\x80", 3, 0, 0},     /* surrogate */
    {"\xF4\x90\x80\x80", 4, 0, 0}, /* above U+10FFFF */
    {"\xF5\x80\x80\x80", 4, 0, 0}, /* lead byte never used */
    {"\x80", 1, 0, 0},             /* lone continuation */
    {"\xE2\x82", 2, 0, 0},         /* cut short */
    {"\xE2\x82\x41", 3, 0, 0},     /* bad continuation */
    {"\xC3\xA9rest", 2, 2, 0xE9},  /* n limits what is read */
    {"", 0, 0, 0},
};

static void test_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t cp = 0;
        size_t len = mg_utf8_decode((const unsigned char *)cases[i].in, cases[i].n, &cp);
        if (len != cases[i].len || (len > 0 && cp != cases[i].cp))
            fail_msg("case %zu: len %zu cp %x", i, len, cp);
    }
}

/* Every scalar value encodes and decodes to itself; others become U+FFFD. */
static void test_round_trip(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x3000 ? 1 : 97)) {
        unsigned char buf[4];
        size_t n = mg_utf8_encode(cp, buf);
        uint32_t back = 0;
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            assert_int_equal(mg_utf8_decode(buf, n, &back), 3);
            assert_int_equal(back, 0xFFFD);
            continue;
        }
        assert_int_equal(mg_utf8_decode(buf, n, &back), n);
        assert_int_equal(back, cp);
    }
    unsigned char buf[4];
    uint32_t back;
    assert_int_equal(mg_utf8_encode(0x110000, buf), 3);
    assert_int_equal(mg_utf8_decode(buf, 3, &back), 3);
    assert_int_equal(back, 0xFFFD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
