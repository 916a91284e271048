/* test_csv.c - CSV quoting, formula neutralisation, row order, stats round trips */
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
#include "mailgrab/stats.h"

struct cell_case {
    const char *in;
    const char *out;
};

static const struct cell_case cell_cases[] = {
    {"plain", "plain"},
    {"a,b", "\"a,b\""},
    {"say \"hi\"", "\"say \"\"hi\"\"\""},
    {"line\nbreak", "\"line\nbreak\""},
    {"cr\rx", "\"cr\rx\""},
    {"=SUM(A1)", "'=SUM(A1)"},
    {"+1", "'+1"},
    {"-2", "'-2"},
    {"@cmd", "'@cmd"},
    {"=a,b", "\"'=a,b\""},
    {"", ""},
    {"mid=dle", "mid=dle"},
};

static void test_cells(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cell_cases) / sizeof(cell_cases[0]); i++) {
        struct mg_buf b;
        mg_buf_init(&b, 1024);
        assert_int_equal(mg_csv_cell(&b, cell_cases[i].in, strlen(cell_cases[i].in)), 0);
        if (b.len != strlen(cell_cases[i].out) ||
            memcmp(b.data ? b.data : "", cell_cases[i].out, b.len) != 0)
            fail_msg("case %zu: got [%.*s] want [%s]", i, (int)b.len, b.data ? b.data : "",
                     cell_cases[i].out);
        mg_buf_finish(&b);
    }
}

static char *csv_of(const struct mg_stats *s, size_t top)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(mg_csv_write(f, s, top), 0);
    fclose(f);
    return buf;
}

static const char msg_a[] = "From: Ann <ann@a.example>\r\nDate: Mon, 4 Jan 2021 10:00:00 +0000\r\n"
                            "Subject: Budget report\r\n\r\nThe budget, again.\r\n";
static const char msg_b[] = "From: \"Ann B\" <ANN@a.example>\r\nSubject: budget\r\n\r\nx\r\n";
static const char msg_c[] = "From: =bob@b.example\r\nDate: Sun, 3 Jan 2021 23:00:00 -0100\r\n\r\n";
static const char msg_d[] = "Subject: no sender\r\n\r\n";

static void fill(struct mg_stats *s)
{
    struct mg_stopwords sw;
    assert_int_equal(mg_stopwords_default(&sw), 0);
    assert_int_equal(mg_analyze_message(msg_a, sizeof(msg_a) - 1, 100, 0, &sw, s), 0);
    assert_int_equal(mg_analyze_message(msg_b, sizeof(msg_b) - 1, 50, 86400 * 3 + 3600, &sw, s), 0);
    assert_int_equal(mg_analyze_message(msg_c, sizeof(msg_c) - 1, 10, 0, &sw, s), 0);
    assert_int_equal(mg_analyze_message(msg_d, sizeof(msg_d) - 1, 5, 0, &sw, s), 0);
    mg_stopwords_finish(&sw);
}

static const char expected_csv[] = "stat,key,value\r\n"
                                   "sender,ann@a.example,2\r\n"
                                   "sender,(none),1\r\n"
                                   "sender,'=bob@b.example,1\r\n"
                                   "sender_domain,a.example,2\r\n"
                                   "sender_domain,(none),1\r\n"
                                   "sender_domain,b.example,1\r\n"
                                   "keyword,budget,2\r\n"
                                   "keyword,report,1\r\n"
                                   "keyword,sender,1\r\n";

static void test_write(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    struct mg_stats s;
    mg_stats_init(&s);
    fill(&s);
    char *csv = csv_of(&s, 0);
    if (strncmp(csv, expected_csv, strlen(expected_csv)) != 0)
        fail_msg("got:\n%s", csv);
    /* hours 0 (msg_c, 23:00 -0100), 1 (fallback of msg_b), 10 (msg_a), 0 again (msg_d) */
    assert_non_null(strstr(csv, "hour,0,2\r\nhour,1,1\r\n"));
    assert_non_null(strstr(csv, "hour,10,1\r\n"));
    assert_non_null(strstr(csv, "hour,23,0\r\n"));
    assert_non_null(strstr(csv, "weekday,Mon,2\r\n"));
    assert_non_null(strstr(csv, "weekday,Thu,1\r\n")); /* epoch fallback: a Thursday */
    assert_non_null(strstr(csv, "weekday,Sun,1\r\n"));
    assert_non_null(strstr(csv, "total,messages,4\r\ntotal,bytes,165\r\n"));
    assert_non_null(strstr(csv, "total,unparseable,0\r\ntotal,date_fallback,2\r\n"));
    const struct mg_strmap_entry *ann = mg_strmap_get(&s.senders, "ann@a.example", 13, false);
    assert_non_null(ann);
    assert_int_equal(ann->bytes, 150);
    assert_string_equal(mg_stats_top_name(ann), "Ann"); /* tie: smallest name */
    free(csv);

    mg_stats_finish(&s);
}

static int emit_decode(void *ctx, const char *data, size_t len)
{
    return mg_stats_decode(ctx, data, len);
}

static void test_roundtrip(void **state)
{
    (void)state;
    setenv("TZ", "UTC", 1);
    tzset();
    struct mg_stats s, t;
    mg_stats_init(&s);
    mg_stats_init(&t);
    fill(&s);
    assert_int_equal(mg_stats_encode(&s, 16, emit_decode, &t), 0);
    assert_int_equal(mg_stats_encode(&s, 1 << 20, emit_decode, &t), 0);
    struct mg_stats d;
    mg_stats_init(&d);
    assert_int_equal(mg_stats_merge(&d, &s), 0);
    assert_int_equal(mg_stats_merge(&d, &s), 0);
    char *a = csv_of(&t, 0), *b = csv_of(&d, 0);
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "total,messages,8\r\n"));
    free(a);
    free(b);
    /* malformed chunks are refused */
    static const char junk[] = "\x04\xff\xff\xff\xff";
    assert_int_equal(mg_stats_decode(&t, junk, sizeof(junk) - 1), -1);
    assert_int_equal(mg_stats_decode(&t, "\x63", 1), -1);
    mg_stats_finish(&s);
    mg_stats_finish(&t);
    mg_stats_finish(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cells),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
