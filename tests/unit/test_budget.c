/* Unit tests: the daily ledger (rolling window, damaged files, a clock that
 * goes back), when the next bytes fit, sizes and durations, and budget
 * planning (the prefix that fits, a message over the whole limit, the run's
 * limits, the ledger on disk across budgets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mailgrab/budget.h"

#define DAY MG_LEDGER_WINDOW

static struct mg_ledger parse(const char *text, int64_t now, size_t *bad)
{
    struct mg_ledger l;
    size_t ignored;
    assert_int_equal(mg_ledger_parse(text, strlen(text), now, &l, bad ? bad : &ignored), 0);
    return l;
}

static void test_rolling_window(void **state)
{
    (void)state;
    int64_t now = 1000000;
    char text[256];
    snprintf(text, sizeof(text), "f %lld 100\nf %lld 20\nf %lld 3\n", (long long)(now - DAY),
             (long long)(now - DAY + 1), (long long)(now - 5));
    struct mg_ledger l = parse(text, now, NULL);
    /* exactly a day old is out; a second younger is in */
    assert_int_equal(l.n, 2);
    assert_int_equal(mg_ledger_used(&l, now), 23);
    assert_int_equal(mg_ledger_used(&l, now + 1), 3);
    assert_int_equal(mg_ledger_used(&l, now + DAY - 5), 0);
    mg_ledger_finish(&l);
}

static void test_damaged_lines_are_skipped(void **state)
{
    (void)state;
    int64_t now = 500000;
    static const char *const bad_lines[] = {
        "x 499000 5\n",
        "f\n",
        "f 499000\n",
        "f abc 5\n",
        "f 499000 -5\n",
        "f 499000 5 6\n",
        "f 0 5\n",
        "\n",
        "f 499000 99999999999999999999999\n",
    };
    for (size_t i = 0; i < sizeof(bad_lines) / sizeof(bad_lines[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "f 499000 7\n%sf 499500 1\n", bad_lines[i]);
        size_t bad = 0;
        struct mg_ledger l = parse(text, now, &bad);
        assert_int_equal(l.n, 2);
        assert_int_equal(mg_ledger_used(&l, now), 8);
        assert_int_equal(bad, strcmp(bad_lines[i], "\n") == 0 ? 0 : 1);
        mg_ledger_finish(&l);
    }
    /* A crash mid-append: the last line has no newline and does not count. */
    size_t bad = 0;
    struct mg_ledger l = parse("f 499000 7\nf 4995", now, &bad);
    assert_int_equal(mg_ledger_used(&l, now), 7);
    assert_int_equal(bad, 1);
    mg_ledger_finish(&l);
    /* Binary junk */
    char junk[64];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 37 + 1);
    assert_int_equal(mg_ledger_parse(junk, sizeof(junk), now, &l, &bad), 0);
    assert_int_equal(mg_ledger_used(&l, now), 0);
    mg_ledger_finish(&l);
}

static void test_clock_going_backwards(void **state)
{
    (void)state;
    /* Written at 2,000,000; the clock now says a week earlier. */
    int64_t now = 2000000 - 7 * DAY;
    struct mg_ledger l = parse("f 2000000 50\nw 2000000 9\n", now, NULL);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].t, now); /* counted from now, not for a week */
    assert_int_equal(mg_ledger_used(&l, now), 50);
    assert_int_equal(mg_ledger_used(&l, now + DAY), 0);
    assert_int_equal(l.wait, 9);
    assert_int_equal(mg_ledger_free_at(&l, 50, 1, now), now + DAY);
    mg_ledger_finish(&l);
}

static void test_free_at(void **state)
{
    (void)state;
    int64_t now = 3000000;
    struct mg_ledger l = {0};
    assert_int_equal(mg_ledger_free_at(&l, 100, 100, now), now);
    assert_int_equal(mg_ledger_free_at(&l, 100, 1000, now), now); /* over the limit, empty */
    assert_int_equal(mg_ledger_add(&l, now - 3000, 40), 0);
    assert_int_equal(mg_ledger_add(&l, now - 2000, 30), 0);
    assert_int_equal(mg_ledger_add(&l, now - 1000, 20), 0);
    assert_int_equal(mg_ledger_free_at(&l, 100, 10, now), now);
    assert_int_equal(mg_ledger_free_at(&l, 100, 11, now), now - 3000 + DAY);
    assert_int_equal(mg_ledger_free_at(&l, 100, 51, now), now - 2000 + DAY);
    assert_int_equal(mg_ledger_free_at(&l, 100, 81, now), now - 1000 + DAY);
    /* more than the whole limit: when the window is empty */
    assert_int_equal(mg_ledger_free_at(&l, 100, 5000, now), now - 1000 + DAY);
    mg_ledger_finish(&l);
}

static void test_format_round_trip(void **state)
{
    (void)state;
    int64_t now = 4000000;
    struct mg_ledger l = parse("f 3999000 5\nf 3999900 6\nw 3999950 70\n", now, NULL);
    char buf[256];
    size_t n = mg_ledger_format(&l, buf, sizeof(buf));
    assert_true(n < sizeof(buf));
    buf[n] = '\0';
    assert_string_equal(buf, "f 3999000 5\nf 3999900 6\nw 3999950 70\n");
    assert_int_equal(mg_ledger_format(&l, buf, 10), 10); /* does not fit */
    mg_ledger_finish(&l);
}

static void test_sizes_and_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t want;
    } sizes[] = {
        {"0", 0, 0},           {"none", 0, 0},           {"1500", 0, 1500},
        {"2K", 0, 2000},       {"2000M", 0, 2000000000}, {"2G", 0, 2000000000},
        {"3g", 0, 3000000000}, {"10MB", 0, 10000000},    {"", -1, 0},
        {"M", -1, 0},          {"-5M", -1, 0},           {"5T", -1, 0},
        {"5 M", -1, 0},        {"99999999999G", -1, 0},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint64_t v = 12345;
        assert_int_equal(mg_size_parse(sizes[i].text, &v), sizes[i].rc);
        if (sizes[i].rc == 0)
            assert_int_equal(v, sizes[i].want);
    }
    static const struct {
        const char *text;
        int rc;
        uint64_t want;
    } durs[] = {
        {"90", 0, 90}, {"90s", 0, 90}, {"30m", 0, 1800}, {"2h", 0, 7200}, {"1d", 0, DAY},
        {"", -1, 0},   {"h", -1, 0},   {"2x", -1, 0},    {"2hh", -1, 0},  {"-1s", -1, 0},
    };
    for (size_t i = 0; i < sizeof(durs) / sizeof(durs[0]); i++) {
        uint64_t v = 0;
        assert_int_equal(mg_duration_parse(durs[i].text, &v), durs[i].rc);
        if (durs[i].rc == 0)
            assert_int_equal(v, durs[i].want);
    }
}

static char *temp_dir(void)
{
    char *d = strdup("/tmp/mg-budget-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void remove_dir(char *d)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", d, MG_LEDGER_NAME);
    unlink(path);
    rmdir(d);
    free(d);
}

static uint64_t ledger_on_disk(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, MG_LEDGER_NAME);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    struct mg_ledger l;
    size_t bad;
    assert_int_equal(mg_ledger_parse(buf, n, (int64_t)time(NULL), &l, &bad), 0);
    assert_int_equal(bad, 0);
    uint64_t used = mg_ledger_used(&l, (int64_t)time(NULL));
    mg_ledger_finish(&l);
    return used;
}

static void test_grants_the_prefix_that_fits(void **state)
{
    (void)state;
    char *dir = temp_dir();
    struct mg_budget *b;
    struct mg_error err;
    assert_int_equal(mg_budget_create(dir, 1000, NULL, &b, &err), MG_OK);
    assert_int_equal(mg_budget_check(b, &err), MG_OK);
    uint32_t sizes[] = {300, 300, 300, 50, 10};
    size_t got;
    assert_int_equal(mg_budget_take(b, sizes, 3, &got, &err), MG_OK);
    assert_int_equal(got, 3);
    assert_false(mg_budget_stopped(b));
    /* 900 spent: 300 does not fit, and nothing after it is granted either */
    uint32_t more[] = {300, 50};
    assert_int_equal(mg_budget_take(b, more, 2, &got, &err), MG_OK);
    assert_int_equal(got, 0);
    assert_true(mg_budget_stopped(b));
    assert_int_equal(mg_budget_error(b, &err), MG_E_LIMIT);
    assert_non_null(strstr(err.msg, "daily limit"));
    assert_non_null(strstr(err.msg, "UTC"));
    assert_int_equal(ledger_on_disk(dir), 900); /* on disk before it is fetched */
    mg_budget_destroy(b);

    /* The next budget reads it, and remembers what the stopped run waited
     * for: 300 bytes do not fit, so it stops before anything. */
    assert_int_equal(mg_budget_create(dir, 1000, NULL, &b, &err), MG_OK);
    assert_int_equal(mg_budget_check(b, &err), MG_E_LIMIT);
    assert_non_null(strstr(err.msg, "300 B"));
    mg_budget_destroy(b);
    /* A raised limit lets it go on. */
    assert_int_equal(mg_budget_create(dir, 2000, NULL, &b, &err), MG_OK);
    assert_int_equal(mg_budget_check(b, &err), MG_OK);
    assert_int_equal(mg_budget_take(b, more, 2, &got, &err), MG_OK);
    assert_int_equal(got, 2);
    mg_budget_destroy(b);
    assert_int_equal(ledger_on_disk(dir), 1250);
    remove_dir(dir);
}

static void test_message_over_the_whole_limit(void **state)
{
    (void)state;
    char *dir = temp_dir();
    struct mg_budget *b;
    struct mg_error err;
    size_t got;
    uint32_t huge[] = {5000, 10};
    assert_int_equal(mg_budget_create(dir, 1000, NULL, &b, &err), MG_OK);
    /* An empty window takes it alone; then the day is spent. */
    assert_int_equal(mg_budget_take(b, huge, 2, &got, &err), MG_OK);
    assert_int_equal(got, 1);
    assert_true(mg_budget_stopped(b));
    mg_budget_destroy(b);
    /* With something spent, it waits for an empty window. */
    char *dir2 = temp_dir();
    uint32_t small[] = {10};
    assert_int_equal(mg_budget_create(dir2, 1000, NULL, &b, &err), MG_OK);
    assert_int_equal(mg_budget_take(b, small, 1, &got, &err), MG_OK);
    assert_int_equal(got, 1);
    assert_int_equal(mg_budget_take(b, huge, 1, &got, &err), MG_OK);
    assert_int_equal(got, 0);
    mg_budget_destroy(b);
    remove_dir(dir);
    remove_dir(dir2);
}

static void test_run_limits(void **state)
{
    (void)state;
    struct mg_run_limits run;
    mg_run_limits_init(&run, 500, 0);
    struct mg_budget *a, *b;
    struct mg_error err;
    size_t got;
    /* No daily limit: no ledger; the run's bytes span its accounts. */
    char *dir = temp_dir();
    assert_int_equal(mg_budget_create(dir, 0, &run, &a, &err), MG_OK);
    uint32_t sizes[] = {200, 200, 200};
    assert_int_equal(mg_budget_take(a, sizes, 3, &got, &err), MG_OK);
    assert_int_equal(got, 2);
    assert_true(mg_budget_stopped(a));
    assert_int_equal(mg_budget_error(a, &err), MG_E_LIMIT);
    assert_non_null(strstr(err.msg, "--max-bytes"));
    mg_budget_destroy(a);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, MG_LEDGER_NAME);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(mg_budget_create(dir, 0, &run, &b, &err), MG_OK);
    uint32_t one[] = {150};
    assert_int_equal(mg_budget_take(b, one, 1, &got, &err), MG_OK);
    assert_int_equal(got, 0); /* 400 + 150 > 500 */
    mg_budget_destroy(b);

    /* A deadline in the past stops at once. */
    mg_run_limits_init(&run, 0, 1);
    run.deadline -= 2;
    assert_int_equal(mg_budget_create(dir, 0, &run, &b, &err), MG_OK);
    assert_int_equal(mg_budget_check(b, &err), MG_E_LIMIT);
    assert_non_null(strstr(err.msg, "--max-time"));
    assert_int_equal(mg_budget_take(b, one, 1, &got, &err), MG_OK);
    assert_int_equal(got, 0);
    mg_budget_destroy(b);
    remove_dir(dir);
    /* NULL grants everything */
    assert_int_equal(mg_budget_take(NULL, sizes, 3, &got, &err), MG_OK);
    assert_int_equal(got, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rolling_window),
        cmocka_unit_test(test_damaged_lines_are_skipped),
        cmocka_unit_test(test_clock_going_backwards),
        cmocka_unit_test(test_free_at),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_sizes_and_durations),
        cmocka_unit_test(test_grants_the_prefix_that_fits),
        cmocka_unit_test(test_message_over_the_whole_limit),
        cmocka_unit_test(test_run_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
