/* Unit tests: the store's atomic batches, on a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mailgrab/store.h"

static char root[64];

static int setup(void **state)
{
    snprintf(root, sizeof(root), "/tmp/mg-store-XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static size_t count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static void put(struct mg_batch *b, uint32_t uid, const char *text)
{
    struct mg_error e;
    assert_int_equal(mg_batch_begin(b, &e), MG_OK);
    assert_int_equal(mg_batch_write(b, text, strlen(text), &e), MG_OK);
    assert_int_equal(mg_batch_end(b, uid, 1000000000, "S", &e), MG_OK);
}

static void test_commit_is_atomic_and_private(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/out", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    struct mg_batch *b;
    assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
    put(b, 7, "Subject: a\r\n\r\nbody\r\n");
    put(b, 9, "");
    /* Before commit nothing has a final name; the messages are unnamed
     * files (or, without O_TMPFILE, hidden temp files). */
    assert_int_equal(count_entries(mg_store_dir(st), "7.eml"), 0);
    assert_int_equal(count_entries(mg_store_dir(st), "9.eml"), 0);
    size_t temps = count_entries(mg_store_dir(st), MG_TMP_PREFIX);
    assert_true(temps == 0 || temps == 2);
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    assert_int_equal(count_entries(mg_store_dir(st), MG_TMP_PREFIX), 0);

    char p[256];
    snprintf(p, sizeof(p), "%s/7.eml", mg_store_dir(st));
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, 20);
    assert_int_equal(sb.st_mtime, 1000000000);
    assert_int_equal(stat(mg_store_dir(st), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(p, sizeof(p), "%s/9.eml", mg_store_dir(st));
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_size, 0);
    mg_batch_destroy(b);
    mg_store_close(st);

    /* Reopening sees both as stored. */
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    assert_true(mg_store_has(st, 7));
    assert_true(mg_store_has(st, 9));
    assert_false(mg_store_has(st, 8));
    assert_int_equal(mg_store_count(st), 2);
    mg_store_close(st);
}

static void test_discard_and_stale_temps(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/out2", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "box", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    struct mg_batch *b;
    assert_int_equal(mg_batch_create(st, 3, 256, &b, &e), MG_OK);
    put(b, 1, "x");
    assert_int_equal(mg_batch_begin(b, &e), MG_OK); /* a message cut off mid-way */
    mg_batch_discard(b);
    assert_int_equal(count_entries(mg_store_dir(st), MG_TMP_PREFIX), 0);
    assert_int_equal(count_entries(mg_store_dir(st), "1.eml"), 0);
    /* A temp file left by a killed run is removed on the next open. */
    put(b, 2, "y");
    mg_batch_destroy(b); /* discards too */
    char p[256];
    snprintf(p, sizeof(p), "%s/" MG_TMP_PREFIX "99-0-0", mg_store_dir(st));
    int fd = open(p, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    mg_store_close(st);
    assert_int_equal(mg_store_open(out, "box", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    assert_int_equal(count_entries(mg_store_dir(st), MG_TMP_PREFIX), 0);
    mg_store_close(st);
}

static void test_existing_file_is_kept(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/out3", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "box", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    struct mg_batch *b;
    assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
    put(b, 5, "first");
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    put(b, 5, "second copy");
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    char p[256];
    snprintf(p, sizeof(p), "%s/5.eml", mg_store_dir(st));
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_size, 5);
    assert_int_equal(count_entries(mg_store_dir(st), MG_TMP_PREFIX), 0);
    mg_batch_destroy(b);
    mg_store_close(st);
}

static void test_lock_is_exclusive(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/locked", root);
    int fd1 = -1, fd2 = -1;
    assert_int_equal(mg_store_lock(out, &fd1, &e), MG_OK);
    /* flock locks belong to the open file description: a second open
     * in the same process conflicts just as another process would. */
    assert_int_equal(mg_store_lock(out, &fd2, &e), MG_E_LOCKED);
    assert_non_null(strstr(e.msg, "another mailgrab run"));
    close(fd1);
    assert_int_equal(mg_store_lock(out, &fd2, &e), MG_OK);
    close(fd2);
}

static void test_lock_creates_missing_parents(void **state)
{
    struct mg_error e;
    char out[160], p[160];
    snprintf(out, sizeof(out), "%s/a//b/c/", root);
    int fd = -1;
    assert_int_equal(mg_store_lock(out, &fd, &e), MG_OK);
    close(fd);
    static const char *const made[] = {"a", "a/b", "a/b/c"};
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
        struct stat sb;
        snprintf(p, sizeof(p), "%s/%s", root, made[i]);
        assert_int_equal(stat(p, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
        assert_int_equal(sb.st_mode & 0777, 0700);
    }
    /* A file in the way is named, not silently passed. */
    snprintf(p, sizeof(p), "%s/a/file", root);
    int f = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(f >= 0);
    close(f);
    snprintf(out, sizeof(out), "%s/a/file/d", root);
    assert_int_equal(mg_store_lock(out, &fd, &e), MG_E_IO);
    assert_non_null(strstr(e.msg, "a/file"));
}

static void test_descriptor_budget(void **state)
{
    /* With no descriptors to spare, messages go through named temp files
     * and still commit; nothing is left behind. */
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/budget", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "box", MG_FORMAT_EML, 1, &st, &newgen, &e), MG_OK);
    struct mg_batch *b;
    assert_int_equal(mg_batch_create(st, 0, 1, &b, &e), MG_OK);
    put(b, 1, "one");
    put(b, 2, "two");
    put(b, 3, "three");
    assert_true(count_entries(mg_store_dir(st), MG_TMP_PREFIX) >= 2); /* over budget: named */
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    assert_int_equal(count_entries(mg_store_dir(st), MG_TMP_PREFIX), 0);
    put(b, 4, "four");
    put(b, 5, "five");
    mg_batch_discard(b);
    assert_int_equal(count_entries(mg_store_dir(st), MG_TMP_PREFIX), 0);
    mg_batch_destroy(b);
    mg_store_close(st);
    assert_int_equal(mg_store_open(out, "box", MG_FORMAT_EML, 1, &st, &newgen, &e), MG_OK);
    assert_int_equal(mg_store_count(st), 3);
    mg_store_close(st);
}

static void test_maildir_layout(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/md", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_MAILDIR, 7, &st, &newgen, &e), MG_OK);
    assert_false(newgen);
    struct mg_batch *b;
    assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
    assert_int_equal(mg_batch_begin(b, &e), MG_OK);
    assert_int_equal(mg_batch_write(b, "x\r\n", 3, &e), MG_OK);
    assert_int_equal(mg_batch_end(b, 12, 1700000000, "FS", &e), MG_OK);
    char tmpdir[256], curdir[256];
    snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", mg_store_dir(st));
    snprintf(curdir, sizeof(curdir), "%s/cur", mg_store_dir(st));
    assert_int_equal(count_entries(curdir, "1700000000"), 0); /* not named before commit */
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    assert_int_equal(count_entries(tmpdir, MG_TMP_PREFIX), 0);
    char cur[256], p[512];
    snprintf(cur, sizeof(cur), "%s/cur", mg_store_dir(st));
    snprintf(p, sizeof(p), "%s/1700000000.U12V7.mailgrab,U=12:2,FS", cur);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(p, sizeof(p), "%s/new", mg_store_dir(st));
    assert_int_equal(stat(p, &sb), 0);
    mg_batch_destroy(b);
    mg_store_close(st);
    /* The UID is found again from the name, whatever the flags became. */
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_MAILDIR, 7, &st, &newgen, &e), MG_OK);
    assert_true(mg_store_has(st, 12));
    assert_false(mg_store_has(st, 1));
    mg_store_close(st);
}

static void test_uidvalidity_generations(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/gen", root);
    struct mg_store *st;
    bool newgen;
    struct mg_batch *b;
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 100, &st, &newgen, &e), MG_OK);
    assert_false(newgen);
    assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
    put(b, 1, "old one");
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    mg_batch_destroy(b);
    mg_store_close(st);

    /* The server renumbered: a new generation beside the old, which stays. */
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 200, &st, &newgen, &e), MG_OK);
    assert_true(newgen);
    char want[256];
    snprintf(want, sizeof(want), "%s/INBOX%%uidvalidity=200", out);
    assert_string_equal(mg_store_dir(st), want);
    assert_false(mg_store_has(st, 1));
    assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
    put(b, 1, "new one");
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    mg_batch_destroy(b);
    mg_store_close(st);
    char p[256];
    snprintf(p, sizeof(p), "%s/INBOX/1.eml", out);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_size, 7); /* "old one" untouched */

    /* The same new generation again: not new any more. */
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 200, &st, &newgen, &e), MG_OK);
    assert_false(newgen);
    assert_true(mg_store_has(st, 1));
    mg_store_close(st);
    /* And the old UIDVALIDITY maps back to the base directory. */
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 100, &st, &newgen, &e), MG_OK);
    snprintf(want, sizeof(want), "%s/INBOX", out);
    assert_string_equal(mg_store_dir(st), want);
    mg_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_is_atomic_and_private),
        cmocka_unit_test(test_discard_and_stale_temps),
        cmocka_unit_test(test_existing_file_is_kept),
        cmocka_unit_test(test_lock_is_exclusive),
        cmocka_unit_test(test_lock_creates_missing_parents),
        cmocka_unit_test(test_descriptor_budget),
        cmocka_unit_test(test_maildir_layout),
        cmocka_unit_test(test_uidvalidity_generations),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
