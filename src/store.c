/* store.c - see include/mailgrab/store.h */
#include "mailgrab/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailgrab/log.h"

#define WRITE_BUF (256 * 1024)

struct mg_store {
    int dirfd;
    char dir[PATH_MAX];
    uint32_t *have; /* sorted UIDs already stored */
    size_t nhave;
};

struct pending {
    uint32_t uid;
    char tmp[64];
};

struct mg_batch {
    struct mg_store *st;
    unsigned worker;
    unsigned long seq;
    /* current message */
    int fd;
    char tmp[64];
    char *buf;
    size_t buflen;
    /* ended messages waiting for commit */
    struct pending *v;
    size_t n, cap;
};

static enum mg_code io_error(struct mg_error *err, const char *what, const char *path, int e)
{
    if (e == ENOSPC || e == EDQUOT)
        return mg_error_set(err, MG_E_IO,
                            "disk full while %s %s: free some space and run again (messages "
                            "already stored are kept)",
                            what, path);
    return mg_error_set(err, MG_E_IO, "cannot %s %s: %s", what, path, strerror(e));
}

static enum mg_code make_dir(const char *path, struct mg_error *err)
{
    if (mkdir(path, 0700) == 0) {
        /* Make the new entry durable in its parent. */
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", path);
        char *slash = strrchr(parent, '/');
        if (slash == parent)
            slash[1] = '\0';
        else if (slash != NULL)
            *slash = '\0';
        else
            snprintf(parent, sizeof(parent), ".");
        int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd >= 0) {
            fsync(pfd);
            close(pfd);
        }
        return MG_OK;
    }
    if (errno == EEXIST) {
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            return MG_OK;
        return mg_error_set(err, MG_E_IO, "%s exists and is not a directory", path);
    }
    return io_error(err, "create directory", path, errno);
}

enum mg_code mg_store_lock(const char *output, int *fd, struct mg_error *err)
{
    enum mg_code rc = make_dir(output, err);
    if (rc != MG_OK)
        return rc;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/.mailgrab.lock", output) >= (int)sizeof(path))
        return mg_error_set(err, MG_E_USAGE, "output path too long: %s", output);
    int lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0)
        return io_error(err, "open lock file", path, errno);
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

/* "<digits>.eml" -> uid; 0 if the name is anything else. */
static uint32_t parse_name(const char *name)
{
    unsigned long v = 0;
    const char *p = name;
    if (*p < '1' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > UINT32_MAX)
            return 0;
        p++;
    }
    return strcmp(p, ".eml") == 0 ? (uint32_t)v : 0;
}

static enum mg_code scan(struct mg_store *st, struct mg_error *err)
{
    int fd = dup(st->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return io_error(err, "read directory", st->dir, errno);
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, MG_TMP_PREFIX, strlen(MG_TMP_PREFIX)) == 0) {
            /* Left by a run that died: never a stored message. */
            if (unlinkat(st->dirfd, de->d_name, 0) == 0)
                mg_debug("removed stale temp file %s/%s", st->dir, de->d_name);
            continue;
        }
        uint32_t uid = parse_name(de->d_name);
        if (uid == 0)
            continue;
        if (st->nhave == cap) {
            cap = cap ? cap * 2 : 1024;
            uint32_t *v = reallocarray(st->have, cap, sizeof(*v));
            if (v == NULL) {
                closedir(d);
                return mg_error_set(err, MG_E_INTERNAL, "out of memory");
            }
            st->have = v;
        }
        st->have[st->nhave++] = uid;
    }
    closedir(d);
    if (st->nhave > 1)
        qsort(st->have, st->nhave, sizeof(*st->have), cmp_u32);
    return MG_OK;
}

enum mg_code mg_store_open(const char *output, const char *component, struct mg_store **out,
                           struct mg_error *err)
{
    struct mg_store *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    st->dirfd = -1;
    if (snprintf(st->dir, sizeof(st->dir), "%s/%s", output, component) >= (int)sizeof(st->dir)) {
        free(st);
        return mg_error_set(err, MG_E_USAGE, "output path too long: %s", output);
    }
    enum mg_code rc = make_dir(output, err);
    if (rc == MG_OK)
        rc = make_dir(st->dir, err);
    if (rc != MG_OK) {
        free(st);
        return rc;
    }
    /* O_NOFOLLOW: a symlink planted in place of the mailbox directory is
     * refused rather than followed out of OUTPUT. */
    st->dirfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (st->dirfd < 0) {
        rc = io_error(err, "open directory", st->dir, errno);
        free(st);
        return rc;
    }
    rc = scan(st, err);
    if (rc != MG_OK) {
        mg_store_close(st);
        return rc;
    }
    *out = st;
    return MG_OK;
}

void mg_store_close(struct mg_store *st)
{
    if (st == NULL)
        return;
    if (st->dirfd >= 0)
        close(st->dirfd);
    free(st->have);
    free(st);
}

bool mg_store_has(const struct mg_store *st, uint32_t uid)
{
    return st->nhave > 0 &&
           bsearch(&uid, st->have, st->nhave, sizeof(*st->have), cmp_u32) != NULL;
}

size_t mg_store_count(const struct mg_store *st)
{
    return st->nhave;
}

const char *mg_store_dir(const struct mg_store *st)
{
    return st->dir;
}

void mg_store_name(uint32_t uid, char *buf, size_t cap)
{
    snprintf(buf, cap, "%u.eml", uid);
}

enum mg_code mg_batch_create(struct mg_store *st, unsigned worker, struct mg_batch **out,
                             struct mg_error *err)
{
    struct mg_batch *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->buf = malloc(WRITE_BUF)) == NULL) {
        free(b);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    b->st = st;
    b->worker = worker;
    b->fd = -1;
    *out = b;
    return MG_OK;
}

void mg_batch_destroy(struct mg_batch *b)
{
    if (b == NULL)
        return;
    mg_batch_discard(b);
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
    snprintf(b->tmp, sizeof(b->tmp), MG_TMP_PREFIX "%ld-%u-%lu", (long)getpid(), b->worker,
             b->seq++);
    b->fd =
        openat(b->st->dirfd, b->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (b->fd < 0)
        return io_error(err, "create a file in", b->st->dir, errno);
    b->buflen = 0;
    return MG_OK;
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

enum mg_code mg_batch_end(struct mg_batch *b, uint32_t uid, time_t mtime, struct mg_error *err)
{
    enum mg_code rc = flush_buf(b, b->buf, b->buflen, err);
    b->buflen = 0;
    if (rc != MG_OK)
        return rc;
    if (mtime != (time_t)-1) {
        struct timespec ts[2] = {{.tv_sec = mtime}, {.tv_sec = mtime}};
        futimens(b->fd, ts);
    }
    int fd = b->fd;
    b->fd = -1;
    if (close(fd) != 0) {
        rc = io_error(err, "write to", b->st->dir, errno);
        unlinkat(b->st->dirfd, b->tmp, 0);
        return rc;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        struct pending *v = reallocarray(b->v, cap, sizeof(*v));
        if (v == NULL) {
            unlinkat(b->st->dirfd, b->tmp, 0);
            return mg_error_set(err, MG_E_INTERNAL, "out of memory");
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n].uid = uid;
    memcpy(b->v[b->n].tmp, b->tmp, sizeof(b->tmp));
    b->n++;
    return MG_OK;
}

void mg_batch_drop_current(struct mg_batch *b)
{
    if (b->fd < 0)
        return;
    close(b->fd);
    b->fd = -1;
    b->buflen = 0;
    unlinkat(b->st->dirfd, b->tmp, 0);
}

enum mg_code mg_batch_commit(struct mg_batch *b,
                             void (*on_stored)(void *ctx, uint32_t uid, const char *path),
                             void *ctx, struct mg_error *err)
{
    if (b->n == 0)
        return MG_OK;
    /* One flush for the whole batch: the data of every temp file reaches
     * the disk before any of them gets its final name. */
    if (syncfs(b->st->dirfd) != 0) {
        enum mg_code rc = io_error(err, "flush", b->st->dir, errno);
        mg_batch_discard(b);
        return rc;
    }
    size_t done = 0;
    enum mg_code rc = MG_OK;
    for (; done < b->n; done++) {
        char name[32];
        mg_store_name(b->v[done].uid, name, sizeof(name));
        if (renameat2(b->st->dirfd, b->v[done].tmp, b->st->dirfd, name, RENAME_NOREPLACE) != 0) {
            if (errno == EINVAL) /* file system without RENAME_NOREPLACE */
                if (renameat(b->st->dirfd, b->v[done].tmp, b->st->dirfd, name) == 0)
                    continue;
            if (errno == EEXIST) { /* already stored: keep the first copy */
                unlinkat(b->st->dirfd, b->v[done].tmp, 0);
                b->v[done].uid = 0;
                continue;
            }
            rc = io_error(err, "rename a file in", b->st->dir, errno);
            break;
        }
    }
    if (rc == MG_OK && fsync(b->st->dirfd) != 0)
        rc = io_error(err, "flush", b->st->dir, errno);
    if (rc == MG_OK && on_stored != NULL) {
        for (size_t i = 0; i < b->n; i++) {
            if (b->v[i].uid == 0)
                continue;
            char path[PATH_MAX + 32];
            snprintf(path, sizeof(path), "%s/%u.eml", b->st->dir, b->v[i].uid);
            on_stored(ctx, b->v[i].uid, path);
        }
    }
    if (rc != MG_OK) {
        for (size_t i = done; i < b->n; i++)
            unlinkat(b->st->dirfd, b->v[i].tmp, 0);
    }
    b->n = 0;
    return rc;
}

void mg_batch_discard(struct mg_batch *b)
{
    mg_batch_drop_current(b);
    for (size_t i = 0; i < b->n; i++)
        unlinkat(b->st->dirfd, b->v[i].tmp, 0);
    b->n = 0;
}
