/* Unit tests: a listing's FETCH responses as Gmail and others send them
 * (fetchresp.h), and their labels.jsonl lines (gmlist.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/fetchresp.h"
#include "mailgrab/gmlist.h"

static enum mg_fetchresp_result parse(const char *s, struct mg_fetchresp *r, char *buf, size_t cap)
{
    return mg_fetchresp_parse(s, strlen(s), r, buf, cap);
}

static void test_gmail_listing_line(void **state)
{
    char buf[256];
    struct mg_fetchresp r;
    /* As Google documents it: system labels unquoted, others quoted. */
    const char *line = "* 12 FETCH (UID 5 RFC822.SIZE 1234 FLAGS (\\Seen \\Flagged $Junk) "
                       "INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" X-GM-MSGID "
                       "1278455344230334865 X-GM-THRID 1266894439832287888 X-GM-LABELS "
                       "(\\Inbox \\Sent Important \"Muy Importante\" \"a \\\"q\\\" b\"))";
    assert_int_equal(parse(line, &r, buf, sizeof(buf)), MG_FETCHRESP_OK);
    assert_int_equal(r.seq, 12);
    assert_true(r.has_uid && r.has_size && r.has_msgid && r.has_thrid && r.has_labels);
    assert_int_equal(r.uid, 5);
    assert_int_equal(r.size, 1234);
    assert_true(r.msgid == 1278455344230334865ull);
    assert_true(r.thrid == 1266894439832287888ull);
    assert_string_equal(r.flags, "FS");
    assert_int_equal(r.internaldate, 837596665); /* 1996-07-17T09:44:25Z */
    assert_int_equal(r.nlabels, 5);
    const char *want[] = {"\\Inbox", "\\Sent", "Important", "Muy Importante", "a \"q\" b"};
    const char *l = r.labels;
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(l, want[i]);
        l += strlen(l) + 1;
    }
}

static void test_literals_and_other_items(void **state)
{
    char buf[64];
    struct mg_fetchresp r;
    /* A label sent as a literal; MODSEQ; an item we do not use; no labels. */
    const char *line = "* 1 FETCH (X-GM-LABELS ({5}\r\nhello ()) MODSEQ (12345) "
                       "ENVELOPE (NIL \"x\" ((NIL NIL \"a\" \"b\"))) UID 9 RFC822.SIZE 0)";
    assert_int_equal(parse(line, &r, buf, sizeof(buf)), MG_FETCHRESP_MALFORMED); /* "()" */
    line = "* 1 FETCH (X-GM-LABELS ({5}\r\nhello \"\") MODSEQ (12345) "
           "ENVELOPE (NIL \"x\" ((NIL NIL \"a\" \"b\"))) UID 9 RFC822.SIZE 0)";
    assert_int_equal(parse(line, &r, buf, sizeof(buf)), MG_FETCHRESP_OK);
    assert_int_equal(r.nlabels, 2);
    assert_string_equal(r.labels, "hello");
    assert_true(r.has_modseq && r.modseq == 12345);
    assert_int_equal(r.uid, 9);
    assert_false(r.has_msgid);
    assert_int_equal(parse("* 3 FETCH (X-GM-LABELS ())", &r, buf, sizeof(buf)), MG_FETCHRESP_OK);
    assert_true(r.has_labels);
    assert_int_equal(r.nlabels, 0);
}

static void test_not_fetch_or_malformed(void **state)
{
    char buf[16];
    struct mg_fetchresp r;
    assert_int_equal(parse("* 4 EXISTS", &r, buf, sizeof(buf)), MG_FETCHRESP_OTHER);
    assert_int_equal(parse("* OK [HIGHESTMODSEQ 9] x", &r, buf, sizeof(buf)), MG_FETCHRESP_OTHER);
    const char *bad[] = {
        "* 1 FETCH (UID 4294967296)",                  /* beyond 32 bits */
        "* 1 FETCH (X-GM-MSGID 18446744073709551616)", /* beyond 64 bits */
        "* 1 FETCH (UID 1",                            /* unclosed */
        "* 1 FETCH (UID 1) trailing",
        "* 1 FETCH (X-GM-LABELS ({99}\r\nshort))",            /* literal past the end */
        "* 1 FETCH (X-GM-LABELS (\"12345678901234567890\"))", /* beyond the buffer */
        "* 1 FETCH (FLAGS (\\Seen)X)",
        "* 1 FETCH (X ((((((((((((1)))))))))))))", /* nested too deep */
        "* 1 FETCH (INTERNALDATE \"bad\" UID)",
        "+ go on",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], &r, buf, sizeof(buf)), MG_FETCHRESP_MALFORMED);
}

static void test_imap_datetime(void **state)
{
    const char *s = " 2-Jan-2024 03:04:05 +0100";
    assert_int_equal(mg_imap_datetime(s, strlen(s)), 1704161045);
    s = "02-Jan-2024 03:04:05 +0100";
    assert_int_equal(mg_imap_datetime(s, strlen(s)), 1704161045);
    s = "02-Foo-2024 03:04:05 +0100";
    assert_int_equal(mg_imap_datetime(s, strlen(s)), -1);
    s = "02-Jan-2024 25:04:05 +0100";
    assert_int_equal(mg_imap_datetime(s, strlen(s)), -1);
}

static void test_labels_jsonl_line(void **state)
{
    char labels[] = "\\Inbox\0Reisen/K\xc3\xb6ln\0a \"q\"";
    struct mg_gmmsg m = {.uid = 3,
                         .size = 77,
                         .msgid = 18446744073709551615ull,
                         .thrid = 1,
                         .internaldate = 1704161045,
                         .flags = "FS",
                         .labels = labels,
                         .nlabels = 3};
    char *line = mg_gmmsg_json(&m, "[Gmail]%2FAll Mail/3.eml");
    assert_non_null(line);
    assert_string_equal(line, "{\"msgid\":\"18446744073709551615\",\"thrid\":\"1\",\"labels\":"
                              "[\"\\\\Inbox\",\"Reisen/K\xc3\xb6ln\",\"a \\\"q\\\"\"],"
                              "\"path\":\"[Gmail]%2FAll Mail/3.eml\",\"size\":77,"
                              "\"internaldate\":\"2024-01-02T02:04:05Z\","
                              "\"flags\":[\"\\\\Flagged\",\"\\\\Seen\"]}");
    free(line);
    char out[64];
    assert_int_equal(mg_gmlabel_decode("Reisen/K&APY-ln", out, sizeof(out)), 0);
    assert_string_equal(out, "Reisen/K\xc3\xb6ln");
    assert_int_equal(mg_gmlabel_decode("\\Important", out, sizeof(out)), 0);
    assert_string_equal(out, "\\Important");
    assert_int_equal(mg_gmlabel_decode("bad&-", out, sizeof(out)), 0); /* "&-" is "&" */
    assert_string_equal(out, "bad&");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gmail_listing_line),
        cmocka_unit_test(test_literals_and_other_items),
        cmocka_unit_test(test_not_fetch_or_malformed),
        cmocka_unit_test(test_imap_datetime),
        cmocka_unit_test(test_labels_jsonl_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
