/* test_settings.c - the one settings table: its shape, --name=value for every
 * option of every command, range errors, and that --help and the man pages
 * name every option and config key. argv[1] is the man page directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/settings.h"

static const char *man_dir;

static const unsigned commands[] = {MG_CMD_BACKUP, MG_CMD_LOGIN,    MG_CMD_STATS,
                                    MG_CMD_VERIFY, MG_CMD_ESTIMATE, MG_CMD_RESTORE};

/* Sorted by long name, one name per command, keys spelled like names. */
static void test_table_shape(void **state)
{
    (void)state;
    size_t n;
    const struct mg_setting *t = mg_settings(&n);
    assert_true(n > 30);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(t[i].name);
        assert_non_null(t[i].help);
        assert_true(t[i].commands != 0);
        if (i > 0 && strcmp(t[i - 1].name, t[i].name) > 0)
            fail_msg("--%s sorts before --%s", t[i].name, t[i - 1].name);
        if (t[i].key != NULL) {
            char want[64];
            snprintf(want, sizeof(want), "%s", t[i].name);
            for (char *p = want; *p; p++)
                if (*p == '-')
                    *p = '_';
            if (strcmp(want, t[i].key) != 0)
                fail_msg("--%s has config key %s", t[i].name, t[i].key);
            assert_ptr_equal(mg_setting_by_key(t[i].key), &t[i]);
        }
        for (size_t j = 0; j < i; j++) {
            if (!(t[i].commands & t[j].commands))
                continue;
            if (strcmp(t[i].name, t[j].name) == 0)
                fail_msg("--%s twice for one command", t[i].name);
            if (t[i].short_name && t[i].short_name == t[j].short_name)
                fail_msg("-%c twice for one command", t[i].short_name);
        }
    }
    assert_null(mg_setting_by_key("no_such_key"));
}

struct seen {
    const struct mg_setting *s;
    char text[64];
    unsigned long num;
    bool yes;
    int calls;
};

static enum mg_code remember(void *ctx, const struct mg_setting *s, const struct mg_value *v,
                             struct mg_error *err)
{
    (void)err;
    struct seen *r = ctx;
    r->s = s;
    snprintf(r->text, sizeof(r->text), "%s", v->text ? v->text : "");
    r->num = v->num;
    r->yes = v->yes;
    r->calls++;
    return MG_OK;
}

static const char *good_value(const struct mg_setting *s, char *buf, size_t cap)
{
    switch (s->type) {
    case MG_TYPE_NUMBER:
        snprintf(buf, cap, "%lu", s->max > s->min ? s->min + 1 : s->min);
        return buf;
    case MG_TYPE_CHOICE:
        return s->choices[1] ? s->choices[1] : s->choices[0];
    case MG_TYPE_TZ:
        return "UTC";
    case MG_TYPE_SIZE:
        return "500M";
    case MG_TYPE_DURATION:
        return "90s";
    default:
        return "some value";
    }
}

static enum mg_code parse_line(unsigned cmd, const char *a1, const char *a2, struct seen *r,
                               struct mg_error *e)
{
    char *argv[] = {"mailgrab", (char *)a1, (char *)a2, NULL};
    const char *ops[1];
    size_t nops;
    memset(r, 0, sizeof(*r));
    return mg_settings_parse(cmd, a2 ? 3 : 2, argv, remember, r, ops, 1, &nops, e);
}

/* Every option of every command takes --name=value, --name value and, where
 * it has one, its short form, with the same result. */
static void test_every_option_every_form(void **state)
{
    (void)state;
    size_t n;
    const struct mg_setting *t = mg_settings(&n);
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
        for (size_t i = 0; i < n; i++) {
            const struct mg_setting *s = &t[i];
            if (!(s->commands & commands[c]) || s->type == MG_TYPE_REFUSED)
                continue;
            struct seen r1, r2;
            struct mg_error e;
            char opt[128], val[64];
            if (s->type == MG_TYPE_FLAG) {
                snprintf(opt, sizeof(opt), "--%s", s->name);
                assert_int_equal(parse_line(commands[c], opt, NULL, &r1, &e), MG_OK);
                assert_ptr_equal(r1.s, s);
                assert_true(r1.yes);
                continue;
            }
            const char *v = good_value(s, val, sizeof(val));
            snprintf(opt, sizeof(opt), "--%s=%s", s->name, v);
            if (parse_line(commands[c], opt, NULL, &r1, &e) != MG_OK)
                fail_msg("%s: %s", opt, e.msg);
            snprintf(opt, sizeof(opt), "--%s", s->name);
            assert_int_equal(parse_line(commands[c], opt, v, &r2, &e), MG_OK);
            assert_ptr_equal(r1.s, s);
            assert_ptr_equal(r2.s, s);
            assert_string_equal(r1.text, v);
            assert_string_equal(r2.text, v);
            assert_int_equal(r1.num, r2.num);
            if (s->short_name) {
                snprintf(opt, sizeof(opt), "-%c", s->short_name);
                assert_int_equal(parse_line(commands[c], opt, v, &r2, &e), MG_OK);
                assert_ptr_equal(r2.s, s);
                assert_string_equal(r2.text, v);
            }
        }
    }
}

/* A value out of range is refused naming the option as it was typed. */
static void test_range_errors(void **state)
{
    (void)state;
    size_t n;
    const struct mg_setting *t = mg_settings(&n);
    for (size_t i = 0; i < n; i++) {
        const struct mg_setting *s = &t[i];
        unsigned cmd = s->commands & -s->commands; /* its first command */
        char opt[128];
        struct seen r;
        struct mg_error e;
        if (s->type == MG_TYPE_NUMBER) {
            snprintf(opt, sizeof(opt), "--%s=%s", s->name, "x1");
            assert_int_equal(parse_line(cmd, opt, NULL, &r, &e), MG_E_USAGE);
            char want[128];
            snprintf(want, sizeof(want), "--%s must be a number from %lu", s->name, s->min);
            if (strstr(e.msg, want) == NULL)
                fail_msg("%s said '%s'", opt, e.msg);
            assert_int_equal(r.calls, 0);
        } else if (s->type == MG_TYPE_SIZE || s->type == MG_TYPE_DURATION) {
            snprintf(opt, sizeof(opt), "--%s=12 parsecs", s->name);
            assert_int_equal(parse_line(cmd, opt, NULL, &r, &e), MG_E_USAGE);
            assert_non_null(strstr(e.msg, "not '12 parsecs'"));
            assert_int_equal(r.calls, 0);
        } else if (s->type == MG_TYPE_CHOICE || s->type == MG_TYPE_TZ) {
            snprintf(opt, sizeof(opt), "--%s=Mars/Olympus_Mons", s->name);
            assert_int_equal(parse_line(cmd, opt, NULL, &r, &e), MG_E_USAGE);
            assert_non_null(strstr(e.msg, "not 'Mars/Olympus_Mons'"));
        }
    }
    struct seen r;
    struct mg_error e;
    assert_int_equal(parse_line(MG_CMD_BACKUP, "-c", "65", &r, &e), MG_E_USAGE);
    assert_non_null(strstr(e.msg, "-c must be a number from 1 to 64, not '65'"));
    assert_int_equal(parse_line(MG_CMD_STATS, "--jobs", "0", &r, &e), MG_E_USAGE);
    assert_int_equal(parse_line(MG_CMD_STATS, "--chunks", "4", &r, &e), MG_E_USAGE);
    assert_non_null(strstr(e.msg, "unknown option --chunks"));
    assert_int_equal(parse_line(MG_CMD_BACKUP, "--server", NULL, &r, &e), MG_E_USAGE);
    assert_non_null(strstr(e.msg, "needs a value"));
    assert_int_equal(parse_line(MG_CMD_BACKUP, "--password=hunter2", NULL, &r, &e), MG_E_USAGE);
    assert_null(strstr(e.msg, "hunter2"));
}

static void test_operands(void **state)
{
    (void)state;
    char *argv[] = {"mailgrab", "--top", "3", "dir", "--", "-odd", NULL};
    const char *ops[2];
    size_t nops;
    struct seen r;
    struct mg_error e;
    assert_int_equal(mg_settings_parse(MG_CMD_STATS, 6, argv, remember, &r, ops, 2, &nops, &e),
                     MG_OK);
    assert_int_equal(nops, 2);
    assert_string_equal(ops[0], "dir");
    assert_string_equal(ops[1], "-odd");
    assert_int_equal(mg_settings_parse(MG_CMD_STATS, 6, argv, remember, &r, ops, 1, &nops, &e),
                     MG_E_USAGE);
}

static char *slurp(const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", man_dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot read %s", path);
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/* `needle` stands in text as a whole word (not a prefix of a longer name). */
static bool has_word(const char *text, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) {
        char next = p[n];
        if (!(next == '-' || next == '_' || (next >= 'a' && next <= 'z')))
            return true;
    }
    return false;
}

/* Every option is in its command's --help and man page; every config key in
 * mailgrab.conf(5). */
static void test_help_and_man_pages_name_everything(void **state)
{
    (void)state;
    char *main_page = slurp("mailgrab.1");
    char *stats_page = slurp("mailgrab-stats.1");
    char *verify_page = slurp("mailgrab-verify.1");
    char *estimate_page = slurp("mailgrab-estimate.1");
    char *conf_page = slurp("mailgrab.conf.5");
    size_t n;
    const struct mg_setting *t = mg_settings(&n);
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
        char *help = NULL;
        size_t hlen = 0;
        FILE *f = open_memstream(&help, &hlen);
        assert_non_null(f);
        mg_settings_help(commands[c], f);
        fclose(f);
        const char *page = commands[c] == MG_CMD_STATS      ? stats_page
                           : commands[c] == MG_CMD_VERIFY   ? verify_page
                           : commands[c] == MG_CMD_ESTIMATE ? estimate_page
                                                            : main_page;
        for (size_t i = 0; i < n; i++) {
            const struct mg_setting *s = &t[i];
            if (!mg_setting_for(s, commands[c]))
                continue;
            char want[96];
            snprintf(want, sizeof(want), "--%s", s->name);
            if (s->type != MG_TYPE_REFUSED && !has_word(help, want))
                fail_msg("%s is not in --help of command %u", want, commands[c]);
            snprintf(want, sizeof(want), "Fl -%s", s->name);
            if (!has_word(page, want))
                fail_msg("%s is not in the man page of command %u", want, commands[c]);
            if (s->key != NULL) {
                snprintf(want, sizeof(want), "Cm %s", s->key);
                if (!has_word(conf_page, want))
                    fail_msg("config key %s is not in mailgrab.conf(5)", s->key);
            }
        }
        free(help);
    }
    free(main_page);
    free(stats_page);
    free(verify_page);
    free(estimate_page);
    free(conf_page);
}

int main(int argc, char **argv)
{
    man_dir = argc > 1 ? argv[1] : "man";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_shape),
        cmocka_unit_test(test_every_option_every_form),
        cmocka_unit_test(test_range_errors),
        cmocka_unit_test(test_operands),
        cmocka_unit_test(test_help_and_man_pages_name_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
