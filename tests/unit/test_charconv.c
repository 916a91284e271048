/* test_charconv.c - the per-process cache of charset converters, through
 * mg_to_utf8 (what the parser uses) and directly */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/buf.h"
#include "mailgrab/charconv.h"
#include "mailgrab/textdec.h"

static int fresh(void **state)
{
    (void)state;
    mg_charconv_clear();
    return 0;
}

static void expect_utf8(const char *cs, const char *in, size_t n, const char *want)
{
    struct mg_buf out;
    mg_buf_init(&out, 4096);
    assert_int_equal(mg_to_utf8(cs, strlen(cs), in, n, &out), 0);
    if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
        fail_msg("%s: got '%.*s', want '%s'", cs, (int)out.len, out.data ? out.data : "", want);
    mg_buf_finish(&out);
}

struct conv_case {
    const char *charset;
    const char *in;
    size_t n;
    const char *want;
};

static const struct conv_case cases[] = {
    {"koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4", 6, "Привет"},
    {"ISO-8859-2", "Za\xbf\xf3\xb3\xe6", 6, "Zażółć"},
    {"iso-8859-1", "caf\xe9 \x80", 6, "café €"}, /* read as windows-1252 */
    {"windows-1251", "\xcc\xee\xf1\xea\xe2\xe0", 6, "Москва"},
    {"shift_jis", "\x89\xef\x8b\x63", 4, "会議"},
    {"iso-2022-jp", "\x1b$B;3ED\x1b(B", 10, "山田"},
    {"euc-kr", "\xc7\xd1\xb1\xb9", 4, "한국"},
    {"gb2312", "\xd6\xd0\xce\xc4", 4, "中文"},
    {"utf-8", "Z\xc3\xb8\xc3\xab", 5, "Zøë"},
    {"x-no-such-charset", "caf\xe9", 4, "café"}, /* unknown: raw 8-bit */
};

/* Every charset decodes right the first time and again from the cache, which
 * opens nothing the second time round. */
static void test_decodes_and_reuses(void **state)
{
    (void)state;
    size_t k = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < k; i++)
        expect_utf8(cases[i].charset, cases[i].in, cases[i].n, cases[i].want);
    struct mg_charconv_counts first;
    mg_charconv_counts(&first);
    assert_true(first.opens > 0);
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < k; i++)
            expect_utf8(cases[i].charset, cases[i].in, cases[i].n, cases[i].want);
    struct mg_charconv_counts again;
    mg_charconv_counts(&again);
    assert_int_equal(again.opens, first.opens);
    assert_int_equal(again.hits, first.hits + 3 * (k - 1)); /* all but valid utf-8 */
    assert_int_equal(again.evictions, 0);
}

/* A converter left mid-way (ISO-2022-JP switched to JIS X 0208, never
 * switched back) is handed out again in its initial state: "abc" is ASCII,
 * not half a kanji pair. */
static void test_reset_after_partial(void **state)
{
    (void)state;
    struct mg_charconv c;
    assert_int_equal(mg_charconv_acquire("ISO-2022-JP", 11, &c), 0);
    char in[] = "\x1b$B;3";
    char out[64];
    char *ip = in, *op = out;
    size_t il = 5, ol = sizeof(out);
    iconv(c.cd, &ip, &il, &op, &ol);
    assert_int_equal(il, 0);
    iconv_t first = c.cd;
    mg_charconv_release(&c);

    assert_int_equal(mg_charconv_acquire("iso-2022-jp", 11, &c), 0);
    assert_ptr_equal(c.cd, first); /* the same descriptor, from the cache */
    char in2[] = "abcd";
    ip = in2;
    op = out;
    il = 4;
    ol = sizeof(out);
    assert_int_not_equal(iconv(c.cd, &ip, &il, &op, &ol), (size_t)-1);
    assert_int_equal(op - out, 4);
    assert_memory_equal(out, "abcd", 4);
    mg_charconv_release(&c);
}

/* After invalid input (and the replacement characters it gives) the next
 * text in the same charset converts cleanly. */
static void test_reuse_after_error(void **state)
{
    (void)state;
    expect_utf8("shift_jis", "\x89\xef\x81", 3, "会\xef\xbf\xbd");
    expect_utf8("iso-2022-jp", "\x1b$B;3", 5, "山");
    expect_utf8("iso-2022-jp", "plain", 5, "plain");
    expect_utf8("shift_jis", "\x8b\x63", 2, "議");
    expect_utf8("euc-kr", "\xc7", 1, "\xef\xbf\xbd");
    expect_utf8("euc-kr", "\xb1\xb9", 2, "국");
}

/* A byte-order mark in one text must not decide the order of the next:
 * glibc keeps it across a reset, so such charsets are not cached. */
static void test_byte_order_not_carried(void **state)
{
    (void)state;
    expect_utf8("UTF-16", "\xfe\xff\x00\x61", 4, "a");
    expect_utf8("UTF-16", "b\x00", 2, "b");
    expect_utf8("utf-32", "\x00\x00\xfe\xff\x00\x00\x00\x61", 8, "a");
    expect_utf8("utf-32", "b\x00\x00\x00", 4, "b");
    struct mg_charconv_counts n;
    mg_charconv_counts(&n);
    assert_int_equal(n.cached, 0);
}

static const char *const names[] = {
    "ISO-8859-1",  "ISO-8859-2",  "ISO-8859-3", "ISO-8859-4",  "ISO-8859-5",  "ISO-8859-6",
    "ISO-8859-7",  "ISO-8859-8",  "ISO-8859-9", "ISO-8859-10", "ISO-8859-13", "ISO-8859-14",
    "ISO-8859-15", "ISO-8859-16", "KOI8-R",     "KOI8-U",      "CP1250",      "CP1251",
};

static void use(const char *name)
{
    struct mg_charconv c;
    assert_int_equal(mg_charconv_acquire(name, strlen(name), &c), 0);
    mg_charconv_release(&c);
}

/* Full: the least recently used converter makes room, the cache never holds
 * more than MG_CHARCONV_MAX, and an evicted one is opened again. */
static void test_eviction(void **state)
{
    (void)state;
    size_t k = sizeof(names) / sizeof(names[0]);
    assert_true(k == MG_CHARCONV_MAX + 2);
    for (size_t i = 0; i < k; i++)
        use(names[i]);
    struct mg_charconv_counts n;
    mg_charconv_counts(&n);
    assert_int_equal(n.opens, k);
    assert_int_equal(n.evictions, 2);
    assert_int_equal(n.cached, MG_CHARCONV_MAX);
    use(names[k - 1]); /* the newest: still there */
    mg_charconv_counts(&n);
    assert_int_equal(n.opens, k);
    use(names[0]); /* the oldest: gone, opened again, evicting names[2] */
    mg_charconv_counts(&n);
    assert_int_equal(n.opens, k + 1);
    assert_int_equal(n.evictions, 3);
    use(names[3]); /* untouched since, but younger than names[2]: kept */
    mg_charconv_counts(&n);
    assert_int_equal(n.opens, k + 1);
    assert_int_equal(n.cached, MG_CHARCONV_MAX);
}

/* An unknown name is looked up once; a converter in use is not handed out
 * twice. */
static void test_unknown_and_busy(void **state)
{
    (void)state;
    struct mg_charconv a, b;
    assert_int_equal(mg_charconv_acquire("X-NO-SUCH", 9, &a), -1);
    assert_int_equal(mg_charconv_acquire("x-no-such", 9, &a), -1);
    struct mg_charconv_counts n;
    mg_charconv_counts(&n);
    assert_int_equal(n.opens, 1);
    assert_int_equal(n.hits, 1);

    assert_int_equal(mg_charconv_acquire("KOI8-R", 6, &a), 0);
    assert_int_equal(mg_charconv_acquire("KOI8-R", 6, &b), 0);
    assert_ptr_not_equal(a.cd, b.cd);
    assert_int_equal(b.slot, -1); /* a second one, closed on release */
    iconv_t cached = a.cd;
    mg_charconv_release(&b);
    mg_charconv_release(&a);
    mg_charconv_counts(&n);
    assert_int_equal(n.cached, 2); /* X-NO-SUCH and one KOI8-R */
    assert_int_equal(mg_charconv_acquire("koi8-r", 6, &b), 0);
    assert_ptr_equal(b.cd, cached);
    mg_charconv_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_decodes_and_reuses, fresh),
        cmocka_unit_test_setup(test_reset_after_partial, fresh),
        cmocka_unit_test_setup(test_reuse_after_error, fresh),
        cmocka_unit_test_setup(test_byte_order_not_carried, fresh),
        cmocka_unit_test_setup(test_eviction, fresh),
        cmocka_unit_test_setup(test_unknown_and_busy, fresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
