/* Unit tests: mailbox names to IMAP (modified UTF-7) and to safe paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_to_imap),
        cmocka_unit_test(test_from_imap),
        cmocka_unit_test(test_to_imap_rejects),
        cmocka_unit_test(test_to_path),
        cmocka_unit_test(test_to_path_long_names_stay_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
