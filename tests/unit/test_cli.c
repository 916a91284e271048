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

static void test_unset_means_unset(void **state)
{
    struct mg_options o;
    struct mg_error e;
    assert_int_equal(parse(&o, &e, "--server imap.example.org --user bob"), MG_OK);
    assert_string_equal(o.over.server, "imap.example.org");
    assert_string_equal(o.over.user, "bob");
    /* Left unset so a config file can supply them; defaults come later. */
    assert_null(o.over.port);
    assert_null(o.over.output);
    assert_int_equal(o.over.nmailboxes, 0);
    assert_int_equal(o.over.chunks, 0);
    assert_int_equal(o.over.timeout, 0);
    assert_int_equal(o.over.format, -1);
    assert_int_equal(o.over.all_mailboxes, -1);
    assert_int_equal(o.over.compress, MG_YESNO_UNSET);
    assert_int_equal(o.limit, 0);
    assert_int_equal(o.verbosity, MG_NORMAL);
    assert_null(o.config);
    assert_null(o.account);
}

static void test_all_options(void **state)
{
    struct mg_options o;
    struct mg_error e;
    assert_int_equal(parse(&o, &e,
                           "-s h -p 1993 -u u -m Archive -m Sent -c 10 -o /tmp/x --cafile ca.pem "
                           "-l 7 -t 5 --password-file pw --format maildir --config c.ini "
                           "--account work --summary-json s.json -v"),
                     MG_OK);
    assert_string_equal(o.over.port, "1993");
    assert_int_equal(o.over.nmailboxes, 2);
    assert_string_equal(o.over.mailboxes[0], "Archive");
    assert_string_equal(o.over.mailboxes[1], "Sent");
    assert_int_equal(o.over.chunks, 10);
    assert_string_equal(o.over.output, "/tmp/x");
    assert_string_equal(o.over.cafile, "ca.pem");
    assert_int_equal(o.limit, 7);
    assert_int_equal(o.over.timeout, 5);
    assert_string_equal(o.over.password_file, "pw");
    assert_int_equal(o.over.format, 1);
    assert_string_equal(o.config, "c.ini");
    assert_string_equal(o.account, "work");
    assert_string_equal(o.summary_json, "s.json");
    assert_int_equal(o.verbosity, MG_VERBOSE);
    assert_int_equal(parse(&o, &e, "-s h -u u -vv"), MG_OK);
    assert_int_equal(o.verbosity, MG_DEBUG);
    assert_int_equal(parse(&o, &e, "-s h -u u -q --all-mailboxes"), MG_OK);
    assert_int_equal(o.verbosity, MG_QUIET);
    assert_int_equal(o.over.all_mailboxes, 1);
    assert_int_equal(parse(&o, &e, "-s h -u u --no-compress"), MG_OK);
    assert_int_equal(o.over.compress, MG_NO);
    assert_int_equal(parse(&o, &e, "-s h -u u --compress"), MG_OK);
    assert_int_equal(o.over.compress, MG_YES);
    assert_int_equal(parse(&o, &e, "-s h -u u --compress --no-compress"), MG_OK);
    assert_int_equal(o.over.compress, MG_NO); /* the last one given */
}

static void test_refusals(void **state)
{
    static const struct {
        const char *line;
        const char *says;
    } cases[] = {
        {"-s h -u u --format mbox", "--format"},
        {"-s h -u u -m INBOX --all-mailboxes", "not both"},
        {"-s h -u u --chunks 0", "--chunks"},
        {"-s h -u u --chunks 65", "--chunks"},
        {"-s h -u u --chunks 4x", "--chunks"},
        {"-s h -u u --chunks -1", "--chunks"},
        {"-s h -u u --port 70000", "--port"},
        {"-s h -u u --limit 0", "--limit"},
        {"-s h -u u --timeout 0", "--timeout"},
        {"-s h -u u --password hunter2", "never given on the command line"},
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

static void test_verify(void **state)
{
    struct mg_options o;
    struct mg_error e;
    assert_int_equal(parse(&o, &e, "verify --server h --user u -o /b --all-mailboxes -q"), MG_OK);
    assert_true(o.verify);
    assert_false(o.offline);
    assert_string_equal(o.over.output, "/b");
    assert_int_equal(o.over.all_mailboxes, MG_YES);
    assert_int_equal(o.verbosity, MG_QUIET);
    assert_int_equal(parse(&o, &e, "verify --offline --output /b -m INBOX"), MG_OK);
    assert_true(o.verify);
    assert_true(o.offline);
    assert_int_equal(parse(&o, &e, "--server h --user u"), MG_OK);
    assert_false(o.verify);
    /* --offline belongs to verify; download-only options do not. */
    assert_int_equal(parse(&o, &e, "--offline --output /b"), MG_E_USAGE);
    assert_int_equal(parse(&o, &e, "verify --offline --stats"), MG_E_USAGE);
    assert_int_equal(parse(&o, &e, "verify --offline --limit 5"), MG_E_USAGE);
    assert_int_equal(parse(&o, &e, "verify --offline --summary-json x"), MG_E_USAGE);
    assert_int_equal(parse(&o, &e, "verify --chunks 4"), MG_E_USAGE);
    /* "verify" only as the first word */
    assert_int_equal(parse(&o, &e, "--offline verify"), MG_E_USAGE);
    assert_int_equal(parse(&o, &e, "--server h verify"), MG_E_USAGE);
    assert_int_equal(parse(&o, &e, "verify --help"), MG_OK);
    assert_int_equal(o.action, MG_HELP);
    assert_true(o.verify);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unset_means_unset), cmocka_unit_test(test_all_options),
        cmocka_unit_test(test_refusals),          cmocka_unit_test(test_password_never_echoed),
        cmocka_unit_test(test_help_version),      cmocka_unit_test(test_verify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
