/* test_fsutil.c - files replaced whole (never written through a planted
 * link), reads up to a maximum, and mkdir -p */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "mailgrab/fsutil.h"

static char root[] = "/tmp/mg-test-fsutil-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(root) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static size_t read_back(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

static size_t temps_in(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, MG_TMP_PREFIX, strlen(MG_TMP_PREFIX)) == 0;
    closedir(d);
    return n;
}

static void test_replace_whole_and_private(void **state)
{
    (void)state;
    char path[256], buf[64];
    snprintf(path, sizeof(path), "%s/state", root);
    const char *step = NULL;
    assert_int_equal(mg_replace_file(path, "one\n", 4, &step), 0);
    assert_int_equal(mg_replace_file(path, "two!\n", 5, &step), 0);
    assert_int_equal(read_back(path, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "two!\n");
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(temps_in(root), 0);
}

/* A hard link or symlink planted where the file goes is replaced, and the
 * file it pointed to is left alone. */
static void test_planted_links_not_written_through(void **state)
{
    (void)state;
    char outside[256], hard[256], soft[256], buf[64];
    snprintf(outside, sizeof(outside), "%s/outside", root);
    snprintf(hard, sizeof(hard), "%s/hard", root);
    snprintf(soft, sizeof(soft), "%s/soft", root);
    FILE *f = fopen(outside, "w");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    assert_int_equal(link(outside, hard), 0);
    assert_int_equal(symlink(outside, soft), 0);
    const char *step;
    assert_int_equal(mg_replace_file(hard, "mine", 4, &step), 0);
    assert_int_equal(mg_replace_file(soft, "mine", 4, &step), 0);
    read_back(outside, buf, sizeof(buf));
    assert_string_equal(buf, "precious");
    struct stat sb;
    assert_int_equal(lstat(soft, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(stat(outside, &sb), 0);
    assert_int_equal(sb.st_nlink, 1);
}

static void test_failure_leaves_no_temp(void **state)
{
    (void)state;
    char dir[256], path[256];
    snprintf(dir, sizeof(dir), "%s/ro", root);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/ro/x/y", root); /* its directory does not exist */
    const char *step = NULL;
    assert_int_equal(mg_replace_file(path, "z", 1, &step), ENOENT);
    assert_string_equal(step, "create");
    /* A name that is a directory cannot be replaced by a file. */
    char sub[256];
    snprintf(sub, sizeof(sub), "%s/ro/sub", root);
    assert_int_equal(mkdir(sub, 0700), 0);
    int e = mg_replace_file(sub, "z", 1, &step);
    assert_true(e == EISDIR || e == ENOTEMPTY || e == EEXIST);
    assert_string_equal(step, "rename");
    assert_int_equal(temps_in(dir), 0);
}

static void test_read_upto(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* Two writes: a pipe gives them back in two reads, which must add up. */
    assert_int_equal(mg_write_all(p[1], "hello ", 6), 0);
    assert_int_equal(mg_write_all(p[1], "world", 5), 0);
    close(p[1]);
    char buf[8];
    size_t len = 99;
    assert_int_equal(mg_read_upto(p[0], buf, sizeof(buf), &len), 0);
    assert_int_equal(len, sizeof(buf)); /* stops at max */
    assert_memory_equal(buf, "hello wo", 8);
    assert_int_equal(mg_read_upto(p[0], buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 3); /* then the rest, to end of file */
    assert_memory_equal(buf, "rld", 3);
    close(p[0]);
    assert_int_equal(mg_read_upto(-1, buf, sizeof(buf), &len), EBADF);
    assert_int_equal(len, 0);
}

static void test_mkdirs(void **state)
{
    (void)state;
    char deep[256], file[256];
    snprintf(deep, sizeof(deep), "%s/a/b//c/", root);
    assert_int_equal(mg_mkdirs(deep, 0700), 0);
    assert_int_equal(mg_mkdirs(deep, 0700), 0); /* again: nothing to do */
    struct stat sb;
    snprintf(deep, sizeof(deep), "%s/a/b/c", root);
    assert_int_equal(stat(deep, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(file, sizeof(file), "%s/a/file", root);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(deep, sizeof(deep), "%s/a/file/d", root);
    assert_int_equal(mg_mkdirs(deep, 0700), ENOTDIR);
    snprintf(deep, sizeof(deep), "%s/p/q/summary.json", root);
    assert_int_equal(mg_mkdirs_parent(deep, 0700), 0);
    snprintf(deep, sizeof(deep), "%s/p/q", root);
    assert_int_equal(stat(deep, &sb), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replace_whole_and_private),
        cmocka_unit_test(test_planted_links_not_written_through),
        cmocka_unit_test(test_failure_leaves_no_temp),
        cmocka_unit_test(test_read_upto),
        cmocka_unit_test(test_mkdirs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
