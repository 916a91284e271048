/* Unit tests: the mailbox a backup directory name restores into. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/mboxname.h"
#include "mailgrab/restore.h"

/* Whatever mg_mbox_to_path made of a name comes back as that name. */
static void test_path_names_come_back(void **state)
{
    (void)state;
    static const char *const names[] = {
        "INBOX",
        "Work/Projects",
        "50% off",
        "a\\b",
        "Ty\xc3\xb6 \xc3\xbcn\xc3\xaf"
        "code",
        "Work.Projects",
        "INBOX%uidvalidity=1 (a folder so named)",
        "%2F",
        "tab\there",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[MG_MBOX_PATH_MAX + 1], back[1024];
        assert_int_equal(mg_mbox_to_path(names[i], path, sizeof(path)), 0);
        assert_int_equal(mg_restore_box_name(path, back, sizeof(back)), 0);
        assert_string_equal(back, names[i]);
    }
}

static void test_generations_go_into_their_mailbox(void **state)
{
    (void)state;
    static const struct {
        const char *dir, *name;
    } cases[] = {
        {"INBOX%uidvalidity=7", "INBOX"},
        {"Work%2FProjects%uidvalidity=1764000000", "Work/Projects"},
        {"Work", "Work"},
        {"%zz%", "%zz%"}, /* not an escape: kept */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];
        assert_int_equal(mg_restore_box_name(cases[i].dir, out, sizeof(out)), 0);
        assert_string_equal(out, cases[i].name);
    }
    char small[4];
    assert_int_equal(mg_restore_box_name("INBOX", small, sizeof(small)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_names_come_back),
        cmocka_unit_test(test_generations_go_into_their_mailbox),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
