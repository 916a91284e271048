/* store.c - see include/mailgrab/store.h */
#include "mailgrab/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <unistd.h>

#include "mailgrab/cancel.h"
#include "mailgrab/log.h"
#include "mailgrab/manifest.h"

#define WRITE_BUF (256 * 1024)

#define STATE_FILE ".mailgrab-state"
#define LOCK_FILE ".mailgrab.lock"
#define OWNER_FILE ".mailgrab-account"
#define MOVE_PREFIX MG_TMP_PREFIX "move-"

struct mg_store {
    enum mg_format format;
    uint32_t uidvalidity;
    int dirfd;              /* the mailbox directory */
    int tmpfd;              /* where temp files go: dirfd, or tmp/ for Maildir */
    int curfd;              /* where final names go: dirfd, or cur/ for Maildir */
    atomic_bool tmpfile_ok; /* O_TMPFILE and /proc/self/fd work here */
    char dir[PATH_MAX];
    uint32_t *have; /* sorted UIDs already stored */
    size_t nhave;
    size_t cap;
    struct mg_manifest_log *manifest; /* NULL: checksums are not recorded this run */
    atomic_bool manifest_warned;
    struct stored_name *names; /* uid -> file name, sorted; built on first need */
    size_t nnames;
    atomic_bool names_loaded;  /* cleared by every change of names */
    struct mg_store_mark mark; /* from the state file, as opened */
};

struct stored_name {
    uint32_t uid;
    char name[MG_MANIFEST_NAME_MAX + 1]; /* relative to the mailbox directory */
};

/* A message written but not yet named. Normally an unnamed O_TMPFILE inode
 * kept open (fd); where the file system cannot do that, a hidden temp file
 * (tmp) to be renamed. */
struct pending {
    uint32_t uid;
    time_t mtime;
    time_t named; /* the time in a Maildir name: INTERNALDATE, or arrival */
    char flags[8];
    int fd;
    char tmp[64];
    uint64_t size;
    unsigned char sha256[MG_SHA256_LEN];
};

struct mg_batch {
    struct mg_store *st;
    unsigned worker;
    long pid;
    unsigned long seq;
    size_t max_open, nopen; /* unnamed files held open until commit */
    /* current message */
    int fd;
    char tmp[64];
    char *buf;
    size_t buflen;
    struct mg_sha256 *sha; /* of the bytes written so far */
    uint64_t size;
    /* ended messages waiting for commit */
    struct pending *v;
    size_t n, cap;
};

static enum mg_code io_error(struct mg_error *err, const char *what, const char *path, int e)
{
    if (e == ENOSPC || e == EDQUOT)
        return mg_error_set(err, MG_E_IO,
                            "disk full: cannot %s %s: free some space and run again (messages "
                            "already stored are kept)",
                            what, path);
    return mg_error_set(err, MG_E_IO, "cannot %s %s: %s", what, path, strerror(e));
}

/* mkdir -p (fsutil.h), 0700: a cron line naming ~/backups/mail works on a
 * home without ~/backups. */
static enum mg_code make_dirs(const char *path, struct mg_error *err)
{
    int e = mg_mkdirs(path, 0700);
    if (e == ENOTDIR)
        return mg_error_set(err, MG_E_IO,
                            "%s (or a directory above it) exists and is not a "
                            "directory",
                            path);
    if (e == ENAMETOOLONG)
        return mg_error_set(err, MG_E_USAGE, "output path too long: %s", path);
    return e != 0 ? io_error(err, "create directory", path, e) : MG_OK;
}

enum mg_code mg_store_lock(const char *output, int *fd, struct mg_error *err)
{
    enum mg_code rc = make_dirs(output, err);
    if (rc != MG_OK)
        return rc;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/" LOCK_FILE, output) >= (int)sizeof(path))
        return mg_error_set(err, MG_E_USAGE, "output path too long: %s", output);
    /* Read-only, and never through a symbolic link or into a FIFO: a lock is
     * never written, so a link planted here cannot carry a write elsewhere. */
    int lfd = open(path, O_RDONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0)
        return io_error(err, "open lock file", path, errno);
    struct stat sb;
    if (fstat(lfd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(lfd);
        return mg_error_set(err, MG_E_IO, "%s is not a regular file: remove it and run again",
                            path);
    }
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(lfd);
        if (e == EWOULDBLOCK)
            return mg_error_set(err, MG_E_LOCKED,
                                "another mailgrab run is writing to %s; this run exits (try again "
                                "when it has finished)",
                                output);
        return io_error(err, "lock", path, e);
    }
    *fd = lfd;
    return MG_OK;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Digits at p up to a non-digit -> value; 0 if none or out of range. */
static uint32_t parse_uid(const char *p, const char **end)
{
    unsigned long v = 0;
    if (*p < '1' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > UINT32_MAX)
            return 0;
        p++;
    }
    *end = p;
    return (uint32_t)v;
}

/* The UID a stored file's name carries; 0 if it is no message of ours.
 * eml: "<uid>.eml". Maildir: ",U=<uid>" before the ":2," info. */
static uint32_t name_uid(enum mg_format f, const char *name)
{
    const char *end;
    if (f == MG_FORMAT_EML) {
        uint32_t uid = parse_uid(name, &end);
        return uid != 0 && strcmp(end, ".eml") == 0 ? uid : 0;
    }
    const char *u = strstr(name, ",U=");
    if (u == NULL)
        return 0;
    uint32_t uid = parse_uid(u + 3, &end);
    return uid != 0 && (*end == ',' || *end == ':' || *end == '\0') ? uid : 0;
}

static enum mg_code remember(struct mg_store *st, uint32_t uid, struct mg_error *err)
{
    if (st->nhave == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 1024;
        uint32_t *v = reallocarray(st->have, cap, sizeof(*v));
        if (v == NULL)
            return mg_error_set(err, MG_E_INTERNAL, "out of memory");
        st->have = v;
        st->cap = cap;
    }
    st->have[st->nhave++] = uid;
    return MG_OK;
}

/* Read one directory: remove our stale temp files, note stored UIDs. */
static enum mg_code scan_dir(struct mg_store *st, int dirfd, bool collect, struct mg_error *err)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return io_error(err, "read directory", st->dir, errno);
    }
    rewinddir(d); /* a dup shares the offset of a directory already read */
    enum mg_code rc = MG_OK;
    struct dirent *de;
    while (rc == MG_OK && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, MG_TMP_PREFIX, strlen(MG_TMP_PREFIX)) == 0) {
            /* Left by a run that died: never a stored message. */
            if (unlinkat(dirfd, de->d_name, 0) == 0)
                mg_debug("removed stale temp file %s/%s", st->dir, de->d_name);
            continue;
        }
        uint32_t uid = collect ? name_uid(st->format, de->d_name) : 0;
        if (uid != 0)
            rc = remember(st, uid, err);
    }
    closedir(d);
    return rc;
}

static enum mg_code scan(struct mg_store *st, struct mg_error *err)
{
    enum mg_code rc;
    if (st->format == MG_FORMAT_EML) {
        rc = scan_dir(st, st->dirfd, true, err);
    } else {
        /* The mailbox directory itself holds the temp files of its records
         * (a run killed while writing its state); tmp/ those of messages. */
        rc = scan_dir(st, st->dirfd, false, err);
        if (rc == MG_OK)
            rc = scan_dir(st, st->tmpfd, false, err);
        if (rc == MG_OK)
            rc = scan_dir(st, st->curfd, true, err);
        int newfd = openat(st->dirfd, "new", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (rc == MG_OK && newfd >= 0)
            rc = scan_dir(st, newfd, true, err);
        if (newfd >= 0)
            close(newfd);
    }
    if (rc == MG_OK && st->nhave > 1)
        qsort(st->have, st->nhave, sizeof(*st->have), cmp_u32);
    return rc;
}

enum mg_format mg_store_format(const struct mg_store *st)
{
    return st->format;
}

/* Read the small regular file dirfd/name into buf (NUL-terminated).
 * 1 read, 0 absent, -1 error: errno EINVAL for anything but a regular file
 * (a symbolic link, a directory, a FIFO is never followed or read). */
static int read_small(int dirfd, const char *name, char *buf, size_t cap)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENXIO)
            errno = EINVAL;
        return errno == ENOENT ? 0 : -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    ssize_t n = read(fd, buf, cap - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return -1;
    }
    buf[n] = '\0';
    return 1;
}

/* Write text as dirfd/name: into a fresh temp file (created here, so never
 * a link to a file elsewhere), flushed, then renamed over name and the
 * directory flushed. An existing name is replaced, never written into. */
static enum mg_code replace_file(int dirfd, const char *dirpath, const char *name, const char *text,
                                 struct mg_error *err)
{
    const char *step = "write";
    int e = mg_replace_at(dirfd, name, text, strlen(text), &step);
    if (e == 0)
        return MG_OK;
    return io_error(err,
                    strcmp(step, "create") == 0  ? "create a file in"
                    : strcmp(step, "flush") == 0 ? "flush"
                                                 : "write a file in",
                    dirpath, e);
}

/* The UIDVALIDITY recorded in a mailbox directory: 0 none, 1 read, -1 error
 * (errno EINVAL: not a regular file; EBADMSG: not ours). */
static int read_state(int dirfd, uint32_t *uv)
{
    char buf[256];
    int r = read_small(dirfd, STATE_FILE, buf, sizeof(buf));
    if (r <= 0)
        return r;
    const char *p = strstr(buf, "uidvalidity=");
    const char *end;
    if (p == NULL || (*uv = parse_uid(p + strlen("uidvalidity="), &end)) == 0) {
        errno = EBADMSG;
        return -1;
    }
    return 1;
}

/* The mark of the last complete run in the state file, if any: every
 * message below uidnext was stored, stored of them in all. A line that is
 * not a number reads as no mark (the next run lists everything). */
static void read_mark(int dirfd, struct mg_store_mark *m)
{
    char buf[256];
    memset(m, 0, sizeof(*m));
    if (read_small(dirfd, STATE_FILE, buf, sizeof(buf)) != 1)
        return;
    const char *u = strstr(buf, "\nuidnext="), *n = strstr(buf, "\nstored=");
    if (u == NULL || n == NULL)
        return;
    char *end;
    errno = 0;
    unsigned long long uidnext = strtoull(u + strlen("\nuidnext="), &end, 10);
    if (errno != 0 || *end != '\n' || uidnext == 0 || uidnext > UINT32_MAX)
        return;
    unsigned long long stored = strtoull(n + strlen("\nstored="), &end, 10);
    if (errno != 0 || *end != '\n')
        return;
    m->uidnext = (uint32_t)uidnext;
    m->stored = stored;
    const char *q = strstr(buf, "\nmodseq=");
    if (q != NULL) {
        unsigned long long modseq = strtoull(q + strlen("\nmodseq="), &end, 10);
        if (errno == 0 && *end == '\n')
            m->modseq = modseq;
    }
    q = strstr(buf, "\nflags_at=");
    if (q != NULL) {
        long long at = strtoll(q + strlen("\nflags_at="), &end, 10);
        if (errno == 0 && *end == '\n' && at >= 0)
            m->flags_at = (time_t)at;
    }
    m->gmail = strstr(buf, "\ngmail=1\n") != NULL;
}

/* Record uidvalidity in the mailbox directory, atomically and durably,
 * before any message of that generation is stored. */
static enum mg_code write_state(struct mg_store *st, struct mg_error *err)
{
    char text[64];
    snprintf(text, sizeof(text), "uidvalidity=%u\n", st->uidvalidity);
    return replace_file(st->dirfd, st->dir, STATE_FILE, text, err);
}

/* The first entry of dirfd that match() accepts, in out; false if none. */
static bool find_entry(int dirfd, bool (*match)(int dirfd, const char *name), char *out, size_t cap)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    rewinddir(d); /* a dup shares the offset of a directory already read */
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL)
        if (match(dirfd, de->d_name) && strlen(de->d_name) < cap) {
            snprintf(out, cap, "%s", de->d_name);
            found = true;
        }
    closedir(d);
    return found;
}

static bool is_message_name(int dirfd, const char *name)
{
    (void)dirfd;
    return name_uid(MG_FORMAT_EML, name) != 0 || strcmp(name, "cur") == 0;
}

/* Open directory dirfd/name, creating it (0700, made durable) if asked.
 * Never follows a symbolic link: one planted there fails with ELOOP or
 * ENOTDIR, as does a file in the way. Returns the fd, or -1 with errno. */
static int open_dir_at(int dirfd, const char *name, bool create)
{
    if (create) {
        if (mkdirat(dirfd, name, 0700) == 0)
            fsync(dirfd);
        else if (errno != EEXIST)
            return -1;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ELOOP)
        errno = ENOTDIR;
    return fd;
}

static bool is_eml_name(int dirfd, const char *name)
{
    (void)dirfd;
    return name_uid(MG_FORMAT_EML, name) != 0;
}

static bool is_maildir_name(int dirfd, const char *name)
{
    (void)dirfd;
    return name_uid(MG_FORMAT_MAILDIR, name) != 0;
}

/* Does the mailbox directory dirfd hold a stored message: an .eml, or a
 * Maildir file in cur/ or new/? (An empty Maildir has cur/ all the same.) */
static bool holds_messages(int dirfd)
{
    char any[NAME_MAX + 1];
    if (find_entry(dirfd, is_eml_name, any, sizeof(any)))
        return true;
    static const char *const subs[] = {"cur", "new"};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        int fd = open_dir_at(dirfd, subs[i], false);
        bool found = fd >= 0 && find_entry(fd, is_maildir_name, any, sizeof(any));
        if (fd >= 0)
            close(fd);
        if (found)
            return true;
    }
    return false;
}

/* Something other than a directory of ours where one should be: this
 * mailbox is skipped, the others go on (exit 1). */
static enum mg_code in_the_way(struct mg_error *err, const char *path, int e)
{
    if (e == ENOTDIR)
        return mg_error_set(err, MG_E_PARTIAL,
                            "%s is not a directory (a file or symbolic link is in its place): "
                            "move it away and run again; this mailbox is not backed up",
                            path);
    if (e == EINVAL)
        return mg_error_set(err, MG_E_PARTIAL,
                            "%s/" STATE_FILE " is not a regular file: remove it and run again; "
                            "this mailbox is not backed up",
                            path);
    return mg_error_set(err, MG_E_PARTIAL,
                        "cannot read %s/" STATE_FILE ": restore it or move the directory away; "
                        "this mailbox is not backed up",
                        path);
}

/* --- whose backup a directory holds (OWNER_FILE) --------------------------- */

enum owner_kind { OWNER_NONE, OWNER_ACCOUNT, OWNER_SHARED };

struct owner {
    enum owner_kind kind;
    char account[256], server[256], user[256];
};

/* v as one line of an owner record: control bytes become '?'. */
static void clean(const char *v, char *out, size_t cap)
{
    size_t n = 0;
    for (; v != NULL && *v != '\0' && n + 1 < cap; v++)
        out[n++] = (unsigned char)*v < 0x20 || *v == 0x7f ? '?' : *v;
    out[n] = '\0';
}

/* The value of "key=" at the start of a line of text; false if none. */
static bool field(const char *text, const char *key, char *out, size_t cap)
{
    size_t k = strlen(key);
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *line = p;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
        if (strncmp(line, key, k) != 0 || line[k] != '=')
            continue;
        const char *v = line + k + 1;
        size_t n = strcspn(v, "\n");
        if (n >= cap)
            n = cap - 1;
        memcpy(out, v, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

/* 0 read (kind OWNER_NONE if there is no record), -1 error with errno. */
static int read_owner(int dirfd, struct owner *o)
{
    char buf[2048], yes[8];
    memset(o, 0, sizeof(*o));
    int r = read_small(dirfd, OWNER_FILE, buf, sizeof(buf));
    if (r <= 0)
        return r;
    if (field(buf, "shared", yes, sizeof(yes)) && strcmp(yes, "yes") == 0) {
        o->kind = OWNER_SHARED;
        return 0;
    }
    if (!field(buf, "server", o->server, sizeof(o->server)) ||
        !field(buf, "user", o->user, sizeof(o->user))) {
        errno = EBADMSG;
        return -1;
    }
    field(buf, "account", o->account, sizeof(o->account));
    o->kind = OWNER_ACCOUNT;
    return 0;
}

static bool owner_is(const struct owner *o, const struct mg_store_owner *who)
{
    char s[256], u[256];
    clean(who->server, s, sizeof(s));
    clean(who->user, u, sizeof(u));
    return strcasecmp(o->server, s) == 0 && strcmp(o->user, u) == 0;
}

static enum mg_code write_owner(int dirfd, const char *path, const struct mg_store_owner *who,
                                struct mg_error *err)
{
    char a[256], s[256], u[256], text[1024];
    clean(who->account, a, sizeof(a));
    clean(who->server, s, sizeof(s));
    clean(who->user, u, sizeof(u));
    snprintf(text, sizeof(text),
             "# mailgrab: the backup of one account; another account is refused here\n"
             "account=%s\nserver=%s\nuser=%s\n",
             a, s, u);
    return replace_file(dirfd, path, OWNER_FILE, text, err);
}

static enum mg_code write_shared(int dirfd, const char *path, struct mg_error *err)
{
    return replace_file(dirfd, path, OWNER_FILE,
                        "# mailgrab: several accounts, one directory each below\nshared=yes\n",
                        err);
}

static enum mg_code bad_owner_file(const char *path, struct mg_error *err)
{
    return mg_error_set(err, MG_E_OWNER,
                        "%s/" OWNER_FILE " is not a record of mailgrab's: remove it if this "
                        "directory is this account's backup, and run again",
                        path);
}

#define OWNER_TMP MG_TMP_PREFIX "mailgrab-account-" /* replace_file's temp names */

static bool is_owner_tmp(int dirfd, const char *name)
{
    (void)dirfd;
    return strncmp(name, OWNER_TMP, strlen(OWNER_TMP)) == 0;
}

/* Remove owner records a killed run left unnamed (the directory is locked). */
static void remove_owner_tmps(int dirfd)
{
    char name[NAME_MAX + 1];
    while (find_entry(dirfd, is_owner_tmp, name, sizeof(name)))
        if (unlinkat(dirfd, name, 0) != 0)
            break;
}

/* dirfd (path) is to hold who's backup: recorded if nothing is yet. */
static enum mg_code claim_at(int dirfd, const char *path, const struct mg_store_owner *who,
                             struct mg_error *err)
{
    remove_owner_tmps(dirfd);
    struct owner o;
    if (read_owner(dirfd, &o) != 0)
        return bad_owner_file(path, err);
    if (o.kind == OWNER_SHARED)
        return mg_error_set(err, MG_E_OWNER,
                            "%s keeps several accounts, one directory each: give this account "
                            "its own output, or the same output as the others in the config file",
                            path);
    if (o.kind == OWNER_ACCOUNT && !owner_is(&o, who))
        return mg_error_set(err, MG_E_OWNER,
                            "%s holds the backup of user %s on %s; this account (user %s on %s) "
                            "is not mixed into it: give it an output of its own",
                            path, o.user, o.server, who->user, who->server);
    if (o.kind == OWNER_ACCOUNT)
        return MG_OK;
    return write_owner(dirfd, path, who, err);
}

enum mg_code mg_store_claim(const char *output, const struct mg_store_owner *who,
                            struct mg_error *err)
{
    int fd = open(output, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_error(err, "open directory", output, errno);
    enum mg_code rc = claim_at(fd, output, who, err);
    close(fd);
    return rc;
}

/* Is name in dirfd a mailbox directory of ours (it has a state file)? */
static bool is_mailbox_dir(int dirfd, const char *name)
{
    if (name[0] == '.')
        return false; /* ours, never a mailbox: mailbox names never start with '.' */
    int fd = open_dir_at(dirfd, name, false);
    if (fd < 0)
        return false;
    bool yes = faccessat(fd, STATE_FILE, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    close(fd);
    return yes;
}

static bool is_move_dir(int dirfd, const char *name)
{
    (void)dirfd;
    return strncmp(name, MOVE_PREFIX, strlen(MOVE_PREFIX)) == 0 && name[strlen(MOVE_PREFIX)];
}

/* Finish every move begun in the shared directory pfd (path): each mailbox
 * directory left in it goes into the move's directory, which then takes
 * its final name. Renames only, so nothing is copied or fetched again, and
 * a run killed half-way finishes the move the next time. */
static enum mg_code finish_moves(int pfd, const char *path, struct mg_error *err)
{
    char move[NAME_MAX + 1], box[NAME_MAX + 1];
    while (find_entry(pfd, is_move_dir, move, sizeof(move))) {
        int tfd = open_dir_at(pfd, move, false);
        if (tfd < 0)
            return io_error(err, "open directory in", path, errno);
        enum mg_code rc = MG_OK;
        while (rc == MG_OK && find_entry(pfd, is_mailbox_dir, box, sizeof(box)))
            if (renameat2(pfd, box, tfd, box, RENAME_NOREPLACE) != 0)
                rc =
                    mg_error_set(err, MG_E_IO, "cannot move %s/%s into %s/%s: %s; move it yourself",
                                 path, box, path, move, strerror(errno));
        if (rc == MG_OK && fsync(tfd) != 0)
            rc = io_error(err, "flush", path, errno);
        close(tfd);
        if (rc != MG_OK)
            return rc;
        const char *to = move + strlen(MOVE_PREFIX);
        if (renameat2(pfd, move, pfd, to, RENAME_NOREPLACE) != 0)
            return mg_error_set(err, MG_E_IO, "cannot name %s/%s %s: %s; move it yourself", path,
                                move, to, strerror(errno));
        if (fsync(pfd) != 0)
            return io_error(err, "flush", path, errno);
        mg_info("the backup kept directly in %s is now in %s/%s", path, path, to);
    }
    return MG_OK;
}

/* Begin moving what pfd holds of one account into pfd/component: a move
 * directory takes the owner record, then pfd is marked shared. */
static enum mg_code begin_move(int pfd, const char *path, const char *component,
                               struct mg_error *err)
{
    char move[NAME_MAX + 1];
    if (snprintf(move, sizeof(move), MOVE_PREFIX "%s", component) >= (int)sizeof(move))
        return mg_error_set(err, MG_E_USAGE, "account name too long: %s", component);
    int tfd = open_dir_at(pfd, move, true);
    if (tfd < 0)
        return io_error(err, "create a directory in", path, errno);
    int moved = renameat(pfd, OWNER_FILE, tfd, OWNER_FILE);
    int e = errno;
    if (moved == 0)
        fsync(tfd);
    close(tfd);
    if (moved != 0 && e != ENOENT)
        return io_error(err, "move a file in", path, e);
    return write_shared(pfd, path, err);
}

enum mg_code mg_store_claim_shared(const char *output, const char *component,
                                   const struct mg_store_owner *who, bool adopt_unowned,
                                   struct mg_error *err)
{
    char sub[PATH_MAX], box[NAME_MAX + 1];
    if (snprintf(sub, sizeof(sub), "%s/%s", output, component) >= (int)sizeof(sub))
        return mg_error_set(err, MG_E_USAGE, "output path too long: %s", output);
    int pfd = open(output, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return io_error(err, "open directory", output, errno);
    struct owner o;
    enum mg_code rc = MG_OK;
    remove_owner_tmps(pfd);
    if (find_entry(pfd, is_move_dir, box, sizeof(box))) { /* a move a killed run began */
        rc = read_owner(pfd, &o) == 0 && o.kind == OWNER_SHARED ? MG_OK
                                                                : write_shared(pfd, output, err);
        if (rc == MG_OK)
            rc = finish_moves(pfd, output, err);
    }
    if (rc == MG_OK && read_owner(pfd, &o) != 0)
        rc = bad_owner_file(output, err);
    if (rc != MG_OK)
        goto out;
    if (o.kind == OWNER_ACCOUNT && owner_is(&o, who)) {
        rc = begin_move(pfd, output, component, err);
    } else if (o.kind == OWNER_ACCOUNT) {
        rc = mg_error_set(err, MG_E_OWNER,
                          "%s still holds the backup of user %s on %s (account %s) directly; it "
                          "moves to a directory of its own when that account runs: run it first "
                          "(--account %s), or move it yourself",
                          output, o.user, o.server, o.account, o.account);
    } else if (o.kind == OWNER_NONE && find_entry(pfd, is_mailbox_dir, box, sizeof(box))) {
        /* A backup from before accounts had directories of their own. */
        if (adopt_unowned)
            rc = begin_move(pfd, output, component, err);
        else
            rc = mg_error_set(err, MG_E_OWNER,
                              "%s holds a backup with no record of its account; the first "
                              "account of the config file sharing this output takes it over: "
                              "run that one first, or move it yourself",
                              output);
    } else if (o.kind == OWNER_NONE) {
        rc = write_shared(pfd, output, err);
    }
    if (rc == MG_OK)
        rc = finish_moves(pfd, output, err);
    if (rc != MG_OK)
        goto out;
    int fd = open_dir_at(pfd, component, true);
    if (fd < 0) {
        rc = errno == ENOTDIR
                 ? mg_error_set(err, MG_E_OWNER,
                                "%s is not a directory (a file or symbolic link is in its "
                                "place): move it away and run again",
                                sub)
                 : io_error(err, "create directory", sub, errno);
        goto out;
    }
    rc = claim_at(fd, sub, who, err);
    close(fd);
out:
    close(pfd);
    return rc;
}

/* Record what the manifest lacks, reading each such file once: messages
 * named by a run killed before it recorded them, and backups older than
 * manifests. name_prefix is "" for eml, "cur/" or "new/" for Maildir. */
static void record_dir(struct mg_store *st, int dirfd, const char *prefix)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    enum { GROUP = 256 };
    struct mg_manifest_entry *v = calloc(GROUP, sizeof(*v));
    char(*names)[MG_MANIFEST_NAME_MAX + 1] = calloc(GROUP, sizeof(*names));
    size_t n = 0, total = 0;
    rewinddir(d); /* the descriptor may have been read before */
    struct dirent *de;
    struct mg_error err;
    /* A signal stops the reading: the next run records the rest. */
    while (v != NULL && names != NULL && !mg_cancelled() && (de = readdir(d)) != NULL) {
        uint32_t uid = name_uid(st->format, de->d_name);
        if (uid == 0 || mg_manifest_log_has(st->manifest, uid))
            continue;
        struct mg_manifest_entry *e = &v[n];
        if (mg_manifest_hash_file(dirfd, de->d_name, &e->size, e->sha256, &err) != MG_OK) {
            mg_warn("%s: %s; its checksum is not recorded", st->dir, err.msg);
            continue;
        }
        int len = snprintf(names[n], sizeof(names[n]), "%s%s", prefix, de->d_name);
        if (len <= 0 || (size_t)len >= sizeof(names[n]))
            continue;
        e->uid = uid;
        e->origin = 'r';
        e->name = names[n];
        e->name_len = (size_t)len;
        if (++n < GROUP)
            continue;
        if (mg_manifest_log_append(st->manifest, v, n, &err) != MG_OK)
            break;
        total += n;
        n = 0;
    }
    if (n > 0 && mg_manifest_log_append(st->manifest, v, n, &err) == MG_OK)
        total += n;
    else if (n > 0)
        mg_warn("%s; the next run tries again", err.msg);
    if (total > 0)
        mg_info("%s: recorded the checksums of %zu stored message%s the manifest lacked", st->dir,
                total, total == 1 ? "" : "s");
    free(v);
    free(names);
    closedir(d);
}

/* Open the mailbox's manifest for this run's entries. Without one the
 * backup still goes on: the next run records what this one could not. */
static void open_manifest(struct mg_store *st)
{
    struct mg_error err;
    if (mg_manifest_log_open(st->dirfd, st->dir, &st->manifest, &err) != MG_OK) {
        mg_warn("%s; checksums are not recorded this run", err.msg);
        st->manifest = NULL;
        return;
    }
    bool missing = false;
    for (size_t i = 0; i < st->nhave && !missing; i++)
        missing = !mg_manifest_log_has(st->manifest, st->have[i]);
    if (!missing)
        return;
    if (st->format == MG_FORMAT_EML) {
        record_dir(st, st->dirfd, "");
        return;
    }
    record_dir(st, st->curfd, "cur/");
    int newfd = openat(st->dirfd, "new", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (newfd >= 0) {
        record_dir(st, newfd, "new/");
        close(newfd);
    }
}

enum mg_code mg_store_open(const char *output, const char *component, enum mg_format format,
                           uint32_t uidvalidity, struct mg_store **out, bool *new_generation,
                           struct mg_error *err)
{
    *new_generation = false;
    struct mg_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    st->format = format;
    st->uidvalidity = uidvalidity;
    st->dirfd = st->tmpfd = st->curfd = -1;
    int outfd = -1, basefd = -1;
    char base[PATH_MAX - 64]; /* room for a generation suffix in st->dir */
    char gen[NAME_MAX + 32];
    enum mg_code rc = make_dirs(output, err);
    if (rc != MG_OK)
        goto err_close;
    if (snprintf(base, sizeof(base), "%s/%s", output, component) >= (int)sizeof(base) ||
        snprintf(gen, sizeof(gen), "%s%%uidvalidity=%u", component, uidvalidity) >=
            (int)sizeof(gen)) {
        rc = mg_error_set(err, MG_E_USAGE, "output path too long: %s", output);
        goto err_close;
    }
    /* Everything below OUTPUT is reached through directory descriptors
     * without following symbolic links: nothing planted in OUTPUT can send a
     * write outside it. */
    outfd = open(output, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (outfd < 0) {
        rc = io_error(err, "open directory", output, errno);
        goto err_close;
    }

    /* Which generation: the base directory if it holds this UIDVALIDITY
     * (or nothing yet), else one named after the new UIDVALIDITY. A server
     * that gives no UIDVALIDITY (0) cannot say it renumbered: its messages
     * are matched by UID alone, in the base directory. */
    basefd = open_dir_at(outfd, component, false);
    if (basefd < 0 && errno != ENOENT) {
        rc = errno == ENOTDIR ? in_the_way(err, base, errno)
                              : io_error(err, "open directory", base, errno);
        goto err_close;
    }
    uint32_t old = 0;
    int r = basefd >= 0 ? read_state(basefd, &old) : 0;
    if (r < 0) {
        rc = in_the_way(err, base, errno);
        goto err_close;
    }
    const char *name = component;
    char any[NAME_MAX + 1];
    if (uidvalidity == 0) {
        mg_warn("%s: the server gives no UIDVALIDITY; messages are matched by UID alone, so a "
                "renumbered mailbox cannot be told apart",
                base);
    } else if (r == 1 && old != uidvalidity && !holds_messages(basefd)) {
        /* Nothing stored under the old UIDVALIDITY: nothing to keep apart.
         * GNU imap4d gives an empty mbox a new one in every session. */
        mg_info("%s: nothing stored under UIDVALIDITY %u; taking the server's %u", base, old,
                uidvalidity);
    } else if (r == 1 && old != uidvalidity) {
        name = gen;
    } else if (r == 0 && basefd >= 0 && find_entry(basefd, is_message_name, any, sizeof(any))) {
        mg_info("%s has messages but no record of their UIDVALIDITY; taking it as %u", base,
                uidvalidity);
    }
    snprintf(st->dir, sizeof(st->dir), "%s/%s", output, name);
    if (name == gen) {
        int genfd = open_dir_at(outfd, gen, false);
        uint32_t cur = 0;
        *new_generation = genfd < 0 || read_state(genfd, &cur) != 1;
        if (genfd >= 0)
            close(genfd);
        st->dirfd = open_dir_at(outfd, gen, true);
    } else {
        st->dirfd = basefd >= 0 ? basefd : open_dir_at(outfd, component, true);
        basefd = -1;
    }
    if (st->dirfd < 0) {
        rc = errno == ENOTDIR ? in_the_way(err, st->dir, errno)
                              : io_error(err, "create directory", st->dir, errno);
        goto err_close;
    }
    if (format == MG_FORMAT_MAILDIR) {
        int newfd = open_dir_at(st->dirfd, "new", true);
        int e = errno;
        st->curfd = open_dir_at(st->dirfd, "cur", true);
        if (st->curfd < 0)
            e = errno;
        st->tmpfd = open_dir_at(st->dirfd, "tmp", true);
        if (st->tmpfd < 0)
            e = errno;
        if (newfd >= 0)
            close(newfd);
        if (newfd < 0 || st->curfd < 0 || st->tmpfd < 0) {
            rc = e == ENOTDIR ? in_the_way(err, st->dir, e)
                              : io_error(err, "create maildir folders in", st->dir, e);
            goto err_close;
        }
    } else {
        st->curfd = dup(st->dirfd);
        st->tmpfd = dup(st->dirfd);
        if (st->curfd < 0 || st->tmpfd < 0) {
            rc = io_error(err, "open directory", st->dir, errno);
            goto err_close;
        }
    }
    uint32_t have_uv = 0;
    r = read_state(st->dirfd, &have_uv);
    if (r < 0 && errno == EINVAL) {
        rc = in_the_way(err, st->dir, errno);
        goto err_close;
    }
    if (uidvalidity != 0 && (r != 1 || have_uv != uidvalidity)) {
        rc = write_state(st, err);
        if (rc != MG_OK)
            goto err_close;
    }
    rc = scan(st, err);
    if (rc != MG_OK)
        goto err_close;
    if (uidvalidity != 0 && r == 1 && have_uv == uidvalidity)
        read_mark(st->dirfd, &st->mark);
    open_manifest(st);
    atomic_store(&st->tmpfile_ok, access("/proc/self/fd", X_OK) == 0);
    close(outfd);
    *out = st;
    return MG_OK;

err_close:
    if (basefd >= 0)
        close(basefd);
    if (outfd >= 0)
        close(outfd);
    mg_store_close(st);
    return rc;
}

void mg_store_close(struct mg_store *st)
{
    if (st == NULL)
        return;
    if (st->dirfd >= 0)
        close(st->dirfd);
    if (st->tmpfd >= 0)
        close(st->tmpfd);
    if (st->curfd >= 0)
        close(st->curfd);
    mg_manifest_log_close(st->manifest);
    free(st->have);
    free(st->names);
    free(st);
}

bool mg_store_has(const struct mg_store *st, uint32_t uid)
{
    return st->nhave > 0 && bsearch(&uid, st->have, st->nhave, sizeof(*st->have), cmp_u32) != NULL;
}

size_t mg_store_count(const struct mg_store *st)
{
    return st->nhave;
}

const char *mg_store_dir(const struct mg_store *st)
{
    return st->dir;
}

/* Final name of a message in this store's layout. */
static void final_name(const struct mg_store *st, const struct pending *m, char *buf, size_t cap)
{
    if (st->format == MG_FORMAT_EML) {
        snprintf(buf, cap, "%u.eml", m->uid);
        return;
    }
    /* Unique without a counter: a UID names one message per UIDVALIDITY. */
    snprintf(buf, cap, "%lld.U%uV%u.mailgrab,U=%u:2,%s", (long long)m->named, m->uid,
             st->uidvalidity, m->uid, m->flags);
}

enum mg_code mg_batch_create(struct mg_store *st, unsigned worker, size_t max_open,
                             struct mg_batch **out, struct mg_error *err)
{
    struct mg_batch *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->buf = malloc(WRITE_BUF)) == NULL) {
        free(b);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    enum mg_code rc = mg_sha256_create(&b->sha, err);
    if (rc != MG_OK) {
        free(b->buf);
        free(b);
        return rc;
    }
    b->st = st;
    b->worker = worker;
    b->pid = (long)getpid();
    b->max_open = max_open;
    b->fd = -1;
    *out = b;
    return MG_OK;
}

void mg_batch_destroy(struct mg_batch *b)
{
    if (b == NULL)
        return;
    mg_batch_discard(b);
    mg_sha256_destroy(b->sha);
    free(b->v);
    free(b->buf);
    free(b);
}

bool mg_batch_in_message(const struct mg_batch *b)
{
    return b->fd >= 0;
}

size_t mg_batch_count(const struct mg_batch *b)
{
    return b->n;
}

enum mg_code mg_batch_begin(struct mg_batch *b, struct mg_error *err)
{
    mg_batch_drop_current(b);
    b->buflen = 0;
    b->tmp[0] = '\0';
    mg_sha256_reset(b->sha);
    b->size = 0;
    /* An unnamed file costs the directory nothing until it is linked in at
     * commit, and a run killed before then leaves nothing behind at all. */
    if (atomic_load(&b->st->tmpfile_ok) && b->nopen < b->max_open) {
        b->fd = openat(b->st->tmpfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        if (b->fd >= 0)
            return MG_OK;
        if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
            atomic_store(&b->st->tmpfile_ok, false); /* this file system cannot */
        else if (errno != EMFILE && errno != ENFILE)
            return io_error(err, "create a file in", b->st->dir, errno);
    }
    snprintf(b->tmp, sizeof(b->tmp), MG_TMP_PREFIX "%ld-%u-%lu", b->pid, b->worker, b->seq++);
    b->fd =
        openat(b->st->tmpfd, b->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (b->fd < 0) {
        b->tmp[0] = '\0';
        return io_error(err, "create a file in", b->st->dir, errno);
    }
    return MG_OK;
}

/* Close and remove a message that will not be named. */
static void forget(struct mg_store *st, int fd, const char *tmp)
{
    if (fd >= 0)
        close(fd);
    if (tmp[0] != '\0')
        unlinkat(st->tmpfd, tmp, 0);
}

static enum mg_code flush_buf(struct mg_batch *b, const char *p, size_t len, struct mg_error *err)
{
    while (len > 0) {
        ssize_t w = write(b->fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return io_error(err, "write to", b->st->dir, w < 0 ? errno : EIO);
        p += w;
        len -= (size_t)w;
    }
    return MG_OK;
}

enum mg_code mg_batch_write(struct mg_batch *b, const char *bytes, size_t len, struct mg_error *err)
{
    /* The manifest's sum, as the bytes go by: never a second read. */
    mg_sha256_update(b->sha, bytes, len);
    b->size += len;
    if (b->buflen + len > WRITE_BUF) {
        enum mg_code rc = flush_buf(b, b->buf, b->buflen, err);
        b->buflen = 0;
        if (rc != MG_OK)
            return rc;
        if (len > WRITE_BUF / 2)
            return flush_buf(b, bytes, len, err);
    }
    memcpy(b->buf + b->buflen, bytes, len);
    b->buflen += len;
    return MG_OK;
}

enum mg_code mg_batch_end(struct mg_batch *b, uint32_t uid, time_t mtime, const char *flags,
                          struct mg_error *err)
{
    enum mg_code rc = flush_buf(b, b->buf, b->buflen, err);
    b->buflen = 0;
    if (rc != MG_OK) {
        mg_batch_drop_current(b);
        return rc;
    }
    if (mtime != (time_t)-1) {
        struct timespec ts[2] = {{.tv_sec = mtime}, {.tv_sec = mtime}};
        futimens(b->fd, ts);
    }
    int fd = b->fd;
    if (b->tmp[0] != '\0') { /* a named temp file need not stay open */
        if (close(fd) != 0) {
            rc = io_error(err, "write to", b->st->dir, errno);
            forget(b->st, -1, b->tmp); /* drop_current would see no file open */
            b->fd = -1;
            b->tmp[0] = '\0';
            return rc;
        }
        fd = -1;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        struct pending *v = reallocarray(b->v, cap, sizeof(*v));
        if (v == NULL) {
            forget(b->st, fd, b->tmp);
            b->fd = -1;
            return mg_error_set(err, MG_E_INTERNAL, "out of memory");
        }
        b->v = v;
        b->cap = cap;
    }
    struct pending *m = &b->v[b->n++];
    m->uid = uid;
    m->mtime = mtime;
    /* Fixed here, once: the name is made again at link, record and report. */
    m->named = mtime != (time_t)-1 ? mtime : time(NULL);
    snprintf(m->flags, sizeof(m->flags), "%s", flags ? flags : "");
    m->fd = fd;
    memcpy(m->tmp, b->tmp, sizeof(b->tmp));
    m->size = b->size;
    mg_sha256_final(b->sha, m->sha256);
    b->fd = -1;
    if (fd >= 0)
        b->nopen++;
    return MG_OK;
}

void mg_batch_drop_current(struct mg_batch *b)
{
    if (b->fd < 0)
        return;
    forget(b->st, b->fd, b->tmp);
    b->fd = -1;
    b->buflen = 0;
}

/* Give message m its final name; 0, or an errno value. EEXIST: another copy
 * is stored already, which is kept. */
static int name_it(struct mg_store *st, struct pending *m, const char *name)
{
    if (m->tmp[0] != '\0') {
        if (renameat2(st->tmpfd, m->tmp, st->curfd, name, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno != EINVAL)
            return errno;
        /* A file system without RENAME_NOREPLACE: a plain rename would
         * replace a stored message. A hard link refuses an existing name. */
        if (linkat(st->tmpfd, m->tmp, st->curfd, name, 0) != 0)
            return errno;
        unlinkat(st->tmpfd, m->tmp, 0);
        return 0;
    }
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", m->fd);
    if (linkat(AT_FDCWD, proc, st->curfd, name, AT_SYMLINK_FOLLOW) == 0)
        return 0;
    return errno;
}

/* Commit in steps: the data of every file, then the names, then the names'
 * flush; only then is each message reported stored. */
static enum mg_code flush_data(struct mg_store *st, struct mg_error *err)
{
    if (syncfs(st->dirfd) != 0)
        return io_error(err, "flush", st->dir, errno);
    return MG_OK;
}

static enum mg_code flush_names(struct mg_store *st, struct mg_error *err)
{
    if (fsync(st->curfd) != 0)
        return io_error(err, "flush", st->dir, errno);
    return MG_OK;
}

static enum mg_code link_batch(struct mg_batch *b, struct mg_error *err)
{
    struct mg_store *st = b->st;
    for (size_t i = 0; i < b->n; i++) {
        struct pending *m = &b->v[i];
        char name[128];
        final_name(st, m, name, sizeof(name));
        int e = name_it(st, m, name);
        if (e == EEXIST) { /* already stored: keep the first copy */
            forget(st, m->fd, m->tmp);
            m->fd = -1;
            m->uid = 0;
            continue;
        }
        if (e != 0) {
            enum mg_code rc = io_error(err, "name a file in", st->dir, e);
            for (size_t j = i; j < b->n; j++) /* what the failure left unnamed */
                forget(st, b->v[j].fd, b->v[j].tmp);
            b->n = 0;
            b->nopen = 0;
            return rc;
        }
        if (m->fd >= 0)
            close(m->fd);
        m->fd = -1;
    }
    return MG_OK;
}

/* The batch's sums go to the manifest once its files are durable under
 * their names. A kill before this leaves stored messages without entries,
 * which the next run records (open_manifest). */
static void record_batch(struct mg_batch *b)
{
    struct mg_store *st = b->st;
    if (st->manifest == NULL)
        return;
    struct mg_manifest_entry *v = calloc(b->n, sizeof(*v));
    char(*names)[MG_MANIFEST_NAME_MAX + 1] = calloc(b->n, sizeof(*names));
    size_t n = 0;
    for (size_t i = 0; v != NULL && names != NULL && i < b->n; i++) {
        const struct pending *m = &b->v[i];
        if (m->uid == 0)
            continue;
        char name[128];
        final_name(st, m, name, sizeof(name));
        int len = snprintf(names[n], sizeof(names[n]), "%s%s",
                           st->format == MG_FORMAT_MAILDIR ? "cur/" : "", name);
        v[n] = (struct mg_manifest_entry){.uid = m->uid,
                                          .size = m->size,
                                          .origin = 's',
                                          .name = names[n],
                                          .name_len = (size_t)len};
        memcpy(v[n].sha256, m->sha256, sizeof(m->sha256));
        n++;
    }
    struct mg_error err;
    enum mg_code rc = v != NULL && names != NULL
                          ? mg_manifest_log_append(st->manifest, v, n, &err)
                          : mg_error_set(&err, MG_E_INTERNAL, "out of memory");
    if (rc != MG_OK && !atomic_exchange(&st->manifest_warned, true))
        mg_warn("%s; the messages are stored, and the next run records their checksums", err.msg);
    free(v);
    free(names);
}

static void report_batch(struct mg_batch *b,
                         void (*on_stored)(void *ctx, uint32_t uid, const char *path), void *ctx)
{
    struct mg_store *st = b->st;
    for (size_t i = 0; on_stored != NULL && i < b->n; i++) {
        if (b->v[i].uid == 0)
            continue;
        char name[128], path[PATH_MAX + 160];
        final_name(st, &b->v[i], name, sizeof(name));
        snprintf(path, sizeof(path), "%s/%s%s", st->dir,
                 st->format == MG_FORMAT_MAILDIR ? "cur/" : "", name);
        on_stored(ctx, b->v[i].uid, path);
    }
    b->n = 0;
    b->nopen = 0;
}

enum mg_code mg_batch_commit(struct mg_batch *b,
                             void (*on_stored)(void *ctx, uint32_t uid, const char *path),
                             void *ctx, struct mg_error *err)
{
    if (b->n == 0)
        return MG_OK;
    /* Data first, for every file; then the names; then the names' flush. */
    enum mg_code rc = flush_data(b->st, err);
    if (rc != MG_OK) {
        mg_batch_discard(b);
        return rc;
    }
    rc = link_batch(b, err);
    if (rc == MG_OK)
        rc = flush_names(b->st, err);
    if (rc != MG_OK) {
        b->n = 0;
        b->nopen = 0;
        return rc;
    }
    record_batch(b);
    report_batch(b, on_stored, ctx);
    atomic_store(&b->st->names_loaded, false);
    return MG_OK;
}

void mg_batch_discard(struct mg_batch *b)
{
    mg_batch_drop_current(b);
    for (size_t i = 0; i < b->n; i++)
        forget(b->st, b->v[i].fd, b->v[i].tmp);
    b->n = 0;
    b->nopen = 0;
}

enum mg_code mg_store_mailbox_dirs(const char *output, char ***names, size_t *n,
                                   struct mg_error *err)
{
    *names = NULL;
    *n = 0;
    int fd = open(output, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return MG_OK; /* nothing stored yet */
    if (fd < 0)
        return io_error(err, "open directory", output, errno);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return io_error(err, "read directory", output, errno);
    }
    enum mg_code rc = MG_OK;
    struct dirent *de;
    while (rc == MG_OK && (de = readdir(d)) != NULL) {
        if (!is_mailbox_dir(dirfd(d), de->d_name))
            continue;
        char **v = reallocarray(*names, *n + 1, sizeof(*v));
        char *copy = v != NULL ? strdup(de->d_name) : NULL;
        if (v != NULL)
            *names = v;
        if (copy == NULL)
            rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        else
            (*names)[(*n)++] = copy;
    }
    closedir(d);
    if (rc != MG_OK) {
        mg_store_free_names(*names, *n);
        *names = NULL;
        *n = 0;
    }
    return rc;
}

void mg_store_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

uint32_t mg_store_name_uid(enum mg_format format, const char *name)
{
    return name_uid(format, name);
}

int mg_store_locate(const char *output, const char *component, uint32_t uidvalidity, char *dir,
                    size_t cap)
{
    /* The choice mg_store_open makes, without creating anything. */
    int outfd = open(output, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (outfd < 0)
        return errno == ENOENT ? 0 : -1;
    int found = 0;
    const char *name = component;
    char gen[NAME_MAX + 1];
    snprintf(gen, sizeof(gen), "%s%%uidvalidity=%u", component, uidvalidity);
    int fd = open_dir_at(outfd, component, false);
    uint32_t old = 0;
    int r = fd >= 0 ? read_state(fd, &old) : 0;
    if (fd >= 0)
        close(fd);
    if (fd < 0 && errno != ENOENT) {
        found = -1;
    } else if (r < 0) {
        found = -1;
    } else if (fd >= 0 && (uidvalidity == 0 || r == 0 || old == uidvalidity)) {
        found = 1;
    } else if (fd >= 0) {
        name = gen;
        fd = open_dir_at(outfd, gen, false);
        r = fd >= 0 ? read_state(fd, &old) : 0;
        if (fd >= 0)
            close(fd);
        found = fd < 0 ? (errno == ENOENT ? 0 : -1) : r < 0 ? -1 : 1;
    }
    close(outfd);
    if (found == 1 && snprintf(dir, cap, "%s/%s", output, name) >= (int)cap)
        return -1;
    return found;
}

/* The names of the stored messages, by UID, read once when first needed. */
static int cmp_named(const void *a, const void *b)
{
    uint32_t x = ((const struct stored_name *)a)->uid, y = ((const struct stored_name *)b)->uid;
    return (x > y) - (x < y);
}

static int load_names_in(struct mg_store *st, int dirfd, const char *prefix)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    rewinddir(d);
    size_t cap = st->nnames;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        uint32_t uid = name_uid(st->format, de->d_name);
        if (uid == 0)
            continue;
        if (st->nnames == cap) {
            cap = cap ? cap * 2 : 256;
            struct stored_name *v = reallocarray(st->names, cap, sizeof(*v));
            if (v == NULL) {
                rc = -1;
                break;
            }
            st->names = v;
        }
        struct stored_name *n = &st->names[st->nnames];
        if (snprintf(n->name, sizeof(n->name), "%s%s", prefix, de->d_name) >= (int)sizeof(n->name))
            continue;
        n->uid = uid;
        st->nnames++;
    }
    closedir(d);
    return rc;
}

static int load_names(struct mg_store *st)
{
    if (atomic_load(&st->names_loaded))
        return 0;
    st->nnames = 0;
    int rc;
    if (st->format == MG_FORMAT_EML) {
        rc = load_names_in(st, st->dirfd, "");
    } else {
        rc = load_names_in(st, st->curfd, "cur/");
        int newfd = openat(st->dirfd, "new", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (rc == 0 && newfd >= 0)
            rc = load_names_in(st, newfd, "new/");
        if (newfd >= 0)
            close(newfd);
    }
    if (rc != 0) {
        free(st->names);
        st->names = NULL;
        st->nnames = 0;
        return -1;
    }
    if (st->nnames > 1)
        qsort(st->names, st->nnames, sizeof(*st->names), cmp_named);
    atomic_store(&st->names_loaded, true);
    return 0;
}

static struct stored_name *named(struct mg_store *st, uint32_t uid)
{
    if (load_names(st) != 0 || st->nnames == 0)
        return NULL;
    struct stored_name key = {.uid = uid};
    return bsearch(&key, st->names, st->nnames, sizeof(*st->names), cmp_named);
}

int mg_store_name_of(struct mg_store *st, uint32_t uid, char *out, size_t cap)
{
    const struct stored_name *n = named(st, uid);
    if (n == NULL)
        return -1;
    return snprintf(out, cap, "%s", n->name) < (int)cap ? 0 : -1;
}

enum mg_code mg_store_link(struct mg_store *st, const struct mg_store_link *v, size_t n,
                           size_t *linked, struct mg_error *err)
{
    *linked = 0;
    if (n == 0)
        return MG_OK;
    struct mg_manifest_entry *e = calloc(n, sizeof(*e));
    char(*names)[MG_MANIFEST_NAME_MAX + 1] = calloc(n, sizeof(*names));
    if (e == NULL || names == NULL) {
        free(e);
        free(names);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    enum mg_code rc = MG_OK;
    size_t ne = 0;
    for (size_t i = 0; i < n && rc == MG_OK; i++) {
        /* Only a regular file of ours: never a link to something planted. */
        struct stat sb;
        if (fstatat(v[i].srcfd, v[i].src, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) {
            mg_warn("%s: cannot link %s: not a stored message any more", st->dir, v[i].src);
            continue;
        }
        struct pending m = {.uid = v[i].uid, .named = sb.st_mtime};
        snprintf(m.flags, sizeof(m.flags), "%s", v[i].flags);
        char name[128];
        final_name(st, &m, name, sizeof(name));
        if (linkat(v[i].srcfd, v[i].src, st->curfd, name, 0) != 0) {
            if (errno == EEXIST)
                continue; /* stored already */
            rc = io_error(err, "link a message into", st->dir, errno);
            break;
        }
        (*linked)++;
        int len = snprintf(names[ne], sizeof(names[ne]), "%s%s",
                           st->format == MG_FORMAT_MAILDIR ? "cur/" : "", name);
        struct mg_error herr;
        if (mg_manifest_hash_file(st->curfd, name, &e[ne].size, e[ne].sha256, &herr) != MG_OK)
            continue; /* the next run records it */
        e[ne].uid = v[i].uid;
        e[ne].origin = 'r';
        e[ne].name = names[ne];
        e[ne].name_len = (size_t)len;
        ne++;
    }
    /* The new names durable, then their sums (as for fetched messages). */
    if (*linked > 0 && fsync(st->curfd) != 0 && rc == MG_OK)
        rc = io_error(err, "flush", st->dir, errno);
    if (rc == MG_OK && st->manifest != NULL && ne > 0) {
        struct mg_error merr;
        if (mg_manifest_log_append(st->manifest, e, ne, &merr) != MG_OK &&
            !atomic_exchange(&st->manifest_warned, true))
            mg_warn("%s; the messages are stored, and the next run records their checksums",
                    merr.msg);
    }
    atomic_store(&st->names_loaded, false); /* names changed */
    free(e);
    free(names);
    return rc;
}

enum mg_code mg_store_unlink_copies(struct mg_store *st, const uint32_t *uids, size_t n,
                                    size_t *removed, struct mg_error *err)
{
    *removed = 0;
    uint32_t *drop = calloc(n ? n : 1, sizeof(*drop));
    if (drop == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        const struct stored_name *sn = named(st, uids[i]);
        struct stat sb;
        /* The last copy of a message is never removed. */
        if (sn != NULL && fstatat(st->dirfd, sn->name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(sb.st_mode) && sb.st_nlink > 1)
            drop[nd++] = uids[i];
    }
    enum mg_code rc = MG_OK;
    if (nd > 0 && st->manifest != NULL)
        rc = mg_manifest_log_forget(st->manifest, st->dirfd, drop, nd, err);
    /* Entries first, then the names: a run killed between leaves files the
     * next run records again and removes again. */
    for (size_t i = 0; rc == MG_OK && i < nd; i++) {
        const struct stored_name *sn = named(st, drop[i]);
        if (sn != NULL && unlinkat(st->dirfd, sn->name, 0) == 0)
            (*removed)++;
    }
    if (rc == MG_OK && *removed > 0 && fsync(st->curfd) != 0)
        rc = io_error(err, "flush", st->dir, errno);
    atomic_store(&st->names_loaded, false);
    free(drop);
    return rc;
}

size_t mg_store_stored(struct mg_store *st, uint32_t **uids)
{
    *uids = NULL;
    if (load_names(st) != 0 || st->nnames == 0)
        return 0;
    uint32_t *v = calloc(st->nnames, sizeof(*v));
    if (v == NULL)
        return 0;
    for (size_t i = 0; i < st->nnames; i++)
        v[i] = st->names[i].uid;
    *uids = v;
    return st->nnames;
}

int mg_store_dirfd(const struct mg_store *st)
{
    return st->dirfd;
}

void mg_store_get_mark(const struct mg_store *st, struct mg_store_mark *m)
{
    *m = st->mark;
}

enum mg_code mg_store_set_mark(struct mg_store *st, const struct mg_store_mark *m,
                               struct mg_error *err)
{
    if (st->uidvalidity == 0)
        return MG_OK; /* no UIDVALIDITY, no promise about UIDs */
    char text[160];
    snprintf(text, sizeof(text),
             "uidvalidity=%u\nuidnext=%u\nstored=%llu\nmodseq=%llu\nflags_at=%lld\n%s",
             st->uidvalidity, m->uidnext, (unsigned long long)m->stored,
             (unsigned long long)m->modseq, (long long)m->flags_at, m->gmail ? "gmail=1\n" : "");
    enum mg_code rc = replace_file(st->dirfd, st->dir, STATE_FILE, text, err);
    if (rc == MG_OK)
        st->mark = *m;
    return rc;
}

bool mg_store_marked(const char *output, const char *component)
{
    uint32_t uv;
    struct mg_store_mark m;
    return mg_store_peek(output, component, &uv, &m) == 1 && m.uidnext != 0;
}

int mg_store_peek(const char *output, const char *component, uint32_t *uidvalidity,
                  struct mg_store_mark *m)
{
    memset(m, 0, sizeof(*m));
    *uidvalidity = 0;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", output, component) >= (int)sizeof(path))
        return -1;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    int r = read_state(fd, uidvalidity);
    if (r == 1)
        read_mark(fd, m);
    close(fd);
    return r;
}

int mg_store_set_flags(struct mg_store *st, uint32_t uid, const char *flags)
{
    if (st->format != MG_FORMAT_MAILDIR)
        return 0;
    struct stored_name *sn = named(st, uid);
    if (sn == NULL)
        return 0;
    const char *info = strstr(sn->name, ":2,");
    size_t base = info ? (size_t)(info - sn->name) : strlen(sn->name);
    if (info != NULL && strcmp(info + 3, flags) == 0 && strncmp(sn->name, "cur/", 4) == 0)
        return 0; /* as it is */
    const char *file = strchr(sn->name, '/');
    file = file ? file + 1 : sn->name;
    size_t skip = (size_t)(file - sn->name);
    char to[MG_MANIFEST_NAME_MAX + 1];
    if (snprintf(to, sizeof(to), "cur/%.*s:2,%s", (int)(base - skip), file, flags) >=
        (int)sizeof(to))
        return -1;
    /* Only the info part changes (Maildir's way), never over another file. */
    if (renameat2(st->dirfd, sn->name, st->dirfd, to, RENAME_NOREPLACE) != 0)
        return -1;
    memcpy(sn->name, to, sizeof(to)); /* the map follows: no re-reading per message */
    return 1;
}

enum mg_code mg_store_flush_names(struct mg_store *st, struct mg_error *err)
{
    return flush_names(st, err);
}
