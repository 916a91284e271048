/* test_ini.c - the config file's INI syntax: headers, keys, comments, bounds */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/ini.h"

/* Every event as "line:[section]" or "line:section.key=value|", joined. */
struct trace {
    char out[4096];
};

static int record(void *ctx, unsigned line, const char *section, const char *key, const char *value)
{
    struct trace *t = ctx;
    size_t n = strlen(t->out);
    if (key == NULL)
        snprintf(t->out + n, sizeof(t->out) - n, "%u:[%s]|", line, section);
    else
        snprintf(t->out + n, sizeof(t->out) - n, "%u:%s.%s=%s|", line, section, key, value);
    return 0;
}

struct ini_case {
    const char *in;
    int rc;
    unsigned bad_line;
    const char *trace;
};

static const struct ini_case cases[] = {
    {"", MG_INI_OK, 0, ""},
    {"[a]\nk = v\n", MG_INI_OK, 0, "1:[a]|2:a.k=v|"},
    {"\xEF\xBB\xBF[a]\r\nk=v\r\n", MG_INI_OK, 0, "1:[a]|2:a.k=v|"},
    {"k = v\n", MG_INI_OK, 0, "1:.k=v|"},
    {"; c\n# c\n  [ account x ]  \n\tkey\t=\t  spaced value  \n", MG_INI_OK, 0,
     "3:[account x]|4:account x.key=spaced value|"},
    /* inline comments need white space before them */
    {"[d]\nformat = maildir          # or eml\n", MG_INI_OK, 0, "1:[d]|2:d.format=maildir|"},
    {"[d]\nx = a ; note\n", MG_INI_OK, 0, "1:[d]|2:d.x=a|"},
    {"[d]\nurl = https://h/p#frag\n", MG_INI_OK, 0, "1:[d]|2:d.url=https://h/p#frag|"},
    {"[d]\nx = # only a comment\n", MG_INI_OK, 0, "1:[d]|2:d.x=|"},
    {"[d]\nx=#tag\n", MG_INI_OK, 0, "1:[d]|2:d.x=#tag|"},
    {"[d] # the defaults\n", MG_INI_OK, 0, "1:[d]|"},
    {"[d]\nx: y\n", MG_INI_OK, 0, "1:[d]|2:d.x=y|"},
    {"[d]\nempty =\n", MG_INI_OK, 0, "1:[d]|2:d.empty=|"},
    {"[d]\nk = a = b\n", MG_INI_OK, 0, "1:[d]|2:d.k=a = b|"},
    {"last = line without newline", MG_INI_OK, 0, "1:.last=line without newline|"},
    /* a CR is white space, also before a tab (found by fuzz_ini) */
    {"k = v\r\t\n", MG_INI_OK, 0, "1:.k=v|"},
    {"k\r = v\n", MG_INI_OK, 0, "1:.k=v|"},
    {"[a]\nthis is not ini\n", MG_INI_SYNTAX, 2, "1:[a]|"},
    {"[a\n", MG_INI_SYNTAX, 1, ""},
    {"[a] junk\n", MG_INI_SYNTAX, 1, ""},
    {"[a]\n = v\n", MG_INI_SYNTAX, 2, "1:[a]|"},
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct trace t = {""};
        unsigned bad = 99;
        int rc = mg_ini_parse(cases[i].in, strlen(cases[i].in), record, &t, &bad);
        if (rc != cases[i].rc || strcmp(t.out, cases[i].trace) != 0 ||
            (rc != 0 && bad != cases[i].bad_line))
            fail_msg("case %zu %s: rc %d line %u trace '%s'", i, cases[i].in, rc, bad, t.out);
    }
}

/* A line far longer than libinih's 200 bytes is read whole. */
static void test_long_line(void **state)
{
    (void)state;
    char in[1200], want[1200];
    char value[1000];
    memset(value, 'x', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    snprintf(in, sizeof(in), "[a]\npassword_command = %s\nk = v\n", value);
    snprintf(want, sizeof(want), "1:[a]|2:a.password_command=%s|3:a.k=v|", value);
    struct trace t = {""};
    unsigned bad;
    assert_int_equal(mg_ini_parse(in, strlen(in), record, &t, &bad), MG_INI_OK);
    assert_string_equal(t.out, want);
}

static void test_bounds(void **state)
{
    (void)state;
    size_t n = MG_INI_LINE_MAX + 20;
    char *in = malloc(n);
    assert_non_null(in);
    memcpy(in, "[a]\nk = ", 8);
    memset(in + 8, 'x', n - 8);
    struct trace t = {""};
    unsigned bad;
    assert_int_equal(mg_ini_parse(in, n, record, &t, &bad), MG_INI_TOO_LONG);
    assert_int_equal(bad, 2);
    free(in);

    static const char nul[] = "[a]\nk = v\0w\n";
    assert_int_equal(mg_ini_parse(nul, sizeof(nul) - 1, record, &t, &bad), MG_INI_NUL);
    assert_int_equal(bad, 2);
}

static int stop_at_key(void *ctx, unsigned line, const char *section, const char *key,
                       const char *value)
{
    (void)ctx;
    (void)line;
    (void)section;
    (void)value;
    return key != NULL && strcmp(key, "stop") == 0 ? 7 : 0;
}

/* The handler's refusal ends the parse and is returned as it is. */
static void test_handler_stops(void **state)
{
    (void)state;
    static const char in[] = "[a]\nk = v\nstop = now\nnever = reached\n";
    unsigned bad = 0;
    assert_int_equal(mg_ini_parse(in, strlen(in), stop_at_key, NULL, &bad), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_handler_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
