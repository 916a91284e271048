/* test_msgrow.c - the per-message table, address lists, the new aggregates
 * and their wire form, JSON strings */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/analyze.h"
#include "mailgrab/csv.h"
#include "mailgrab/labels.h"
#include "mailgrab/msgparse.h"
#include "mailgrab/msgrow.h"
#include "mailgrab/stats.h"
#include "mailgrab/statsjson.h"

struct list_case {
    const char *val;
    long count;
    const char *addrs; /* joined with ' ' */
};

static const struct list_case list_cases[] = {
    {"a@x.example", 1, "a@x.example"},
    {"A <A@X.example>, b@y.example", 2, "a@x.example b@y.example"},
    {"\"Doe, John\" <j@x.example>, (c, d) k@y.example", 2, "j@x.example k@y.example"},
    {"Team: a@x.example, b@x.example;, c@x.example", 3, "a@x.example b@x.example c@x.example"},
    {"undisclosed-recipients:;", 0, ""},
    {"", 0, ""},
    {"not an address, <>, ,", 0, ""},
    {"<a@x.example,>, b@y.example", 2, "a@x.example, b@y.example"},
};

static int collect(void *ctx, const char *addr, size_t len)
{
    char *out = ctx;
    if (*out)
        strcat(out, " ");
    strncat(out, addr, len);
    return 0;
}

static void test_address_list(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
        char got[512] = "";
        long n = mg_address_list(list_cases[i].val, strlen(list_cases[i].val), collect, got);
        if (n != list_cases[i].count || strcmp(got, list_cases[i].addrs) != 0)
            fail_msg("case %zu: %ld [%s], want %ld [%s]", i, n, got, list_cases[i].count,
                     list_cases[i].addrs);
    }
}

static const char msg[] =
    "From: Me <ME@x.example>\r\n"
    "To: a@y.example, B <b@y.example>\r\n"
    "Cc: a@y.example\r\n"
    "Subject: =?utf-8?q?caf=C3=A9?= report\r\n"
    "Date: Mon, 2 Mar 2020 23:30:00 -0100\r\n"
    "Message-ID: <m1@x.example>\r\n"
    "In-Reply-To: <m0@x.example>\r\n"
    "List-Id: Dev <dev.x.example>\r\n"
    "Content-Type: multipart/mixed; boundary=b\r\n"
    "\r\n"
    "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    "--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "AAAA\r\nAAA=\r\n"
    "--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\nab=3Dc=\r\nd\r\n"
    "--b--\r\n";

static void test_row_and_aggregates(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    const char *me[] = {"me@x.example"};
    struct mg_analyze_opts o = {NULL, me, 1};
    struct mg_analyze_msg m = {"Work%2Fx/cur/1.eml", 900, 0, false};
    struct mg_stats s;
    mg_stats_init(&s);
    struct mg_buf row;
    mg_buf_init(&row, MG_MSGROW_MAX);
    assert_int_equal(mg_analyze_full(msg, sizeof(msg) - 1, &m, &o, &s, &row), 0);
    struct mg_msgrow r;
    assert_int_equal(mg_msgrow_decode(row.data, row.len, &r), 0);
    assert_int_equal(r.to_count, 2);
    assert_int_equal(r.cc_count, 1);
    assert_int_equal(r.attachments, 2);
    assert_int_equal(r.attachment_bytes, 5 + 5); /* "AAAAAAA=" -> 5, "ab=c" "d" -> 5 */
    assert_true(r.sent);
    assert_false(r.date_fallback);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    struct mg_buf line;
    mg_buf_init(&line, 4 * MG_MSGROW_MAX);
    assert_int_equal(mg_msgrow_csv_write(f, &r, &line), 0);
    fclose(f);
    assert_string_equal(out, "Work%2Fx/cur/1.eml,Work/x,2020-03-03T00:30:00Z,me@x.example,Me,"
                             "x.example,2,1,900,2,10,café report,<m1@x.example>,<m0@x.example>,"
                             "dev.x.example,,,1,0,0\r\n");
    free(out);
    /* aggregates: recipients once per message, month and hour x weekday in TZ */
    struct mg_strmap_entry *e = mg_strmap_get(&s.recipients, "a@y.example", 11, false);
    assert_non_null(e);
    assert_int_equal(e->count, 1);
    assert_int_equal(s.recipients.len, 2);
    assert_non_null(mg_strmap_get(&s.months, "2020-03", 7, false));
    assert_int_equal(s.hour_wday[1][0], 1); /* Tuesday 00h UTC */
    e = mg_strmap_get(&s.att_types, "application/pdf", 15, false);
    assert_non_null(e);
    assert_int_equal(e->bytes, 5);
    assert_non_null(mg_strmap_get(&s.lists, "dev.x.example", 13, false));
    assert_int_equal(s.nlargest, 1);
    assert_string_equal(s.largest[0].path, "Work%2Fx/cur/1.eml");
    /* not from --me: no recipients */
    struct mg_analyze_opts o2 = {NULL, NULL, 0};
    mg_buf_reset(&row);
    assert_int_equal(mg_analyze_full(msg, sizeof(msg) - 1, &m, &o2, &s, &row), 0);
    assert_int_equal(s.sent, 1);
    e = mg_strmap_get(&s.recipients, "a@y.example", 11, false);
    assert_int_equal(e->count, 1);
    /* malformed rows are refused */
    assert_int_equal(mg_msgrow_decode(row.data, row.len - 1, &r), -1);
    assert_int_equal(mg_msgrow_decode("\x02", 1, &r), -1);
    mg_buf_finish(&row);
    mg_buf_finish(&line);
    mg_stats_finish(&s);
}

struct path_case {
    const char *path;
    const char *mailbox;
    const char *account_rel;
};

static const struct path_case path_cases[] = {
    {"/o/acct/INBOX/12.eml", "INBOX", "INBOX/12.eml"},
    {"o/INBOX/cur/1.x:2,S", "INBOX", "INBOX/cur/1.x:2,S"},
    {"o/Work%2Fx%uidvalidity=5/new/1", "Work/x", "Work%2Fx%uidvalidity=5/new/1"},
    {"INBOX/3.eml", "INBOX", "INBOX/3.eml"},
    {"cur/1", "cur", "cur/1"},
    {"1.eml", "", "1.eml"},
    {"o/bad%zz%4/1.eml", "bad%zz%4", "bad%zz%4/1.eml"},
};

/* Identifier headers are handled by length: a NUL inside stays inside. */
static void test_nul_in_ids(void **state)
{
    (void)state;
    static const char m[] = "From: a@x.example\r\nList-Id: L <a\0b>\r\n"
                            "Message-ID: <\0\0x>\r\n\r\nbody\r\n";
    struct mg_msginfo info;
    assert_int_equal(mg_msg_parse(m, sizeof(m) - 1, &info), 0);
    assert_int_equal(info.list_id_len, 3);
    assert_memory_equal(info.list_id, "a\0b", 3);
    assert_int_equal(info.message_id_len, 5);
    assert_memory_equal(info.message_id, "<\0\0x>", 5);
    mg_msginfo_finish(&info);
}

static void test_paths(void **state)
{
    (void)state;
    struct mg_buf b;
    mg_buf_init(&b, 4096);
    for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const char *p = path_cases[i].path;
        mg_msgrow_mailbox(p, strlen(p), &b);
        if (b.len != strlen(path_cases[i].mailbox) ||
            memcmp(b.data ? b.data : "", path_cases[i].mailbox, b.len) != 0)
            fail_msg("%s: mailbox %.*s", p, (int)b.len, b.data ? b.data : "");
        assert_string_equal(p + mg_msgrow_account_offset(p, strlen(p)), path_cases[i].account_rel);
    }
    mg_buf_finish(&b);
}

static int emit_decode(void *ctx, const char *data, size_t len)
{
    return mg_stats_decode(ctx, data, len);
}

static void test_largest_and_wire(void **state)
{
    (void)state;
    struct mg_stats s, t;
    mg_stats_init(&s);
    mg_stats_init(&t);
    char p[32];
    for (int i = 0; i < MG_STATS_LARGEST + 50; i++) {
        snprintf(p, sizeof(p), "m/%03d.eml", i);
        assert_int_equal(mg_stats_add_largest(&s, p, strlen(p), (uint64_t)(i % 70) * 10), 0);
    }
    assert_int_equal(s.nlargest, MG_STATS_LARGEST);
    for (size_t i = 1; i < s.nlargest; i++)
        assert_true(s.largest[i - 1].size > s.largest[i].size ||
                    (s.largest[i - 1].size == s.largest[i].size &&
                     strcmp(s.largest[i - 1].path, s.largest[i].path) < 0));
    assert_int_equal(s.largest[0].size, 690);
    assert_string_equal(s.largest[0].path, "m/069.eml");
    s.hour_wday[6][23] = 4;
    s.attachments = 3;
    s.sent = 2;
    assert_int_equal(mg_stats_add_key(&s.att_types, "image/png", 9, 2, 1000), 0);
    assert_int_equal(mg_stats_add_key(&s.months, "2021-01", 7, 5, 0), 0);
    assert_int_equal(mg_stats_encode(&s, 64, emit_decode, &t), 0);
    assert_int_equal(t.nlargest, s.nlargest);
    for (size_t i = 0; i < s.nlargest; i++)
        assert_string_equal(t.largest[i].path, s.largest[i].path);
    assert_int_equal(t.hour_wday[6][23], 4);
    assert_int_equal(t.attachments, 3);
    assert_int_equal(t.sent, 2);
    struct mg_strmap_entry *e = mg_strmap_get(&t.att_types, "image/png", 9, false);
    assert_non_null(e);
    assert_int_equal(e->count, 2);
    assert_int_equal(e->bytes, 1000);
    /* an hour x weekday entry out of range is malformed */
    static const char bad[] = "\x0c\x07\x00\x01\x00\x00\x00\x00\x00\x00\x00";
    assert_int_equal(mg_stats_decode(&t, bad, sizeof(bad) - 1), -1);
    mg_stats_finish(&s);
    mg_stats_finish(&t);
}

static void test_json_string(void **state)
{
    (void)state;
    struct mg_buf b;
    mg_buf_init(&b, 256);
    static const char in[] = "a\"b\\c\n\x01 caf\xc3\xa9 \xff end";
    assert_int_equal(mg_json_string(&b, in, sizeof(in) - 1), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\u000a\\u0001 caf\xc3\xa9 \xef\xbf\xbd end\"");
    mg_buf_finish(&b);
}

static void test_labels(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "{\"msgid\":\"1\",\"thrid\":\"77\",\"labels\":[\"\\\\Inbox\",\"Work/x\"],"
        "\"path\":\"INBOX/1.eml\",\"size\":5}",
        "{\"thrid\":\"78\",\"labels\":[],\"path\":\"b/2.eml\"}",
        "{\"thrid\":\"79\",\"labels\":[\"new\"],\"path\":\"b/2.eml\"}", /* later wins */
        "{\"thrid\":5,\"path\":\"c/3.eml\"}",                           /* thrid not a string */
        "{\"labels\":[1],\"path\":\"c/3.eml\"}",                        /* a label not a string */
        "{\"labels\":[\"x\"]}",                                         /* no path */
        "{\"path\":\"c/3.eml\"} trailing",                              /* not one object */
        "[\"path\"]",
        "{\"path\":\"c/3",
    };
    struct mg_labels l;
    mg_labels_init(&l);
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
        assert_int_equal(mg_labels_add_line(&l, lines[i], strlen(lines[i])), 0);
    mg_labels_index(&l);
    assert_int_equal(l.skipped, 6);
    const struct mg_label_entry *e = mg_labels_find(&l, "INBOX/1.eml", 11);
    assert_non_null(e);
    assert_string_equal(e->thrid, "77");
    assert_string_equal(e->labels, "[\"\\\\Inbox\",\"Work/x\"]");
    e = mg_labels_find(&l, "b/2.eml", 7);
    assert_non_null(e);
    assert_string_equal(e->labels, "[\"new\"]");
    assert_string_equal(e->thrid, "79");
    assert_null(mg_labels_find(&l, "c/3.eml", 7));
    assert_null(mg_labels_find(&l, "INBOX/1.em", 10));
    assert_null(mg_labels_find(&l, "INBOX/1.eml2", 12));
    mg_labels_finish(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_list),     cmocka_unit_test(test_row_and_aggregates),
        cmocka_unit_test(test_nul_in_ids),       cmocka_unit_test(test_paths),
        cmocka_unit_test(test_largest_and_wire), cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
