/* Unit tests: command-line parsing, defaults and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/cli.h"

#define MAXARGS 32

static enum mg_code parse(struct mg_options *o, struct mg_error *e, const char *line)
{
    static char buf[512];
    static char *argv[MAXARGS + 1];
    snprintf(buf, sizeof(buf), "mailgrab %s", line);
    int argc = 0;
    for (char *t = strtok(buf, " "); t != NULL && argc < MAXARGS; t = strtok(NULL, " "))
        argv[argc++] = t;
    argv[argc] = NULL;
    mg_error_clear(e);
    return mg_cli_parse(argc, argv, o, e);
}

static void test_defaults(void **state)
{
    struct mg_options o;
    struct mg_error e;
    assert_int_equal(parse(&o, &e, "--server imap.example.org --user bob"), MG_OK);
    assert_string_equal(o.server, "imap.example.org");
    assert_string_equal(o.port, "993");
    assert_string_equal(o.mailbox, "INBOX");
    assert_string_equal(o.output, ".");
    assert_int_equal(o.chunks, 4);
    assert_int_equal(o.timeout, 60);
    assert_int_equal(o.limit, 0);
    assert_int_equal(o.verbosity, MG_NORMAL);
}

static void test_all_options(void **state)
{
    struct mg_options o;
    struct mg_error e;
    assert_int_equal(parse(&o, &e,
                           "-s h -p 1993 -u u -m Archive -c 10 -o /tmp/x --cafile ca.pem "
                           "-l 7 -t 5 --password-file pw -v"),
                     MG_OK);
    assert_string_equal(o.port, "1993");
    assert_string_equal(o.mailbox, "Archive");
    assert_int_equal(o.chunks, 10);
    assert_string_equal(o.output, "/tmp/x");
    assert_string_equal(o.cafile, "ca.pem");
    assert_int_equal(o.limit, 7);
    assert_int_equal(o.timeout, 5);
    assert_string_equal(o.password_file, "pw");
    assert_int_equal(o.verbosity, MG_VERBOSE);
    assert_int_equal(parse(&o, &e, "-s h -u u -vv"), MG_OK);
    assert_int_equal(o.verbosity, MG_DEBUG);
    assert_int_equal(parse(&o, &e, "-s h -u u -q"), MG_OK);
    assert_int_equal(o.verbosity, MG_QUIET);
}

static void test_refusals(void **state)
{
    static const struct {
        const char *line;
        const char *says;
    } cases[] = {
        {"--user u", "no server"},
        {"--server h", "no user"},
        {"-s h -u u --chunks 0", "--chunks"},
        {"-s h -u u --chunks 65", "--chunks"},
        {"-s h -u u --chunks 4x", "--chunks"},
        {"-s h -u u --chunks -1", "--chunks"},
        {"-s h -u u --port 70000", "--port"},
        {"-s h -u u --limit 0", "--limit"},
        {"-s h -u u --timeout 0", "--timeout"},
        {"-s h -u u --password hunter2", "not taken on the command line"},
        {"-s h -u u --bogus", "unknown option"},
        {"-s h -u u extra", "unexpected argument"},
        {"-s h -u u --password-file a --password-command b", "not both"},
        {"-s h -u u --mailbox", "needs a value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mg_options o;
        struct mg_error e;
        assert_int_equal(parse(&o, &e, cases[i].line), MG_E_USAGE);
        if (strstr(e.msg, cases[i].says) == NULL)
            fail_msg("'%s' said '%s', expected '%s'", cases[i].line, e.msg, cases[i].says);
    }
}

static void test_password_never_echoed(void **state)
{
    struct mg_options o;
    struct mg_error e;
    parse(&o, &e, "-s h -u u --password hunter2");
    assert_null(strstr(e.msg, "hunter2"));
}

static void test_help_version(void **state)
{
    struct mg_options o;
    struct mg_error e;
    assert_int_equal(parse(&o, &e, "--help"), MG_OK);
    assert_int_equal(o.action, MG_HELP);
    assert_int_equal(parse(&o, &e, "--version"), MG_OK);
    assert_int_equal(o.action, MG_VERSION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),     cmocka_unit_test(test_all_options),
        cmocka_unit_test(test_refusals),     cmocka_unit_test(test_password_never_echoed),
        cmocka_unit_test(test_help_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
