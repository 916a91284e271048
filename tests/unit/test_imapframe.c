/* Unit tests: IMAP response framing and its bounds (imapframe.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/imapframe.h"

#define GREETING "* OK ready\r\n"

/* A growing byte buffer for building server output. */
struct out {
    unsigned char *b;
    size_t n, cap;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2;
        o->b = realloc(o->b, o->cap);
        assert_non_null(o->b);
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void repeat(struct out *o, const char *s, size_t times)
{
    for (size_t i = 0; i < times; i++)
        puts_(o, s);
}

static void fill(struct out *o, char c, size_t n)
{
    char chunk[4096];
    memset(chunk, c, sizeof(chunk));
    while (n > 0) {
        size_t k = n < sizeof(chunk) ? n : sizeof(chunk);
        put(o, chunk, k);
        n -= k;
    }
}

/* Feed o in pieces of step bytes (0: all at once). */
static enum mg_frame_state feed(const struct out *o, bool consumed, bool bodies, size_t step,
                                char *why, size_t cap)
{
    struct mg_frame f;
    mg_frame_init(&f);
    f.fetch_consumed = consumed;
    f.bodies_streamed = bodies;
    why[0] = '\0';
    enum mg_frame_state st = MG_FRAME_OK;
    for (size_t i = 0; i < o->n && st == MG_FRAME_OK;) {
        size_t k = step == 0 || o->n - i < step ? o->n - i : step;
        st = mg_frame_feed(&f, o->b + i, k, why, cap);
        i += k;
    }
    return st;
}

/* The verdict does not depend on how the bytes were split into reads. */
static void expect(const struct out *o, bool consumed, bool bodies, enum mg_frame_state want,
                   const char *why_has)
{
    static const size_t steps[] = {0, 1, 7, 65536};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        if (steps[i] == 1 && o->n > (4u << 20))
            continue; /* byte by byte is slow on the big ones */
        char why[200];
        assert_int_equal(feed(o, consumed, bodies, steps[i], why, sizeof(why)), want);
        if (why_has != NULL && strstr(why, why_has) == NULL)
            fail_msg("why '%s' lacks '%s'", why, why_has);
    }
}

static void test_ordinary_session(void **state)
{
    struct out o = {0};
    puts_(&o,
          GREETING "* CAPABILITY IMAP4rev1\r\na1 OK done\r\n* 3 EXISTS\r\n"
                   "* OK [UIDVALIDITY 7] ok\r\n* LIST () \"/\" {5}\r\nIN\r\nX\r\na2 OK done\r\n");
    expect(&o, false, false, MG_FRAME_OK, NULL);
    free(o.b);
}

static void test_bye_greeting(void **state)
{
    struct out o = {0};
    puts_(&o, "* BYE too busy, come back later\r\n");
    expect(&o, false, false, MG_FRAME_BYE, "too busy, come back later");
    free(o.b);
    struct out later = {0};
    puts_(&later, GREETING "* BYE logging out\r\n");
    expect(&later, false, false, MG_FRAME_OK, NULL);
    char why[200];
    struct mg_frame f;
    mg_frame_init(&f);
    assert_int_equal(mg_frame_feed(&f, later.b, later.n, why, sizeof(why)), MG_FRAME_OK);
    assert_string_equal(f.bye, "logging out"); /* for the message when the stream ends */
    free(later.b);
}

static void test_long_line(void **state)
{
    struct out o = {0};
    puts_(&o, GREETING "* OK ");
    fill(&o, 'x', MG_FRAME_RESPONSE_MAX - 7);
    puts_(&o, "\r\n");
    expect(&o, false, false, MG_FRAME_OK, NULL); /* exactly the bound */
    o.n -= 2;
    puts_(&o, "xx\r\n");
    expect(&o, false, false, MG_FRAME_REFUSED, "longer than");
    free(o.b);
}

static void test_literal_outside_body(void **state)
{
    struct out o = {0};
    puts_(&o, GREETING "* LIST () \"/\" {4000000000}\r\n");
    expect(&o, false, false, MG_FRAME_REFUSED, "literal of 4000000000 bytes");
    free(o.b);
    /* In a listing, BODY[] is not streamed: libetpan would allocate it. */
    struct out l = {0};
    puts_(&l, GREETING "* 1 FETCH (UID 1 BODY[] {160000000}\r\n");
    expect(&l, true, false, MG_FRAME_REFUSED, "outside a message body");
    free(l.b);
}

static void test_body_literals_stream(void **state)
{
    static const char *heads[] = {"BODY[] {5000000}\r\n", "BODY[]<0> {5000000}\r\n",
                                  "BODY[] {5000000+}\r\n"};
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        struct out o = {0};
        puts_(&o, GREETING "* 1 FETCH (UID 5 RFC822.SIZE 5000000 ");
        puts_(&o, heads[i]);
        fill(&o, '\n', 5000000); /* newlines inside a literal end nothing */
        puts_(&o, " FLAGS (\\Seen))\r\na3 OK done\r\n");
        expect(&o, true, true, MG_FRAME_OK, NULL);
        expect(&o, true, false, MG_FRAME_REFUSED, "literal");
        free(o.b);
    }
}

static void test_small_literal_continues_response(void **state)
{
    struct out o = {0};
    puts_(&o, "* LIST () \"/\" {4}\r\na\r\nb FOO\r\n");
    char why[200];
    struct mg_frame f;
    mg_frame_init(&f);
    assert_int_equal(mg_frame_feed(&f, o.b, o.n, why, sizeof(why)), MG_FRAME_OK);
    assert_int_equal(f.kept, 1); /* one response, not two */
    assert_int_equal(f.response_bytes, 0);
    free(o.b);
}

static void test_untagged_flood(void **state)
{
    struct out o = {0}; /* the greeting is the first of them */
    repeat(&o, "* OK flood\r\n", MG_FRAME_UNTAGGED_MAX);
    expect(&o, false, false, MG_FRAME_OK, NULL);
    puts_(&o, "* OK one more\r\n");
    expect(&o, false, false, MG_FRAME_REFUSED, "untagged responses");
    free(o.b);
}

static void test_command_resets_count(void **state)
{
    struct out o = {0};
    repeat(&o, "* OK flood\r\n", MG_FRAME_UNTAGGED_MAX - 1);
    char why[200];
    struct mg_frame f;
    mg_frame_init(&f);
    assert_int_equal(mg_frame_feed(&f, o.b, o.n, why, sizeof(why)), MG_FRAME_OK);
    mg_frame_command(&f);
    assert_int_equal(mg_frame_feed(&f, o.b, o.n, why, sizeof(why)), MG_FRAME_OK);
    assert_int_equal(mg_frame_feed(&f, o.b, o.n, why, sizeof(why)), MG_FRAME_REFUSED);
    /* It stays refused. */
    assert_int_equal(mg_frame_feed(&f, (const unsigned char *)"a OK\r\n", 6, why, sizeof(why)),
                     MG_FRAME_REFUSED);
    free(o.b);
}

static void test_fetch_consumed(void **state)
{
    struct out o = {0};
    puts_(&o, GREETING);
    repeat(&o, "* 12 FETCH (UID 99 RFC822.SIZE 100)\r\n", 2 * MG_FRAME_UNTAGGED_MAX);
    expect(&o, true, false, MG_FRAME_OK, NULL);
    expect(&o, false, false, MG_FRAME_REFUSED, "untagged");
    free(o.b);
}

static void test_kept_bytes(void **state)
{
    struct out o = {0};
    puts_(&o, GREETING);
    for (int i = 0; i < 9; i++) {
        puts_(&o, "* OK ");
        fill(&o, 'y', 1000000);
        puts_(&o, "\r\n");
    }
    expect(&o, false, false, MG_FRAME_REFUSED, "bytes of untagged");
    free(o.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordinary_session),
        cmocka_unit_test(test_bye_greeting),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_literal_outside_body),
        cmocka_unit_test(test_body_literals_stream),
        cmocka_unit_test(test_small_literal_continues_response),
        cmocka_unit_test(test_untagged_flood),
        cmocka_unit_test(test_command_resets_count),
        cmocka_unit_test(test_fetch_consumed),
        cmocka_unit_test(test_kept_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
