/* test_datetime.c - Date header forms seen in real mail */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/datetime.h"

struct date_case {
    const char *in;
    int ok;
    long long expect; /* UTC seconds */
};

static const struct date_case cases[] = {
    {"Mon, 4 Jan 2021 10:00:00 +0000", 0, 1609754400},
    {"Mon, 04 Jan 2021 11:00:00 +0100", 0, 1609754400},
    {"Mon, 4 Jan 2021 05:00:00 -0500", 0, 1609754400},
    {"Mon, 4 Jan 2021 05:00:00 EST", 0, 1609754400},
    {"Mon, 4 Jan 2021 06:00:00 EDT", 0, 1609754400},
    {"Mon, 4 Jan 2021 02:00:00 PST", 0, 1609754400},
    {"Mon, 4 Jan 2021 03:00:00 PDT", 0, 1609754400},
    {"Mon, 4 Jan 2021 04:00:00 CST", 0, 1609754400},
    {"Mon, 4 Jan 2021 03:00:00 MST", 0, 1609754400},
    {"Mon, 4 Jan 2021 10:00:00 GMT", 0, 1609754400},
    {"Mon, 4 Jan 2021 10:00:00 UT", 0, 1609754400},
    {"Mon, 4 Jan 2021 10:00:00 Z", 0, 1609754400},
    {"Mon, 4 Jan 2021 10:00:00 A", 0, 1609754400},   /* military: read as -0000 */
    {"Mon, 4 Jan 2021 10:00 +0000", 0, 1609754400},  /* no seconds */
    {"4 Jan 2021 10:00:00 +0000", 0, 1609754400},    /* no day name */
    {"Mon, 4 Jan 21 10:00:00 +0000", 0, 1609754400}, /* 2-digit year */
    {"Fri, 21 Nov 97 09:55:06 GMT", 0, 880106106},
    {"Fri, 21 Nov 097 09:55:06 GMT", 0, 880106106}, /* 3-digit year */
    {"Mon, 4 Jan 2021 11:00:00 +0100 (CET)", 0, 1609754400},
    {"Mon, 4 Jan 2021 (a (nested) comment) 10:00:00 +0000", 0, 1609754400},
    {"Mon,\r\n 4 Jan 2021\r\n\t10:00:00 +0000", 0, 1609754400}, /* folded */
    {"Mon Jan  4 10:00:00 2021", 0, 1609754400},                /* asctime */
    {"4-Jan-2021 10:00:00 +0000", 0, 1609754400},
    {"Mon, 4 Jan 2021 10:00:00", 0, 1609754400}, /* no zone */
    {"Thu, 13 Feb 1969 23:32:54 -0330", 0, -27723426},
    {"Mon, 4 Jan 2021 15:30:00 +0530", 0, 1609754400},
    {"mon, 4 jan 2021 10:00:00 gmt", 0, 1609754400},
    {"Mon, 4 January 2021 10:00:00 +0000", 0, 1609754400},
    {"Sun, 29 Feb 2004 00:00:00 +0000", 0, 1078012800},
    {"Mon, 29 Feb 2021 00:00:00 +0000", -1, 0}, /* no such day */
    {"Mon, 4 Jan 2021 25:61:00 +0000", -1, 0},
    {"Mon, 4 Jan 2021 10:00:00 +0099", -1, 0},
    {"Mon, 32 Jan 2021 10:00:00 +0000", -1, 0},
    {"Mon, 4 Foo 2021 10:00:00 +0000", -1, 0},
    {"", -1, 0},
    {"yesterday", -1, 0},
    {"Mon, 4 Jan 2021", -1, 0}, /* no time */
    {"Mon, 4 Jan 2021 10:00:00 +0000 +0000 +0000", 0, 1609754400},
    {"Mon, 4 Jan 2021 11:00:00 GMT+01:00", 0, 1609758000}, /* junk zone: read as GMT */
    {"2021-01-04T10:00:00Z", 0, 1609754400},               /* ISO 8601 from scripts */
    {"2021-01-04 11:00:00+01:00", 0, 1609754400},
    {"2021-01-04T05:00:00.123-0500", 0, 1609754400},
    {"2021-02-30T05:00:00Z", -1, 0},
    {"2021-01-04T25:00:00Z", -1, 0},
};

static void test_dates(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        time_t t = 0;
        int rc = mg_date_parse(cases[i].in, strlen(cases[i].in), &t);
        if (rc != cases[i].ok || (rc == 0 && (long long)t != cases[i].expect))
            fail_msg("case %zu \"%s\": rc %d t %lld, want rc %d t %lld", i, cases[i].in, rc,
                     (long long)t, cases[i].ok, cases[i].expect);
    }
}

static void test_nul_inside(void **state)
{
    (void)state;
    static const char in[] = "Mon, 4 Jan 2021\0 10:00:00 +0000";
    time_t t;
    assert_int_equal(mg_date_parse(in, sizeof(in) - 1, &t), 0);
    assert_int_equal((long long)t, 1609754400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_nul_inside),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
