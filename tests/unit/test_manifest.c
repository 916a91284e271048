/* Unit tests: manifest lines, the streaming reader (torn and damaged lines),
 * and SHA-256 as bytes arrive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/manifest.h"

#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void hex(const unsigned char *v, char out[2 * MG_SHA256_LEN + 1])
{
    for (size_t i = 0; i < MG_SHA256_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", v[i]);
}

static void test_lines(void **state)
{
    static const struct {
        const char *line;
        int ok;
    } cases[] = {
        {"17 3 " SHA_ABC " s 17.eml", 1},
        {"4294967295 0 " SHA_EMPTY " r cur/1.U4294967295V9.mailgrab,U=4294967295:2,FS", 1},
        {"1 9999999999999999999 " SHA_ABC " s x", 1},
        {"0 3 " SHA_ABC " s 0.eml", 0},                 /* UID 0 */
        {"017 3 " SHA_ABC " s 17.eml", 0},              /* leading zero */
        {"4294967296 3 " SHA_ABC " s a", 0},            /* past 32 bits */
        {"17 03 " SHA_ABC " s 17.eml", 0},              /* leading zero in size */
        {"17 10000000000000000000 " SHA_ABC " s a", 0}, /* 20 digits */
        {"17 -3 " SHA_ABC " s 17.eml", 0},
        {"17 3 " SHA_ABC " x 17.eml", 0}, /* origin */
        {"17 3 " SHA_ABC " ss 17.eml", 0},
        {"17 3 " SHA_ABC " s ", 0}, /* no name */
        {"17 3 " SHA_ABC " s", 0},
        {"17 3 " SHA_ABC " s a b", 0},     /* space in the name */
        {"17 3 " SHA_ABC " s a\tb", 0},    /* control byte */
        {"17 3 " SHA_ABC " s a\x80", 0},   /* not ASCII */
        {"17  3 " SHA_ABC " s 17.eml", 0}, /* two spaces */
        {"17 3 BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD s a", 0},
        {"17 3 ba7816bf s 17.eml", 0},      /* short sum */
        {"17 3 " SHA_ABC "00 s 17.eml", 0}, /* long sum */
        {"", 0},
        {"17", 0},
        {" 17 3 " SHA_ABC " s 17.eml", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mg_manifest_entry e;
        int r = mg_manifest_parse_line(cases[i].line, strlen(cases[i].line), &e);
        if ((r == 0) != cases[i].ok)
            fail_msg("case %zu: '%s' gave %d", i, cases[i].line, r);
    }
    /* A name of MG_MANIFEST_NAME_MAX bytes, not one more. */
    char line[MG_MANIFEST_LINE_MAX];
    int n = snprintf(line, sizeof(line), "5 3 " SHA_ABC " s %0*d", MG_MANIFEST_NAME_MAX, 7);
    struct mg_manifest_entry e;
    assert_int_equal(mg_manifest_parse_line(line, (size_t)n, &e), 0);
    assert_int_equal(e.name_len, MG_MANIFEST_NAME_MAX);
    n = snprintf(line, sizeof(line), "5 3 " SHA_ABC " s %0*d", MG_MANIFEST_NAME_MAX + 1, 7);
    assert_int_equal(mg_manifest_parse_line(line, (size_t)n, &e), -1);
}

static void test_format_round_trip(void **state)
{
    const char *text = "17 3 " SHA_ABC " s cur/9.U17V3.mailgrab,U=17:2,S";
    struct mg_manifest_entry e;
    assert_int_equal(mg_manifest_parse_line(text, strlen(text), &e), 0);
    assert_int_equal(e.uid, 17);
    assert_int_equal(e.size, 3);
    assert_int_equal(e.origin, 's');
    char buf[MG_MANIFEST_LINE_MAX];
    int n = mg_manifest_format_line(&e, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(text) + 1);
    assert_memory_equal(buf, text, strlen(text));
    assert_int_equal(buf[n - 1], '\n');
    /* Too small a buffer, or a name a line cannot carry: refused. */
    assert_int_equal(mg_manifest_format_line(&e, buf, 20), -1);
    e.name = "a b";
    e.name_len = 3;
    assert_int_equal(mg_manifest_format_line(&e, buf, sizeof(buf)), -1);
}

struct seen {
    uint32_t uids[16];
    size_t n;
};

static void collect(void *ctx, const struct mg_manifest_entry *e)
{
    struct seen *s = ctx;
    if (s->n < 16)
        s->uids[s->n++] = e->uid;
}

/* The same file, fed whole and one byte at a time, reads the same. */
static void read_pieces(const char *text, size_t len, size_t piece, struct seen *s,
                        struct mg_manifest_reader *r)
{
    memset(s, 0, sizeof(*s));
    mg_manifest_reader_init(r, collect, s);
    for (size_t off = 0; off < len; off += piece)
        mg_manifest_reader_feed(r, text + off, len - off < piece ? len - off : piece);
    mg_manifest_reader_end(r);
}

static void test_reader(void **state)
{
    char text[4096];
    char longline[MG_MANIFEST_LINE_MAX + 40];
    memset(longline, '7', sizeof(longline) - 1);
    longline[sizeof(longline) - 1] = '\0';
    int len = snprintf(text, sizeof(text),
                       "# mailgrab manifest\n"
                       "1 3 " SHA_ABC " s 1.eml\n"
                       "garbage\n" /* line 3: damaged */
                       "\n"        /* empty: ignored */
                       "%s\n"      /* line 5: overlong, damaged */
                       "2 0 " SHA_EMPTY " r 2.eml\n"
                       "3 3 " SHA_ABC " s 3.e", /* torn: a crash mid-append */
                       longline);
    size_t good = (size_t)(strstr(text, "3 3 ") - text);
    for (size_t piece = 1; piece <= (size_t)len; piece = piece < 8 ? piece + 1 : piece * 3) {
        struct seen s;
        struct mg_manifest_reader r;
        read_pieces(text, (size_t)len, piece, &s, &r);
        assert_int_equal(s.n, 2);
        assert_int_equal(s.uids[0], 1);
        assert_int_equal(s.uids[1], 2);
        assert_int_equal(r.entries, 2);
        assert_int_equal(r.damaged, 2);
        assert_int_equal(r.first_damaged, 3);
        assert_true(r.torn);
        assert_int_equal(r.good_len, good);
    }
    /* Complete: not torn, and every byte is good. */
    struct seen s;
    struct mg_manifest_reader r;
    read_pieces(text, good, 5, &s, &r);
    assert_false(r.torn);
    assert_int_equal(r.good_len, good);
    /* An overlong last line without its newline is torn, not damaged. */
    read_pieces(longline, strlen(longline), 100, &s, &r);
    assert_true(r.torn);
    assert_int_equal(r.damaged, 0);
    assert_int_equal(r.good_len, 0);
}

static void test_sha256_streams(void **state)
{
    struct mg_sha256 *h;
    struct mg_error e;
    assert_int_equal(mg_sha256_create(&h, &e), MG_OK);
    unsigned char sum[MG_SHA256_LEN];
    char x[2 * MG_SHA256_LEN + 1];
    mg_sha256_update(h, "a", 1);
    mg_sha256_update(h, "bc", 2);
    mg_sha256_final(h, sum);
    hex(sum, x);
    assert_string_equal(x, SHA_ABC);
    /* final starts the next sum afresh */
    mg_sha256_final(h, sum);
    hex(sum, x);
    assert_string_equal(x, SHA_EMPTY);
    mg_sha256_update(h, "zzz", 3);
    mg_sha256_reset(h);
    mg_sha256_update(h, "abc", 3);
    mg_sha256_final(h, sum);
    hex(sum, x);
    assert_string_equal(x, SHA_ABC);
    mg_sha256_destroy(h);
    mg_sha256_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_sha256_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
