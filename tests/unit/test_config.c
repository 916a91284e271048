/* Unit tests: the config file, its errors (file:line), and precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mailgrab/config.h"
#include "mailgrab/store.h"

static char path[64];

static void write_config(const char *text, mode_t mode)
{
    snprintf(path, sizeof(path), "/tmp/mg-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    fchmod(fd, mode);
    close(fd);
}

static void test_accounts_and_defaults(void **state)
{
    write_config("; comment\n"
                 "[defaults]\n"
                 "output = /backup\n"
                 "chunks = 6\n"
                 "daily_limit = 1500M\n"
                 "\n"
                 "[account work]\n"
                 "server = imap.work.example\n"
                 "user = me@work.example\n"
                 "password_command = pass show work\n"
                 "mailbox = INBOX\n"
                 "mailbox = Sent Items\n"
                 "format = maildir\n"
                 "\n"
                 "[account home]\n"
                 "server = imap.home.example\n"
                 "port = 1993\n"
                 "user = me\n"
                 "all_mailboxes = yes\n"
                 "chunks = 2\n"
                 "compress = no\n"
                 "daily_limit = none\n",
                 0600);
    struct mg_config cfg;
    struct mg_error e;
    assert_int_equal(mg_config_load(path, true, &cfg, &e), MG_OK);
    assert_int_equal(cfg.naccounts, 2);
    assert_string_equal(cfg.accounts[0].name, "work");
    assert_int_equal(cfg.accounts[0].nmailboxes, 2);
    assert_string_equal(cfg.accounts[0].mailboxes[1], "Sent Items");

    /* built-in < [defaults] < [account] < command line */
    struct mg_account a, cli;
    mg_account_init(&a, "work");
    mg_account_merge(&a, &cfg.defaults);
    mg_account_merge(&a, &cfg.accounts[0]);
    mg_account_init(&cli, "command line");
    cli.chunks = 9;
    cli.password_file = "/pw";
    mg_account_merge(&a, &cli);
    assert_int_equal(mg_account_finish(&a, &e), MG_OK);
    assert_string_equal(a.output, "/backup");      /* from [defaults] */
    assert_string_equal(a.port, "993");            /* built-in */
    assert_int_equal(a.chunks, 9);                 /* command line wins */
    assert_int_equal(a.format, MG_FORMAT_MAILDIR); /* from [account] */
    assert_string_equal(a.password_file, "/pw");
    assert_null(a.password_command);      /* one source replaces the other */
    assert_int_equal(a.compress, MG_YES); /* built-in */
    assert_true(a.daily_limit_set);       /* from [defaults] */
    assert_int_equal(a.daily_limit, 1500000000);

    mg_account_init(&a, "home");
    mg_account_merge(&a, &cfg.defaults);
    mg_account_merge(&a, &cfg.accounts[1]);
    assert_int_equal(mg_account_finish(&a, &e), MG_OK);
    assert_int_equal(a.chunks, 2); /* [account] over [defaults] */
    assert_int_equal(a.all_mailboxes, 1);
    assert_int_equal(a.compress, MG_NO);
    assert_int_equal(a.nmailboxes, 0);
    assert_string_equal(a.port, "1993");
    assert_true(a.daily_limit_set); /* none is set, to nothing: no provider default */
    assert_int_equal(a.daily_limit, 0);
    mg_config_finish(&cfg);
    unlink(path);
}

static void test_errors_name_file_and_line(void **state)
{
    static const struct {
        const char *text;
        const char *says;
    } cases[] = {
        {"[account a]\nserver = x\nserer = y\n", ":3: unknown key 'serer' in [account a]"},
        {"[account a]\nchunks = 99\n", ":2: chunks must be a number from 1 to 64"},
        {"[account a]\nport = http\n", ":2: port must be a number"},
        {"[account a]\nformat = mbox\n", ":2: format must be eml or maildir"},
        {"[account a]\nall_mailboxes = maybe\n", ":2: all_mailboxes must be yes or no"},
        {"[account a]\ndaily_limit = 2 TB\n", ":2: daily_limit must be a size"},
        {"server = x\n", ":1: 'server' is outside any section"},
        {"[acount a]\nserver = x\n", ":1: unknown section [acount a]"},
        {"[account a]\npassword = hunter2\n",
         ":2: password is not accepted: passwords are never given"},
        {"[account a]\nserver = x\nthis is not ini\n", ":3: not a 'key = value' line"},
        {"[account a]\nserver = x\n[account a]\nuser = y\n", ":3: account 'a' is defined twice"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_config(cases[i].text, 0600);
        struct mg_config cfg;
        struct mg_error e;
        assert_int_equal(mg_config_load(path, true, &cfg, &e), MG_E_USAGE);
        if (strstr(e.msg, cases[i].says) == NULL || strncmp(e.msg, path, strlen(path)) != 0)
            fail_msg("case %zu said '%s', expected '%s'", i, e.msg, cases[i].says);
        assert_null(strstr(e.msg, "hunter2"));
        unlink(path);
    }
}

/* The README's example config (inline '#' comments) and a password_command
 * line longer than libinih's 200 bytes both load; line numbers stay exact. */
static void test_readme_comments_and_long_lines(void **state)
{
    char cmd[301];
    memset(cmd, 'p', sizeof(cmd) - 1);
    cmd[sizeof(cmd) - 1] = '\0';
    char text[1024];
    snprintf(text, sizeof(text),
             "[defaults]\n"
             "output = /backup\n"
             "format = maildir          # or eml: one <uid>.eml per message\n"
             "\n"
             "[account gmail]\n"
             "server = imap.gmail.com\n"
             "password_command = %s\n"
             "chunks = 10   ; a comment too\n"
             "bogus = 1\n",
             cmd);
    write_config(text, 0600);
    struct mg_config cfg;
    struct mg_error e;
    assert_int_equal(mg_config_load(path, true, &cfg, &e), MG_E_USAGE);
    assert_non_null(strstr(e.msg, ":9: unknown key 'bogus'")); /* exact line after the long one */
    unlink(path);
    *strstr(text, "bogus = 1\n") = '\0';
    write_config(text, 0600);
    assert_int_equal(mg_config_load(path, true, &cfg, &e), MG_OK);
    assert_int_equal(cfg.defaults.format, MG_FORMAT_MAILDIR);
    assert_int_equal(cfg.naccounts, 1);
    assert_string_equal(cfg.accounts[0].password_command, cmd);
    assert_int_equal(cfg.accounts[0].chunks, 10);
    mg_config_finish(&cfg);
    unlink(path);
}

static void test_private_and_missing(void **state)
{
    write_config("[account a]\nserver = x\n", 0644);
    struct mg_config cfg;
    struct mg_error e;
    assert_int_equal(mg_config_load(path, true, &cfg, &e), MG_E_USAGE);
    assert_non_null(strstr(e.msg, "chmod 600"));
    unlink(path);
    /* The default path may be absent; an explicit --config may not. */
    assert_int_equal(mg_config_load("/nonexistent/mailgrab.conf", false, &cfg, &e), MG_OK);
    assert_int_equal(cfg.naccounts, 0);
    mg_config_finish(&cfg);
    assert_int_equal(mg_config_load("/nonexistent/mailgrab.conf", true, &cfg, &e), MG_E_USAGE);
}

static void test_required_fields(void **state)
{
    struct mg_account a;
    struct mg_error e;
    mg_account_init(&a, "x");
    assert_int_equal(mg_account_finish(&a, &e), MG_E_USAGE);
    assert_non_null(strstr(e.msg, "no server"));
    mg_account_init(&a, "x");
    a.server = "h";
    assert_int_equal(mg_account_finish(&a, &e), MG_E_USAGE);
    assert_non_null(strstr(e.msg, "no user"));
    a.user = "u";
    assert_int_equal(mg_account_finish(&a, &e), MG_OK);
    assert_int_equal(a.nmailboxes, 1);
    assert_string_equal(a.mailboxes[0], "INBOX");
}

static void test_home_expansion(void **state)
{
    setenv("HOME", "/home/tester", 1);
    write_config("[account a]\noutput = ~/mail\npassword_file = ~/.pw\n", 0600);
    struct mg_config cfg;
    struct mg_error e;
    assert_int_equal(mg_config_load(path, true, &cfg, &e), MG_OK);
    assert_string_equal(cfg.accounts[0].output, "/home/tester/mail");
    assert_string_equal(cfg.accounts[0].password_file, "/home/tester/.pw");
    mg_config_finish(&cfg);
    unlink(path);
}

static const char *example; /* config/mailgrab.conf.example, from argv */

/* Which accounts share an output: as this run has them (command line
 * included) when they run, as the file has them when they do not. */
static void test_shared_outputs(void **state)
{
    write_config("[defaults]\noutput = /backup\n"
                 "[account a]\nserver = s\nuser = a\n"
                 "[account b]\nserver = s\nuser = b\noutput = /backup/./\n"
                 "[account c]\nserver = s\nuser = c\noutput = /elsewhere\n"
                 "[account d]\nserver = s\nuser = d\n",
                 0600);
    struct mg_config cfg;
    struct mg_error e;
    assert_int_equal(mg_config_load(path, true, &cfg, &e), MG_OK);
    struct mg_account run[4];
    for (size_t i = 0; i < 4; i++) {
        mg_account_init(&run[i], cfg.accounts[i].name);
        mg_account_merge(&run[i], &cfg.defaults);
        mg_account_merge(&run[i], &cfg.accounts[i]);
    }
    mg_config_share_outputs(&cfg, run, 4);
    static const bool shared[] = {true, true, false, true};
    static const bool first[] = {true, false, false, false};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(run[i].output_shared, shared[i]);
        assert_int_equal(run[i].output_first, first[i]);
    }
    /* --account b --output /x: b alone there; d, not running, still shares
     * /backup with a, and b is no longer counted there. */
    run[1].output = "/x";
    mg_config_share_outputs(&cfg, &run[1], 1);
    assert_false(run[1].output_shared);
    /* --account d, output from the file: shares /backup with a and b. */
    mg_config_share_outputs(&cfg, &run[3], 1);
    assert_true(run[3].output_shared);
    assert_false(run[3].output_first);
    /* --output /x for every account: all share it, a first. */
    for (size_t i = 0; i < 4; i++)
        run[i].output = "//x/";
    mg_config_share_outputs(&cfg, run, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_true(run[i].output_shared);
        assert_int_equal(run[i].output_first, i == 0);
    }
    mg_config_finish(&cfg);
    unlink(path);
}

static void test_shipped_example_parses(void **state)
{
    FILE *in = fopen(example, "r");
    assert_non_null(in);
    char text[8192];
    size_t n = fread(text, 1, sizeof(text) - 1, in);
    fclose(in);
    text[n] = '\0';
    write_config(text, 0600);
    struct mg_config cfg;
    struct mg_error e;
    if (mg_config_load(path, true, &cfg, &e) != MG_OK)
        fail_msg("the shipped example does not load: %s", e.msg);
    assert_int_equal(cfg.naccounts, 3);
    for (size_t i = 0; i < cfg.naccounts; i++) {
        struct mg_account a;
        mg_account_init(&a, cfg.accounts[i].name);
        mg_account_merge(&a, &cfg.defaults);
        mg_account_merge(&a, &cfg.accounts[i]);
        assert_int_equal(mg_account_finish(&a, &e), MG_OK);
    }
    mg_config_finish(&cfg);
    unlink(path);
}

int main(int argc, char **argv)
{
    example = argc > 1 ? argv[1] : "config/mailgrab.conf.example";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accounts_and_defaults),
        cmocka_unit_test(test_errors_name_file_and_line),
        cmocka_unit_test(test_readme_comments_and_long_lines),
        cmocka_unit_test(test_private_and_missing),
        cmocka_unit_test(test_required_fields),
        cmocka_unit_test(test_home_expansion),
        cmocka_unit_test(test_shipped_example_parses),
        cmocka_unit_test(test_shared_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
