/* test_msgparse.c - headers, addresses, encoded words and MIME shapes from real mail */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/msgparse.h"
#include "mailgrab/textdec.h"

static void expect_str(const char *got, size_t gotlen, const char *want, const char *what, size_t i)
{
    if (want == NULL) {
        if (got != NULL)
            fail_msg("case %zu %s: got \"%.*s\", want none", i, what, (int)gotlen, got);
        return;
    }
    if (got == NULL || gotlen != strlen(want) || memcmp(got, want, gotlen) != 0)
        fail_msg("case %zu %s: got \"%.*s\", want \"%s\"", i, what, got ? (int)gotlen : 6,
                 got ? got : "(null)", want);
}

struct hdr_case {
    const char *in;
    const char *out;
};

static const struct hdr_case header_cases[] = {
    {"plain subject", "plain subject"},
    {"=?UTF-8?B?SGVsbG8gV8O2cmxk?=", "Hello Wörld"},
    {"=?iso-8859-1?Q?Caf=E9_cr=E8me?=", "Café crème"},
    {"=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab"},     /* adjacent words join */
    {"=?UTF-8?Q?a?=\r\n =?UTF-8?Q?b?=", "ab"}, /* even across a fold */
    {"x =?UTF-8?Q?a?= y", "x a y"},
    {"=?KOI8-R?B?8NLJ18XU?=", "Привет"},
    {"=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=", "こんにちは"},
    {"=?windows-1251?B?z/Do4uXy?=", "Привет"},
    {"=?UTF-8?X?bad?=", "=?UTF-8?X?bad?="}, /* unknown encoding kept */
    {"=?UTF-8?Q?unterminated", "=?UTF-8?Q?unterminated"},
    {"=?no-such-charset?Q?abc?=", "abc"},
    {"=?UTF-8*en?Q?lang?=", "lang"}, /* RFC 2231 language */
    {"folded\r\n\tsubject", "folded subject"},
    {"Caf\xc3\xa9", "Café"},    /* raw UTF-8 */
    {"Caf\xe9 \x80", "Café €"}, /* raw windows-1252 */
    {"=?UTF-8?B?4oKs?=", "€"},
    {"=?UTF-8?Q?=C3?= =?UTF-8?Q?=A9t=C3=A9?=", "été"}, /* a character split across words */
    {"=?ISO-2022-JP?B?GyRCJDMkcxsoQg==?= =?ISO-2022-JP?B?GyRCJEskQSRPGyhC?=", "こんにちは"},
    {"=?UTF-8?Q?a?= =?ISO-8859-1?Q?=E9?=", "aé"}, /* charsets change mid-run */
    {"=?UTF-8?Q?a?= b =?UTF-8?Q?c?=", "a b c"},
    {"a=?UTF-8?Q?b?=", "a=?UTF-8?Q?b?="}, /* not at a token start */
};

static void test_header_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(header_cases) / sizeof(header_cases[0]); i++) {
        struct mg_buf b;
        mg_buf_init(&b, 4096);
        assert_int_equal(mg_header_decode(header_cases[i].in, strlen(header_cases[i].in), &b), 0);
        expect_str(b.data ? b.data : "", b.len, header_cases[i].out, "decode", i);
        mg_buf_finish(&b);
    }
}

struct addr_case {
    const char *in;
    const char *addr;
    const char *name;
};

static const struct addr_case addr_cases[] = {
    {"John Doe <John.Doe@Example.COM>", "john.doe@example.com", "John Doe"},
    {"\"Doe, John\" <jd@example.com>", "jd@example.com", "Doe, John"},
    {"jd@example.com", "jd@example.com", NULL},
    {"jd@example.com (John Doe)", "jd@example.com", "John Doe"},
    {"<jd@example.com>", "jd@example.com", NULL},
    {"=?UTF-8?Q?J=C3=B6rg?= <jorg@example.de>", "jorg@example.de", "Jörg"},
    {"\"=?UTF-8?Q?J=C3=B6rg?=\" <jorg@example.de>", "jorg@example.de", "Jörg"},
    {"Friends: a@example.com, b@example.com;", "a@example.com", NULL},
    {"Friends: Ann <a@example.com>;", "a@example.com", "Ann"},
    {"undisclosed-recipients:;", NULL, NULL},
    {"<@relay.example:jd@example.com>", "jd@example.com", NULL},
    {"John\r\n Doe\r\n <jd@example.com>", "jd@example.com", "John Doe"},
    {"\"john doe\"@example.com", "\"john doe\"@example.com", NULL},
    {"MAILER-DAEMON", NULL, NULL},
    {"", NULL, NULL},
    {"Bob <bob@example.com", "bob@example.com", "Bob"}, /* missing '>' */
    {"<jd (comment) @example.com>", "jd@example.com", NULL},
    {", , x@example.org", "x@example.org", NULL},
    {"Ren\xe9 <rene@example.fr>", "rene@example.fr", "René"},
    {"<", NULL, NULL}, /* found by the fuzzer: used to loop forever */
    {"<>, x@example.org", "x@example.org", NULL},
};

static void test_address(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
        char *addr, *name;
        size_t al, nl;
        const char *in = addr_cases[i].in;
        assert_int_equal(mg_address_parse(in, strlen(in), &addr, &al, &name, &nl), 0);
        expect_str(addr, al, addr_cases[i].addr, "addr", i);
        expect_str(name, nl, addr_cases[i].name, "name", i);
        free(addr);
        free(name);
    }
}

struct msg_case {
    const char *name;
    const char *msg;
    size_t len; /* 0 = strlen */
    const char *addr;
    const char *dname;
    const char *subject;
    int has_date;
    const char *text_has; /* substring expected in text, or NULL */
    const char *text_hasnt;
    unsigned flags_set;
};

static const char nul_msg[] = "From: a\0b <x@example.com>\r\nSubject: nu\0ll\r\n\r\nbody\0text\r\n";

static const struct msg_case msg_cases[] = {
    {"simple",
     "From: A <a@example.com>\r\nSubject: Hi\r\nDate: Mon, 4 Jan 2021 10:00:00 +0000\r\n"
     "\r\nHello world\r\n",
     0, "a@example.com", "A", "Hi", 1, "Hello world", NULL, 0},
    {"lf only", "From: a@example.com\nSubject: lf\n\nbody here\n", 0, "a@example.com", NULL, "lf",
     0, "body here", NULL, 0},
    {"missing from", "Subject: none\r\n\r\nx\r\n", 0, NULL, NULL, "none", 0, "x", NULL, 0},
    {"mbox line", "From someone Mon Jan 4 2021\nFrom: b@example.com\n\nhi\n", 0, "b@example.com",
     NULL, NULL, 0, "hi", NULL, 0},
    {"folded subject", "From: a@example.com\r\nSubject: one\r\n two\r\n\tthree\r\n\r\n", 0,
     "a@example.com", NULL, "one two three", 0, NULL, NULL, 0},
    {"base64 body",
     "From: a@example.com\r\nContent-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgQmVybGlu\r\n",
     0, "a@example.com", NULL, NULL, 0, "Grüße aus Berlin", NULL, 0},
    {"qp latin1",
     "From: a@example.com\r\nContent-Type: text/plain; charset=\"ISO-8859-1\"\r\n"
     "Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 soft=\r\nbreak\r\n",
     0, "a@example.com", NULL, NULL, 0, "Café softbreak", NULL, 0},
    {"koi8 body",
     "From: a@example.com\r\nContent-Type: text/plain; "
     "charset=koi8-r\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4\r\n",
     0, "a@example.com", NULL, NULL, 0, "Привет", NULL, 0},
    {"iso-2022-jp body",
     "From: a@example.com\r\nContent-Type: text/plain; charset=\"ISO-2022-JP\"\r\n"
     "Content-Transfer-Encoding: 7bit\r\n\r\n\x1b$B$3$s$K$A$O\x1b(B world\r\n",
     0, "a@example.com", NULL, NULL, 0, "こんにちは world", NULL, 0},
    {"html",
     "From: a@example.com\r\nContent-Type: text/html\r\n\r\n<html><head><style>p{color:red}</style>"
     "</head><body><p class=\"x>y\">Fish &amp; chips&nbsp;&#233;t&#xE9;</p><!-- hidden --></body>",
     0, "a@example.com", NULL, NULL, 0, "Fish & chips\xc2\xa0\xc3\xa9t\xc3\xa9", "color", 0},
    {"nested multipart",
     "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
     "preamble\r\n--outer\r\nContent-Type: multipart/alternative; boundary=\"in ner\"\r\n\r\n"
     "--in ner\r\nContent-Type: text/plain\r\n\r\nplainpart\r\n--in ner\r\n"
     "Content-Type: text/html\r\n\r\n<b>htmlpart</b>\r\n--in ner--\r\n"
     "--outer\r\nContent-Type: application/octet-stream\r\n\r\nbinaryjunk\r\n"
     "--outer\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nattached\r\n"
     "--outer--\r\nepilogue\r\n",
     0, "a@example.com", NULL, NULL, 0, "plainpart\n htmlpart", "binaryjunk", 0},
    {"boundary quote crash",
     "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"\\\"\"\r\n\r\n"
     "--\"\r\nContent-Type: text/plain\r\n\r\nx\r\n--\"--\r\n",
     0, "a@example.com", NULL, NULL, 0, NULL, NULL, MG_MSG_BAD_BOUNDARY},
    {"empty boundary",
     "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n", 0,
     "a@example.com", NULL, NULL, 0, NULL, NULL, MG_MSG_BAD_BOUNDARY},
    {"rfc822 inside",
     "From: a@example.com\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.com\r\n"
     "Subject: inner\r\n\r\ninnerbody\r\n",
     0, "a@example.com", NULL, NULL, 0, "innerbody", NULL, 0},
    {"garbage", "\x01\x02\x03 not a header\r\n\r\nbody", 0, NULL, NULL, NULL, 0, NULL, NULL,
     MG_MSG_HEADERS_BAD},
    {"nul bytes", nul_msg, sizeof(nul_msg) - 1, "x@example.com", "a b", "nu ll", 0, "body text",
     NULL, 0},
    {"bad date", "From: a@example.com\r\nDate: Mon, 4 Jan 2021 25:61:00 +0000\r\n\r\n", 0,
     "a@example.com", NULL, NULL, 0, NULL, NULL, 0},
    {"subject encoded", "From: a@example.com\r\nSubject: =?UTF-8?B?zpPOtc65zrEgz4POsc+C?=\r\n\r\n",
     0, "a@example.com", NULL, "Γεια σας", 0, NULL, NULL, 0},
};

static void test_messages(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(msg_cases) / sizeof(msg_cases[0]); i++) {
        const struct msg_case *c = &msg_cases[i];
        struct mg_msginfo m;
        size_t len = c->len ? c->len : strlen(c->msg);
        assert_int_equal(mg_msg_parse(c->msg, len, &m), 0);
        expect_str(m.from_addr, m.from_addr_len, c->addr, c->name, i);
        expect_str(m.from_name, m.from_name_len, c->dname, c->name, i);
        expect_str(m.subject, m.subject_len, c->subject, c->name, i);
        if ((int)m.has_date != c->has_date && c->has_date)
            fail_msg("case %s: date", c->name);
        if (c->text_has && (m.text == NULL || strstr(m.text, c->text_has) == NULL))
            fail_msg("case %s: text \"%s\" lacks \"%s\"", c->name, m.text ? m.text : "",
                     c->text_has);
        if (c->text_hasnt && m.text && strstr(m.text, c->text_hasnt) != NULL)
            fail_msg("case %s: text \"%s\" has \"%s\"", c->name, m.text, c->text_hasnt);
        if ((m.flags & c->flags_set) != c->flags_set)
            fail_msg("case %s: flags %x want %x", c->name, m.flags, c->flags_set);
        mg_msginfo_finish(&m);
    }
}

static void test_limits(void **state)
{
    (void)state;
    /* 40 levels of nested multipart: the walk must stop at the depth limit */
    char *msg = malloc(64 * 1024);
    assert_non_null(msg);
    size_t n = 0;
    n += (size_t)snprintf(msg + n, 64 * 1024 - n, "From: a@example.com\r\n");
    for (int d = 0; d < 40; d++)
        n += (size_t)snprintf(msg + n, 64 * 1024 - n,
                              "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", d, d);
    n += (size_t)snprintf(msg + n, 64 * 1024 - n, "Content-Type: text/plain\r\n\r\ndeep\r\n");
    struct mg_msginfo m;
    assert_int_equal(mg_msg_parse(msg, n, &m), 0);
    assert_true(m.flags & MG_MSG_DEPTH_LIMIT);
    mg_msginfo_finish(&m);

    /* 1000 parts: stops at the part limit */
    n = (size_t)snprintf(msg, 64 * 1024,
                         "From: a@example.com\r\n"
                         "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for (int p = 0; p < 1000; p++)
        n += (size_t)snprintf(msg + n, 64 * 1024 - n, "--b\r\n\r\nx\r\n");
    assert_int_equal(mg_msg_parse(msg, n, &m), 0);
    assert_true(m.flags & MG_MSG_PART_LIMIT);
    mg_msginfo_finish(&m);
    free(msg);
}

static void test_boundary_valid(void **state)
{
    (void)state;
    assert_true(mg_boundary_valid("----=_Part_0_123.456", 20));
    assert_true(mg_boundary_valid("a b", 3));
    assert_false(mg_boundary_valid("\"", 1));
    assert_false(mg_boundary_valid("\\", 1));
    assert_false(mg_boundary_valid("", 0));
    assert_false(mg_boundary_valid("ab ", 3));
    assert_false(mg_boundary_valid("a\nb", 3));
    char longb[80];
    memset(longb, 'x', sizeof(longb));
    assert_false(mg_boundary_valid(longb, 71));
    assert_true(mg_boundary_valid(longb, 70));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_decode),  cmocka_unit_test(test_address),
        cmocka_unit_test(test_messages),       cmocka_unit_test(test_limits),
        cmocka_unit_test(test_boundary_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
