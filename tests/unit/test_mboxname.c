/* Unit tests: mailbox names to IMAP (modified UTF-7) and to safe paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/mboxname.h"

static const struct {
    const char *utf8;
    const char *imap;
} utf7_cases[] = {
    {"INBOX", "INBOX"},
    {"a&b", "a&-b"},
    {"Entw\xc3\xbcrfe", "Entw&APw-rfe"},
    {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "&BB8EQAQ4BDIENQRC-"},
    {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
     "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
    {"\xf0\x9f\x93\xa7 mail", "&2D3c5w- mail"},
    {"[Gmail]/All Mail", "[Gmail]/All Mail"},
};

static void test_to_imap(void **state)
{
    for (size_t i = 0; i < sizeof(utf7_cases) / sizeof(utf7_cases[0]); i++) {
        char out[256];
        assert_int_equal(mg_mbox_to_imap(utf7_cases[i].utf8, out, sizeof(out)), 0);
        assert_string_equal(out, utf7_cases[i].imap);
    }
}

static void test_from_imap(void **state)
{
    for (size_t i = 0; i < sizeof(utf7_cases) / sizeof(utf7_cases[0]); i++) {
        char out[256];
        assert_int_equal(mg_mbox_from_imap(utf7_cases[i].imap, out, sizeof(out)), 0);
        assert_string_equal(out, utf7_cases[i].utf8);
    }
    static const char *bad[] = {"&", "&AGE", "&ZZ!-", "&2D0-", "a\x01", "&AGEA-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[64];
        assert_int_equal(mg_mbox_from_imap(bad[i], out, sizeof(out)), -1);
    }
}

static void test_to_imap_rejects(void **state)
{
    char out[8];
    assert_int_equal(mg_mbox_to_imap("bad\xff", out, sizeof(out)), -1);
    assert_int_equal(mg_mbox_to_imap("much too long", out, sizeof(out)), -1);
}

static void test_to_path(void **state)
{
    static const struct {
        const char *name, *path;
    } cases[] = {
        {"INBOX", "INBOX"},
        {"Sent Items", "Sent Items"},
        {"..", "%2E."},
        {".", "%2E"},
        {".hidden", "%2Ehidden"},
        {"a/b", "a%2Fb"},
        {"../../etc", "%2E.%2F..%2Fetc"},
        {"back\\slash", "back%5Cslash"},
        {"50%", "50%25"},
        {"tab\there", "tab%09here"},
        {"", "%00"},
        {"Entw\xc3\xbcrfe", "Entw\xc3\xbcrfe"},
        {"bad\xff", "bad%FF"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[MG_MBOX_PATH_MAX + 1];
        assert_int_equal(mg_mbox_to_path(cases[i].name, out, sizeof(out)), 0);
        assert_string_equal(out, cases[i].path);
    }
}

static void test_to_path_long_names_stay_distinct(void **state)
{
    char a[1000], b[1000];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[900] = 'y';
    char pa[MG_MBOX_PATH_MAX + 1], pb[MG_MBOX_PATH_MAX + 1];
    mg_mbox_to_path(a, pa, sizeof(pa));
    mg_mbox_to_path(b, pb, sizeof(pb));
    assert_true(strlen(pa) <= MG_MBOX_PATH_MAX);
    assert_true(strcmp(pa, pb) != 0);
    assert_null(strchr(pa, '/'));
}

/* Directory names: case twins are kept apart, and a mailbox keeps the
 * directory it already has whatever new names appear beside it. */
static void test_dir_names_stable(void **state)
{
    (void)state;
    char dirs[4][MG_MBOX_DIR_MAX + 1];
    /* A first run with both: byte order decides, "WORK" < "Work". */
    const char *both[] = {"Work", "WORK"};
    assert_int_equal(mg_mbox_dir_names(both, 2, NULL, 0, dirs), 0);
    assert_string_equal(dirs[1], "WORK");
    assert_int_equal(strncmp(dirs[0], "Work~", 5), 0);
    char first_suffix[MG_MBOX_DIR_MAX + 1];
    snprintf(first_suffix, sizeof(first_suffix), "%s", dirs[0]);

    /* "Work" was backed up alone; then "WORK" appears: "Work" keeps its
     * directory, the newcomer takes the suffix. */
    const char *had[] = {"Work", "INBOX"};
    const char *now[] = {"WORK", "INBOX", "Work"};
    assert_int_equal(mg_mbox_dir_names(now, 3, had, 2, dirs), 0);
    assert_string_equal(dirs[2], "Work");
    assert_string_equal(dirs[1], "INBOX");
    assert_int_equal(strncmp(dirs[0], "WORK~", 5), 0);

    /* The first layout stays as it is on the next run. */
    const char *had2[] = {"WORK", first_suffix};
    assert_int_equal(mg_mbox_dir_names(both, 2, had2, 2, dirs), 0);
    assert_string_equal(dirs[0], first_suffix);
    assert_string_equal(dirs[1], "WORK");

    /* Unrelated existing directories change nothing; no suffix without a twin. */
    const char *other[] = {"Archive", "Sent%uidvalidity=7"};
    const char *one[] = {"Sent"};
    assert_int_equal(mg_mbox_dir_names(one, 1, other, 2, dirs), 0);
    assert_string_equal(dirs[0], "Sent");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_to_imap),
        cmocka_unit_test(test_from_imap),
        cmocka_unit_test(test_to_imap_rejects),
        cmocka_unit_test(test_to_path),
        cmocka_unit_test(test_to_path_long_names_stay_distinct),
        cmocka_unit_test(test_dir_names_stable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
