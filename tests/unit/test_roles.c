/* test_roles.c - OUTPUT/.mailgrab-roles: written, read back, damaged lines
 * skipped, generations of a mailbox directory keep its roles. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mailgrab/roles.h"
#include "mailgrab/source.h"

static void test_round_trip(void **state)
{
    (void)state;
    char dir[] = "/tmp/mg-roles-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);

    struct mg_roles r;
    mg_roles_init(&r);
    assert_int_equal(mg_roles_load(&r, dfd), 0); /* none yet */
    assert_int_equal(mg_roles_add(&r, "%5BGmail%5D%2FSent Mail", MG_ROLE_SENT), 0);
    assert_int_equal(mg_roles_add(&r, "%5BGmail%5D%2FAll Mail", MG_ROLE_ALL | MG_ROLE_ARCHIVE), 0);
    assert_int_equal(mg_roles_add(&r, "INBOX", 0), 0);               /* no role: no line */
    assert_int_equal(mg_roles_add(&r, "bad/name", MG_ROLE_SENT), 0); /* never a path */
    assert_int_equal(r.n, 2);
    const char *step = NULL;
    assert_int_equal(mg_roles_save(&r, dfd, &step), 0);
    mg_roles_finish(&r);

    struct stat st;
    assert_int_equal(fstatat(dfd, MG_ROLES_FILE, &st, 0), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    mg_roles_init(&r);
    assert_int_equal(mg_roles_load(&r, dfd), 1);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.skipped, 0);
    assert_int_equal(mg_roles_of(&r, "%5BGmail%5D%2FSent Mail"), MG_ROLE_SENT);
    assert_int_equal(mg_roles_of(&r, "%5BGmail%5D%2FSent Mail%uidvalidity=7"), MG_ROLE_SENT);
    assert_int_equal(mg_roles_of(&r, "%5BGmail%5D%2FSent Mail2"), 0);
    assert_int_equal(mg_roles_of(&r, "%5BGmail%5D%2FSent"), 0);
    assert_int_equal(mg_roles_of(&r, "%5BGmail%5D%2FAll Mail"), MG_ROLE_ALL | MG_ROLE_ARCHIVE);
    assert_int_equal(mg_roles_of(&r, "INBOX"), 0);
    mg_roles_finish(&r);

    assert_int_equal(unlinkat(dfd, MG_ROLES_FILE, 0), 0);
    close(dfd);
    assert_int_equal(rmdir(dir), 0);
}

static void test_damaged_lines(void **state)
{
    (void)state;
    static const char text[] = "\\Sent\tSent\n"
                               "no tab here\n"
                               "\\Nonsense\tOther\n"       /* no role we know */
                               "\\Sent\t\n"                /* no directory */
                               "\\sent \\Junk\tGesendet\n" /* case-insensitive, two roles */
                               "\\Trash\tTorn";            /* the last line lacks its newline */
    struct mg_roles r;
    mg_roles_init(&r);
    assert_int_equal(mg_roles_parse(&r, text, sizeof(text) - 1), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.skipped, 4);
    assert_int_equal(mg_roles_of(&r, "Sent"), MG_ROLE_SENT);
    assert_int_equal(mg_roles_of(&r, "Gesendet"), MG_ROLE_SENT | MG_ROLE_JUNK);
    assert_int_equal(mg_roles_of(&r, "Torn"), 0);
    mg_roles_finish(&r);
}

static void test_role_names(void **state)
{
    (void)state;
    assert_int_equal(mg_role_bit("\\Sent", 5), MG_ROLE_SENT);
    assert_int_equal(mg_role_bit("Sent", 4), MG_ROLE_SENT);
    assert_int_equal(mg_role_bit("\\IMPORTANT", 10), MG_ROLE_IMPORTANT);
    assert_int_equal(mg_role_bit("\\All", 4), MG_ROLE_ALL);
    assert_int_equal(mg_role_bit("\\Allx", 5), 0);
    assert_int_equal(mg_role_bit("\\Sen", 4), 0);
    assert_int_equal(mg_role_bit("\\", 1), 0);
    assert_int_equal(mg_role_bit("", 0), 0);
    assert_int_equal(mg_role_bit("\\HasNoChildren", 14), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damaged_lines),
        cmocka_unit_test(test_role_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
