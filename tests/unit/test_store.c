/* Unit tests: the store's atomic batches, on a temporary directory. */
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
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "mailgrab/manifest.h"
#include "mailgrab/store.h"

/* Stands in for the C library's renameat2, so that a test can play a file
 * system without RENAME_NOREPLACE (an old kernel, some network file systems). */
static bool no_noreplace;

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
              unsigned int flags)
{
    if (no_noreplace && (flags & RENAME_NOREPLACE) != 0) {
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

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

/* A message without INTERNALDATE is named once, from when it arrived: the
 * name linked, recorded and reported is the same however long the commit
 * takes (it was computed again at each step, around a second boundary). */
struct seen_path {
    char path[512];
};

static void remember_path(void *ctx, uint32_t uid, const char *path)
{
    (void)uid;
    snprintf(((struct seen_path *)ctx)->path, sizeof(((struct seen_path *)ctx)->path), "%s", path);
}

static void test_maildir_name_fixed_once(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/md-nodate", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_MAILDIR, 7, &st, &newgen, &e), MG_OK);
    struct mg_batch *b;
    assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
    assert_int_equal(mg_batch_begin(b, &e), MG_OK);
    assert_int_equal(mg_batch_write(b, "x\r\n", 3, &e), MG_OK);
    time_t arrived = time(NULL);
    assert_int_equal(mg_batch_end(b, 5, (time_t)-1, "", &e), MG_OK);
    sleep(2); /* the commit comes seconds later */
    struct seen_path seen = {""};
    assert_int_equal(mg_batch_commit(b, remember_path, &seen, &e), MG_OK);
    struct stat sb;
    assert_int_equal(stat(seen.path, &sb), 0); /* the reported path is the file */
    const char *base = strrchr(seen.path, '/') + 1;
    long long t = atoll(base);
    assert_true(t >= (long long)arrived && t <= (long long)arrived + 1);
    mg_batch_destroy(b);
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

/* A server without UIDVALIDITY (0): every run matches UIDs in the base
 * directory; a later real UIDVALIDITY adopts it. It used to work once and
 * then fail on its own state file for ever. */
static void test_uidvalidity_unknown(void **state)
{
    struct mg_error e;
    char out[128], want[192];
    snprintf(out, sizeof(out), "%s/nouv", root);
    snprintf(want, sizeof(want), "%s/INBOX", out);
    struct mg_store *st;
    bool newgen;
    struct mg_batch *b;
    for (int run = 0; run < 3; run++) {
        assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 0, &st, &newgen, &e), MG_OK);
        assert_false(newgen);
        assert_string_equal(mg_store_dir(st), want);
        assert_int_equal(mg_store_count(st), run == 0 ? 0 : 1);
        if (run == 0) {
            assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
            put(b, 1, "one");
            assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
            mg_batch_destroy(b);
        }
        mg_store_close(st);
    }
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 9, &st, &newgen, &e), MG_OK);
    assert_false(newgen);
    assert_string_equal(mg_store_dir(st), want);
    assert_true(mg_store_has(st, 1));
    mg_store_close(st);
    /* Known, then unknown again: still the base directory, its record kept. */
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 0, &st, &newgen, &e), MG_OK);
    assert_string_equal(mg_store_dir(st), want);
    assert_true(mg_store_has(st, 1));
    mg_store_close(st);
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 9, &st, &newgen, &e), MG_OK);
    assert_false(newgen);
    mg_store_close(st);
}

static void write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void assert_text(const char *path, const char *text)
{
    char buf[256];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, text);
}

/* Files, links and hard links planted in OUTPUT: a mailbox in the way is
 * skipped alone (MG_E_PARTIAL, the path named), nothing outside changes. */
static void test_hostile_entries(void **state)
{
    struct mg_error e;
    char out[128], outside[128], p[256], q[256];
    snprintf(out, sizeof(out), "%s/hostile", root);
    snprintf(outside, sizeof(outside), "%s/elsewhere", root);
    assert_int_equal(mkdir(out, 0700), 0);
    assert_int_equal(mkdir(outside, 0700), 0);
    struct mg_store *st;
    bool newgen;

    snprintf(p, sizeof(p), "%s/INBOX", out);
    write_text(p, "a file, not a mailbox");
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 7, &st, &newgen, &e), MG_E_PARTIAL);
    assert_non_null(strstr(e.msg, p));
    assert_non_null(strstr(e.msg, "not a directory"));
    assert_text(p, "a file, not a mailbox");

    snprintf(p, sizeof(p), "%s/Sent", out);
    assert_int_equal(symlink(outside, p), 0);
    for (int f = 0; f < 2; f++) {
        enum mg_format fmt = f ? MG_FORMAT_MAILDIR : MG_FORMAT_EML;
        assert_int_equal(mg_store_open(out, "Sent", fmt, 7, &st, &newgen, &e), MG_E_PARTIAL);
        assert_non_null(strstr(e.msg, p));
        assert_int_equal(count_entries(outside, ""), 2); /* . and .. */
    }

    /* A Maildir whose cur/ is a link out of OUTPUT. */
    snprintf(p, sizeof(p), "%s/Drafts", out);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/Drafts/cur", out);
    assert_int_equal(symlink(outside, p), 0);
    assert_int_equal(mg_store_open(out, "Drafts", MG_FORMAT_MAILDIR, 7, &st, &newgen, &e),
                     MG_E_PARTIAL);
    assert_int_equal(count_entries(outside, ""), 2);

    /* Hard links to a file elsewhere where mailgrab writes its records:
     * records go to fresh files renamed into place, never through a link. */
    snprintf(q, sizeof(q), "%s/victim", outside);
    write_text(q, "precious\n");
    snprintf(p, sizeof(p), "%s/box", out);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/box/" MG_TMP_PREFIX "state", out);
    assert_int_equal(link(q, p), 0);
    assert_int_equal(mg_store_open(out, "box", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    mg_store_close(st);
    assert_text(q, "precious\n");
    snprintf(p, sizeof(p), "%s/box/.mailgrab-state", out);
    assert_text(p, "uidvalidity=42\n");

    snprintf(p, sizeof(p), "%s/.mailgrab.lock", out);
    assert_int_equal(link(q, p), 0);
    int fd = -1;
    assert_int_equal(mg_store_lock(out, &fd, &e), MG_OK);
    close(fd);
    assert_text(q, "precious\n");

    struct mg_store_owner who = {"home", "imap.example", "alice"};
    snprintf(p, sizeof(p), "%s/.mailgrab-account", out);
    assert_int_equal(symlink(q, p), 0);
    assert_int_equal(mg_store_claim(out, &who, &e), MG_E_OWNER);
    assert_non_null(strstr(e.msg, ".mailgrab-account"));
    assert_int_equal(unlink(p), 0);
    assert_int_equal(link(q, p), 0);
    assert_int_equal(mg_store_claim(out, &who, &e), MG_E_OWNER); /* not a record of ours */
    assert_int_equal(unlink(p), 0);
    assert_int_equal(mg_store_claim(out, &who, &e), MG_OK);
    assert_text(q, "precious\n");
    assert_int_equal(count_entries(outside, ""), 3);
}

static void box_with(const char *out, const char *box, uint32_t uid)
{
    struct mg_error e;
    struct mg_store *st;
    bool newgen;
    struct mg_batch *b;
    assert_int_equal(mg_store_open(out, box, MG_FORMAT_EML, 5, &st, &newgen, &e), MG_OK);
    assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
    put(b, uid, "message");
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    mg_batch_destroy(b);
    mg_store_close(st);
}

static ino_t inode(const char *out, const char *rel)
{
    char p[256];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", out, rel);
    assert_int_equal(stat(p, &sb), 0);
    return sb.st_ino;
}

static bool exists(const char *out, const char *rel)
{
    char p[256];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", out, rel);
    return lstat(p, &sb) == 0;
}

/* One account per directory: another is refused; several sharing an output
 * each get a directory, and a backup kept in the output moves (renamed,
 * same inodes) into its account's. */
/* A run killed while it recorded a Maildir's UIDVALIDITY leaves that record's
 * temp file beside cur/ and tmp/; one killed mid-message, a temp file in
 * tmp/. The next open removes both. */
static void test_maildir_stale_temps(void **state)
{
    struct mg_error e;
    char out[128], p[512];
    snprintf(out, sizeof(out), "%s/md-stale", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_MAILDIR, 7, &st, &newgen, &e), MG_OK);
    snprintf(p, sizeof(p), "%s/" MG_TMP_PREFIX "mailgrab-state-99999-0", mg_store_dir(st));
    write_text(p, "uidvalidity=7\n");
    snprintf(p, sizeof(p), "%s/tmp/" MG_TMP_PREFIX "99999-0-0", mg_store_dir(st));
    write_text(p, "half a message");
    mg_store_close(st);
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_MAILDIR, 7, &st, &newgen, &e), MG_OK);
    assert_int_equal(count_entries(mg_store_dir(st), MG_TMP_PREFIX), 0);
    snprintf(p, sizeof(p), "%s/tmp", mg_store_dir(st));
    assert_int_equal(count_entries(p, MG_TMP_PREFIX), 0);
    snprintf(p, sizeof(p), "%s/.mailgrab-state", mg_store_dir(st));
    assert_text(p, "uidvalidity=7\n");
    mg_store_close(st);
}

static void test_owners_and_shared_outputs(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/owned", root);
    struct mg_store_owner alice = {"home", "IMAP.example", "alice"};
    struct mg_store_owner alice2 = {"renamed", "imap.example", "alice"};
    struct mg_store_owner bob = {"work", "imap.example", "bob"};
    box_with(out, "INBOX", 3);
    box_with(out, "INBOX%uidvalidity=9", 4);
    char p[256];
    snprintf(p, sizeof(p), "%s/" MG_TMP_PREFIX "mailgrab-account-1-0", out);
    write_text(p, "a record a killed run left unnamed");
    assert_int_equal(mg_store_claim(out, &alice, &e), MG_OK);
    assert_int_equal(count_entries(out, MG_TMP_PREFIX), 0);
    assert_int_equal(mg_store_claim(out, &alice2, &e), MG_OK); /* server case, section name */
    assert_int_equal(mg_store_claim(out, &bob, &e), MG_E_OWNER);
    assert_non_null(strstr(e.msg, "user alice on IMAP.example"));
    ino_t ino = inode(out, "INBOX/3.eml");

    /* Shared now: bob, first in the file, must not take alice's backup. */
    assert_int_equal(mg_store_claim_shared(out, "work", &bob, true, &e), MG_E_OWNER);
    assert_non_null(strstr(e.msg, "--account home"));
    assert_false(exists(out, "work"));
    assert_int_equal(mg_store_claim_shared(out, "home", &alice, false, &e), MG_OK);
    assert_int_equal(inode(out, "home/INBOX/3.eml"), ino);
    assert_true(exists(out, "home/INBOX%uidvalidity=9/4.eml"));
    assert_false(exists(out, "INBOX"));
    assert_int_equal(mg_store_claim_shared(out, "work", &bob, false, &e), MG_OK);
    assert_int_equal(mg_store_claim_shared(out, "home", &alice, false, &e), MG_OK);
    assert_int_equal(inode(out, "home/INBOX/3.eml"), ino);
    assert_int_equal(mg_store_claim_shared(out, "home", &bob, false, &e), MG_E_OWNER);
    assert_int_equal(mg_store_claim(out, &alice, &e), MG_E_OWNER); /* the shared top */
    char sub[192];
    snprintf(sub, sizeof(sub), "%s/work", out);
    assert_int_equal(mg_store_claim(sub, &bob, &e), MG_OK);

    /* An account's directory that is a link out of OUTPUT is refused. */
    char outside[192];
    snprintf(outside, sizeof(outside), "%s/not-output", root);
    assert_int_equal(mkdir(outside, 0700), 0);
    snprintf(p, sizeof(p), "%s/evil", out);
    assert_int_equal(symlink(outside, p), 0);
    assert_int_equal(mg_store_claim_shared(out, "evil", &bob, false, &e), MG_E_OWNER);
    assert_non_null(strstr(e.msg, "not a directory"));
    assert_int_equal(count_entries(outside, ""), 2);

    /* A backup without any record: only the first sharing account takes it. */
    snprintf(out, sizeof(out), "%s/legacy", root);
    box_with(out, "INBOX", 8);
    ino = inode(out, "INBOX/8.eml");
    assert_int_equal(mg_store_claim_shared(out, "b", &bob, false, &e), MG_E_OWNER);
    assert_int_equal(mg_store_claim_shared(out, "a", &alice, true, &e), MG_OK);
    assert_int_equal(inode(out, "a/INBOX/8.eml"), ino);
    assert_int_equal(mg_store_claim_shared(out, "b", &bob, false, &e), MG_OK);

    /* A move cut short by kill -9 is finished by whichever account runs. */
    snprintf(out, sizeof(out), "%s/killed", root);
    box_with(out, "INBOX", 2);
    box_with(out, "Sent", 6);
    snprintf(p, sizeof(p), "%s/" MG_TMP_PREFIX "move-home", out);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/" MG_TMP_PREFIX "move-home/Sent", out);
    char from[256];
    snprintf(from, sizeof(from), "%s/Sent", out);
    assert_int_equal(rename(from, p), 0);
    assert_int_equal(mg_store_claim_shared(out, "work", &bob, false, &e), MG_OK);
    assert_true(exists(out, "home/INBOX/2.eml"));
    assert_true(exists(out, "home/Sent/6.eml"));
    assert_false(exists(out, MG_TMP_PREFIX "move-home"));
    assert_int_equal(mg_store_claim_shared(out, "home", &alice, false, &e), MG_OK);
}

/* Nothing stored under the old UIDVALIDITY (a server that gives an empty
 * mailbox a new one each session): the new value is taken in place. */
static void test_empty_generation_takes_new_uidvalidity(void **state)
{
    static const enum mg_format formats[] = {MG_FORMAT_EML, MG_FORMAT_MAILDIR};
    for (size_t f = 0; f < 2; f++) {
        struct mg_error e;
        char out[128], base[256], p[320];
        snprintf(out, sizeof(out), "%s/churn%zu", root, f);
        snprintf(base, sizeof(base), "%s/Empty", out);
        struct mg_store *st;
        bool newgen;
        for (uint32_t uv = 5; uv <= 7; uv++) {
            assert_int_equal(mg_store_open(out, "Empty", formats[f], uv, &st, &newgen, &e), MG_OK);
            assert_false(newgen);
            assert_string_equal(mg_store_dir(st), base);
            mg_store_close(st);
        }
        snprintf(p, sizeof(p), "%s/.mailgrab-state", base);
        FILE *fp = fopen(p, "r");
        assert_non_null(fp);
        char line[64] = "";
        assert_non_null(fgets(line, sizeof(line), fp));
        fclose(fp);
        assert_string_equal(line, "uidvalidity=7\n");

        /* Once something is stored, a change is a new generation again. */
        assert_int_equal(mg_store_open(out, "Empty", formats[f], 7, &st, &newgen, &e), MG_OK);
        struct mg_batch *b;
        assert_int_equal(mg_batch_create(st, 0, 256, &b, &e), MG_OK);
        put(b, 1, "kept");
        assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
        mg_batch_destroy(b);
        mg_store_close(st);
        assert_int_equal(mg_store_open(out, "Empty", formats[f], 8, &st, &newgen, &e), MG_OK);
        assert_true(newgen);
        snprintf(p, sizeof(p), "%s%%uidvalidity=8", base);
        assert_string_equal(mg_store_dir(st), p);
        mg_store_close(st);
    }
}

/* Without RENAME_NOREPLACE, naming a message must still never replace a file
 * stored under that name. */
static void test_rename_fallback_never_replaces(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/out-norepl", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "box", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    struct mg_batch *b;
    /* max_open 0: named temp files, renamed at commit */
    assert_int_equal(mg_batch_create(st, 0, 0, &b, &e), MG_OK);
    char p[256];
    snprintf(p, sizeof(p), "%s/5.eml", mg_store_dir(st));
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("ORIGINAL", f);
    fclose(f);
    no_noreplace = true;
    put(b, 5, "replacement");
    put(b, 6, "new");
    enum mg_code rc = mg_batch_commit(b, NULL, NULL, &e);
    no_noreplace = false;
    assert_int_equal(rc, MG_OK);
    char buf[32] = {0};
    f = fopen(p, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "ORIGINAL");
    snprintf(p, sizeof(p), "%s/6.eml", mg_store_dir(st));
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_size, 3);
    assert_int_equal(count_entries(mg_store_dir(st), MG_TMP_PREFIX), 0);
    mg_batch_destroy(b);
    mg_store_close(st);
}

struct got {
    uint32_t uid[8];
    uint64_t size[8];
    char sha[8][2 * MG_SHA256_LEN + 1];
    char origin[8];
    char name[8][128];
    size_t n;
};

static void got_entry(void *ctx, const struct mg_manifest_entry *x)
{
    struct got *g = ctx;
    if (g->n == 8)
        return;
    g->uid[g->n] = x->uid;
    g->size[g->n] = x->size;
    for (size_t i = 0; i < MG_SHA256_LEN; i++)
        snprintf(g->sha[g->n] + 2 * i, 3, "%02x", x->sha256[i]);
    g->origin[g->n] = x->origin;
    snprintf(g->name[g->n], sizeof(g->name[0]), "%.*s", (int)x->name_len, x->name);
    g->n++;
}

static void read_manifest(const char *dir, struct got *g, struct mg_manifest_reader *r)
{
    memset(g, 0, sizeof(*g));
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    mg_manifest_reader_init(r, got_entry, g);
    bool exists;
    struct mg_error e;
    assert_int_equal(mg_manifest_read(fd, dir, r, &exists, &e), MG_OK);
    assert_true(exists);
    close(fd);
}

#define SHA_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_XYZ "3608bca1e44ea6c4d268eb6db02260269892c0b42b86bbf1e77a6fa16c3c9282"

/* Each committed message is in the manifest with the sum of the bytes
 * written, under its name; a message never committed is not. */
static void test_manifest_at_commit(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/out-man", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_MAILDIR, 42, &st, &newgen, &e), MG_OK);
    struct mg_batch *b;
    assert_int_equal(mg_batch_create(st, 0, 1, &b, &e), MG_OK); /* unnamed, then named */
    assert_int_equal(mg_batch_begin(b, &e), MG_OK);
    assert_int_equal(mg_batch_write(b, "a", 1, &e), MG_OK);
    assert_int_equal(mg_batch_write(b, "bc", 2, &e), MG_OK);
    assert_int_equal(mg_batch_end(b, 7, 1000000000, "S", &e), MG_OK);
    put(b, 9, "");
    assert_int_equal(mg_batch_begin(b, &e), MG_OK); /* dropped: never recorded */
    assert_int_equal(mg_batch_write(b, "lost", 4, &e), MG_OK);
    mg_batch_drop_current(b);
    struct got g;
    struct mg_manifest_reader r;
    read_manifest(mg_store_dir(st), &g, &r);
    assert_int_equal(g.n, 0); /* nothing before commit */
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    read_manifest(mg_store_dir(st), &g, &r);
    assert_int_equal(g.n, 2);
    assert_int_equal(r.damaged, 0);
    assert_false(r.torn);
    assert_int_equal(g.uid[0], 7);
    assert_int_equal(g.size[0], 3);
    assert_string_equal(g.sha[0], SHA_ABC);
    assert_int_equal(g.origin[0], 's');
    assert_string_equal(g.name[0], "cur/1000000000.U7V42.mailgrab,U=7:2,S");
    assert_int_equal(g.uid[1], 9);
    assert_int_equal(g.size[1], 0);
    assert_string_equal(g.sha[1], SHA_EMPTY);
    char p[256];
    snprintf(p, sizeof(p), "%s/" MG_MANIFEST_FILE, mg_store_dir(st));
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    mg_batch_destroy(b);
    mg_store_close(st);
}

/* The next run after a crash: a torn last line is cut, stored files the
 * manifest lacks are recorded (read once), and nothing recorded is lost. */
static void test_manifest_recovered_on_open(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/out-rec", root);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    struct mg_batch *b;
    assert_int_equal(mg_batch_create(st, 0, 4, &b, &e), MG_OK);
    put(b, 3, "abc");
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    mg_batch_destroy(b);
    char dir[256], p[300];
    snprintf(dir, sizeof(dir), "%s", mg_store_dir(st));
    mg_store_close(st);
    /* killed mid-append, and before recording 12.eml at all */
    snprintf(p, sizeof(p), "%s/" MG_MANIFEST_FILE, dir);
    FILE *f = fopen(p, "a");
    assert_non_null(f);
    fputs("12 3 3608bca1e4", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/12.eml", dir);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs("xyz", f);
    fclose(f);

    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    struct got g;
    struct mg_manifest_reader r;
    read_manifest(dir, &g, &r);
    assert_false(r.torn);
    assert_int_equal(r.damaged, 0);
    assert_int_equal(g.n, 2);
    assert_int_equal(g.uid[0], 3);
    assert_int_equal(g.origin[0], 's');
    assert_int_equal(g.uid[1], 12);
    assert_int_equal(g.origin[1], 'r');
    assert_string_equal(g.sha[1], SHA_XYZ);
    assert_string_equal(g.name[1], "12.eml");
    /* and appends go on after it */
    assert_int_equal(mg_batch_create(st, 0, 4, &b, &e), MG_OK);
    put(b, 20, "");
    assert_int_equal(mg_batch_commit(b, NULL, NULL, &e), MG_OK);
    mg_batch_destroy(b);
    mg_store_close(st);
    read_manifest(dir, &g, &r);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.uid[2], 20);
    assert_int_equal(r.damaged, 0);
    /* A damaged line is dropped by rewriting the manifest into a fresh file,
     * and its message recorded again from its file. */
    snprintf(p, sizeof(p), "%s/" MG_MANIFEST_FILE, dir);
    char text[2048] = {0};
    f = fopen(p, "r");
    assert_non_null(f);
    size_t len = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    char *twelve = strstr(text, "\n12 ");
    assert_non_null(twelve);
    memcpy(twelve + 1, "12 3 zz", 7); /* the size and sum garbled */
    f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    read_manifest(dir, &g, &r);
    assert_int_equal(r.damaged, 1);
    struct stat before, after;
    assert_int_equal(stat(p, &before), 0);
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    mg_store_close(st);
    read_manifest(dir, &g, &r);
    assert_int_equal(r.damaged, 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.uid[0], 3);
    assert_int_equal(g.uid[1], 20);
    assert_int_equal(g.uid[2], 12);
    assert_int_equal(g.origin[2], 'r');
    assert_string_equal(g.sha[2], SHA_XYZ);
    assert_int_equal(stat(p, &after), 0);
    assert_true(after.st_ino != before.st_ino);
    assert_int_equal(count_entries(dir, MG_TMP_PREFIX), 0);
    /* A clean reopen records nothing twice. */
    assert_int_equal(mg_store_open(out, "INBOX", MG_FORMAT_EML, 42, &st, &newgen, &e), MG_OK);
    mg_store_close(st);
    read_manifest(dir, &g, &r);
    assert_int_equal(g.n, 3);
}

/* The mark a complete run leaves, read back as the next run sees it: a
 * Gmail run's says so; any other run's mark (an older mailgrab's, a
 * single-mailbox run's) does not, and then every Gmail folder is listed. */
static void test_mark_round_trip(void **state)
{
    struct mg_error e;
    char out[128];
    snprintf(out, sizeof(out), "%s/mark", root);
    uint32_t uv = 1;
    struct mg_store_mark m = {.uidnext = 9};
    assert_int_equal(mg_store_peek(out, "All", &uv, &m), 0); /* nothing there */
    assert_int_equal(uv, 0);
    assert_int_equal(m.uidnext, 0);
    struct mg_store *st;
    bool newgen;
    assert_int_equal(mg_store_open(out, "All", MG_FORMAT_EML, 77, &st, &newgen, &e), MG_OK);
    assert_int_equal(mg_store_peek(out, "All", &uv, &m), 1); /* no mark yet */
    assert_int_equal(uv, 77);
    assert_int_equal(m.uidnext, 0);
    assert_false(mg_store_marked(out, "All"));
    struct mg_store_mark gm = {41, 40, 1234567890123ull, 1700000000, true};
    assert_int_equal(mg_store_set_mark(st, &gm, &e), MG_OK);
    mg_store_close(st);
    assert_int_equal(mg_store_peek(out, "All", &uv, &m), 1);
    assert_int_equal(uv, 77);
    assert_int_equal(m.uidnext, 41);
    assert_int_equal(m.stored, 40);
    assert_true(m.modseq == 1234567890123ull);
    assert_int_equal(m.flags_at, 1700000000);
    assert_true(m.gmail);
    assert_true(mg_store_marked(out, "All"));
    assert_int_equal(mg_store_open(out, "All", MG_FORMAT_EML, 77, &st, &newgen, &e), MG_OK);
    mg_store_get_mark(st, &m);
    assert_true(m.gmail);
    struct mg_store_mark other = {42, 41, 1234567890124ull, 1700000001, false};
    assert_int_equal(mg_store_set_mark(st, &other, &e), MG_OK);
    mg_store_close(st);
    assert_int_equal(mg_store_peek(out, "All", &uv, &m), 1);
    assert_int_equal(m.uidnext, 42);
    assert_false(m.gmail);
    /* Under another UIDVALIDITY the mark is not the new generation's. */
    assert_int_equal(mg_store_open(out, "All", MG_FORMAT_EML, 78, &st, &newgen, &e), MG_OK);
    mg_store_get_mark(st, &m);
    assert_int_equal(m.uidnext, 0);
    assert_false(m.gmail);
    mg_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_is_atomic_and_private),
        cmocka_unit_test(test_discard_and_stale_temps),
        cmocka_unit_test(test_maildir_stale_temps),
        cmocka_unit_test(test_existing_file_is_kept),
        cmocka_unit_test(test_lock_is_exclusive),
        cmocka_unit_test(test_lock_creates_missing_parents),
        cmocka_unit_test(test_descriptor_budget),
        cmocka_unit_test(test_maildir_layout),
        cmocka_unit_test(test_maildir_name_fixed_once),
        cmocka_unit_test(test_uidvalidity_generations),
        cmocka_unit_test(test_uidvalidity_unknown),
        cmocka_unit_test(test_hostile_entries),
        cmocka_unit_test(test_owners_and_shared_outputs),
        cmocka_unit_test(test_empty_generation_takes_new_uidvalidity),
        cmocka_unit_test(test_rename_fallback_never_replaces),
        cmocka_unit_test(test_manifest_at_commit),
        cmocka_unit_test(test_manifest_recovered_on_open),
        cmocka_unit_test(test_mark_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
