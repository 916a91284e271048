/* manifest.c - see include/mailgrab/manifest.h */
#include "mailgrab/manifest.h"

#include "mailgrab/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "mailgrab/log.h"

#define READ_BUF (64 * 1024)
#define MAX_SIZE_DIGITS 19 /* sizes below 10^19 fit in uint64_t */
#define HEADER "# mailgrab manifest: uid size sha256 origin(s=streamed,r=read back) name\n"

/* Decimal digits at s[0..len): no sign, no leading zero unless "0". */
static int parse_dec(const char *s, size_t len, size_t max_digits, uint64_t *out)
{
    if (len == 0 || len > max_digits || (len > 1 && s[0] == '0'))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > MG_MANIFEST_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* The next space-separated field of line[*pos..len); the last field runs to
 * the end. Returns its length, the field at *f. */
static size_t next_field(const char *line, size_t len, size_t *pos, bool last, const char **f)
{
    size_t start = *pos, end = start;
    while (end < len && (last || line[end] != ' '))
        end++;
    *f = line + start;
    *pos = end < len ? end + 1 : end;
    return end - start;
}

int mg_manifest_parse_line(const char *line, size_t len, struct mg_manifest_entry *e)
{
    size_t pos = 0;
    const char *f;
    uint64_t v;
    size_t n = next_field(line, len, &pos, false, &f);
    if (parse_dec(f, n, 10, &v) != 0 || v == 0 || v > UINT32_MAX)
        return -1;
    e->uid = (uint32_t)v;
    n = next_field(line, len, &pos, false, &f);
    if (parse_dec(f, n, MAX_SIZE_DIGITS, &e->size) != 0)
        return -1;
    n = next_field(line, len, &pos, false, &f);
    if (n != 2 * MG_SHA256_LEN)
        return -1;
    for (size_t i = 0; i < MG_SHA256_LEN; i++) {
        int hi = hex_val(f[2 * i]), lo = hex_val(f[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        e->sha256[i] = (unsigned char)(hi << 4 | lo);
    }
    n = next_field(line, len, &pos, false, &f);
    if (n != 1 || (f[0] != 's' && f[0] != 'r'))
        return -1;
    e->origin = f[0];
    n = next_field(line, len, &pos, true, &f);
    if (!valid_name(f, n))
        return -1;
    e->name = f;
    e->name_len = n;
    return 0;
}

int mg_manifest_format_line(const struct mg_manifest_entry *e, char *buf, size_t cap)
{
    if (!valid_name(e->name, e->name_len) || e->uid == 0 || (e->origin != 's' && e->origin != 'r'))
        return -1;
    char hex[2 * MG_SHA256_LEN + 1];
    for (size_t i = 0; i < MG_SHA256_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", e->sha256[i]);
    int n = snprintf(buf, cap, "%u %llu %s %c %.*s\n", e->uid, (unsigned long long)e->size, hex,
                     e->origin, (int)e->name_len, e->name);
    return n > 0 && (size_t)n < cap ? n : -1;
}

void mg_manifest_reader_init(struct mg_manifest_reader *r, mg_manifest_each_fn each, void *ctx)
{
    memset(r, 0, sizeof(*r));
    r->each = each;
    r->ctx = ctx;
}

static void end_line(struct mg_manifest_reader *r)
{
    r->lineno++;
    struct mg_manifest_entry e;
    if (r->overlong ||
        (r->len > 0 && r->line[0] != '#' && mg_manifest_parse_line(r->line, r->len, &e) != 0)) {
        r->damaged++;
        if (r->first_damaged == 0)
            r->first_damaged = r->lineno;
    } else if (r->len > 0 && r->line[0] != '#') {
        r->entries++;
        if (r->each != NULL)
            r->each(r->ctx, &e);
    }
    r->len = 0;
    r->overlong = false;
}

void mg_manifest_reader_feed(struct mg_manifest_reader *r, const char *bytes, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(bytes, '\n', len);
        size_t n = nl != NULL ? (size_t)(nl - bytes) : len;
        if (!r->overlong && r->len + n <= sizeof(r->line)) {
            memcpy(r->line + r->len, bytes, n);
            r->len += n;
        } else {
            r->overlong = true;
        }
        if (nl == NULL) {
            r->fed += n;
            return;
        }
        end_line(r);
        r->fed += n + 1;
        r->good_len = r->fed;
        bytes += n + 1;
        len -= n + 1;
    }
}

void mg_manifest_reader_end(struct mg_manifest_reader *r)
{
    r->torn = r->len > 0 || r->overlong;
    r->len = 0;
    r->overlong = false;
}

/* Feed everything fd holds from offset 0 through r. Returns 0 or an errno. */
static int read_fd(int fd, struct mg_manifest_reader *r)
{
    char *buf = malloc(READ_BUF);
    if (buf == NULL)
        return ENOMEM;
    off_t off = 0;
    int e = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, READ_BUF, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            e = errno;
        if (n <= 0)
            break;
        mg_manifest_reader_feed(r, buf, (size_t)n);
        off += n;
    }
    free(buf);
    mg_manifest_reader_end(r);
    return e;
}

enum mg_code mg_manifest_read(int dirfd, const char *dir, struct mg_manifest_reader *r,
                              bool *exists, struct mg_error *err)
{
    *exists = false;
    int fd = openat(dirfd, MG_MANIFEST_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) {
        mg_manifest_reader_end(r);
        return MG_OK;
    }
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int e = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        if (e == ELOOP || e == EINVAL)
            return mg_error_set(err, MG_E_IO, "%s/" MG_MANIFEST_FILE " is not a plain file", dir);
        return mg_error_set(err, MG_E_IO, "cannot read %s/" MG_MANIFEST_FILE ": %s", dir,
                            strerror(e));
    }
    *exists = true;
    int e = read_fd(fd, r);
    close(fd);
    if (e != 0)
        return mg_error_set(err, MG_E_IO, "cannot read %s/" MG_MANIFEST_FILE ": %s", dir,
                            strerror(e));
    return MG_OK;
}

struct mg_sha256 {
    EVP_MD_CTX *ctx;
};

enum mg_code mg_sha256_create(struct mg_sha256 **out, struct mg_error *err)
{
    struct mg_sha256 *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->ctx = EVP_MD_CTX_new()) == NULL) {
        free(h);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        mg_sha256_destroy(h);
        return mg_error_set(err, MG_E_INTERNAL, "OpenSSL has no SHA-256");
    }
    *out = h;
    return MG_OK;
}

void mg_sha256_destroy(struct mg_sha256 *h)
{
    if (h == NULL)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void mg_sha256_reset(struct mg_sha256 *h)
{
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void mg_sha256_update(struct mg_sha256 *h, const void *bytes, size_t len)
{
    EVP_DigestUpdate(h->ctx, bytes, len);
}

void mg_sha256_final(struct mg_sha256 *h, unsigned char out[MG_SHA256_LEN])
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, out, &n);
    mg_sha256_reset(h);
}

enum mg_code mg_manifest_hash_file(int dirfd, const char *name, uint64_t *size,
                                   unsigned char sha[MG_SHA256_LEN], struct mg_error *err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int e = fd < 0 ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        return mg_error_set(err, MG_E_IO, "cannot read %s: %s", name,
                            e == EINVAL || e == ELOOP ? "not a plain file" : strerror(e));
    }
    struct mg_sha256 *h = NULL;
    char *buf = malloc(READ_BUF);
    enum mg_code rc =
        buf != NULL ? mg_sha256_create(&h, err) : mg_error_set(err, MG_E_INTERNAL, "out of memory");
    *size = 0;
    while (rc == MG_OK) {
        ssize_t n = read(fd, buf, READ_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = mg_error_set(err, MG_E_IO, "cannot read %s: %s", name, strerror(errno));
        if (n <= 0)
            break;
        mg_sha256_update(h, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    if (rc == MG_OK)
        mg_sha256_final(h, sha);
    mg_sha256_destroy(h);
    free(buf);
    close(fd);
    return rc;
}

struct mg_manifest_log {
    int fd;
    char dir[4096];
    pthread_mutex_t lock;
    bool broken;
    uint32_t *uids; /* recorded when opened, sorted */
    size_t n, cap;
};

static void collect_uid(void *ctx, const struct mg_manifest_entry *e)
{
    struct mg_manifest_log *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        uint32_t *v = reallocarray(l->uids, cap, sizeof(*v));
        if (v == NULL) {
            l->broken = true;
            return;
        }
        l->uids = v;
        l->cap = cap;
    }
    l->uids[l->n++] = e->uid;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The manifest is ours to append to only as a plain file with no other
 * name: anything else is removed (never written through) and started anew. */
static int open_own(int dirfd, const char *dir)
{
    int flags = O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
    int fd = openat(dirfd, MG_MANIFEST_FILE, flags | O_CREAT, 0600);
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_nlink == 1)
        return fd;
    if (fd < 0 && errno != ELOOP && errno != ENXIO)
        return -1;
    if (fd >= 0)
        close(fd);
    mg_warn("%s/" MG_MANIFEST_FILE " is not a plain file of its own; replacing it (its entries "
            "are recorded again from the stored files)",
            dir);
    if (unlinkat(dirfd, MG_MANIFEST_FILE, 0) != 0)
        return -1;
    return openat(dirfd, MG_MANIFEST_FILE, flags | O_CREAT | O_EXCL, 0600);
}

struct copy {
    int fd;
    int e;
    const uint32_t *drop; /* sorted: entries left out */
    size_t ndrop;
};

static void copy_entry(void *ctx, const struct mg_manifest_entry *e)
{
    struct copy *c = ctx;
    if (c->ndrop > 0 && bsearch(&e->uid, c->drop, c->ndrop, sizeof(*c->drop), cmp_u32) != NULL)
        return;
    char line[MG_MANIFEST_LINE_MAX + 2];
    int n = mg_manifest_format_line(e, line, sizeof(line));
    if (c->e == 0 && n > 0)
        c->e = mg_write_all(c->fd, line, (size_t)n);
}

/* Damaged lines would stay in an append-only file for good: write the good
 * entries to a fresh file and rename it into place (never in place: the old
 * name could be a link to anything). Their messages are recorded again from
 * the files. Returns 0 or an errno value; l->fd is the new file. */
static int rewrite(int dirfd, struct mg_manifest_log *l, const uint32_t *drop, size_t ndrop)
{
    static const char tmp[] = ".mg-tmp-manifest";
    if (unlinkat(dirfd, tmp, 0) != 0 && errno != ENOENT)
        return errno;
    int fd =
        openat(dirfd, tmp, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    struct copy c = {fd, mg_write_all(fd, HEADER, strlen(HEADER)), drop, ndrop};
    struct mg_manifest_reader r;
    mg_manifest_reader_init(&r, copy_entry, &c);
    int e = read_fd(l->fd, &r);
    if (e == 0)
        e = c.e;
    if (e == 0 && fsync(fd) != 0)
        e = errno;
    if (e == 0 && renameat(dirfd, tmp, dirfd, MG_MANIFEST_FILE) != 0)
        e = errno;
    if (e == 0 && fsync(dirfd) != 0)
        e = errno;
    if (e != 0) {
        close(fd);
        unlinkat(dirfd, tmp, 0);
        return e;
    }
    close(l->fd);
    l->fd = fd;
    return 0;
}

enum mg_code mg_manifest_log_open(int dirfd, const char *dir, struct mg_manifest_log **out,
                                  struct mg_error *err)
{
    struct mg_manifest_log *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    snprintf(l->dir, sizeof(l->dir), "%s", dir);
    pthread_mutex_init(&l->lock, NULL);
    l->fd = open_own(dirfd, dir);
    if (l->fd < 0) {
        int e = errno;
        mg_manifest_log_close(l);
        return mg_error_set(err, MG_E_IO, "cannot open %s/" MG_MANIFEST_FILE ": %s", dir,
                            strerror(e));
    }
    struct mg_manifest_reader r;
    mg_manifest_reader_init(&r, collect_uid, l);
    int e = read_fd(l->fd, &r);
    if (e == 0 && l->broken)
        e = ENOMEM;
    if (e == 0 && r.damaged > 0)
        e = rewrite(dirfd, l, NULL, 0); /* leaves out a torn last line too */
    /* A crash cut the last append short: drop the piece, so that the next
     * line starts on a line of its own. */
    else if (e == 0 && r.torn && (ftruncate(l->fd, (off_t)r.good_len) != 0 || fsync(l->fd) != 0))
        e = errno;
    if (e == 0 && r.good_len == 0 && r.damaged == 0) {
        ssize_t w = write(l->fd, HEADER, strlen(HEADER));
        if (w != (ssize_t)strlen(HEADER))
            e = w < 0 ? errno : EIO;
    }
    if (e != 0) {
        mg_manifest_log_close(l);
        return mg_error_set(err, MG_E_IO, "cannot update %s/" MG_MANIFEST_FILE ": %s", dir,
                            strerror(e));
    }
    if (r.torn)
        mg_info("%s/" MG_MANIFEST_FILE ": cut an unfinished last line (a run was stopped while "
                "writing it)",
                dir);
    if (r.damaged > 0)
        mg_warn("%s/" MG_MANIFEST_FILE ": %lu damaged line%s (the first is line %lu); they are "
                "left out, and the messages they named are recorded again",
                dir, r.damaged, r.damaged == 1 ? "" : "s", r.first_damaged);
    if (l->n > 1)
        qsort(l->uids, l->n, sizeof(*l->uids), cmp_u32);
    *out = l;
    return MG_OK;
}

void mg_manifest_log_close(struct mg_manifest_log *l)
{
    if (l == NULL)
        return;
    if (l->fd >= 0)
        close(l->fd);
    pthread_mutex_destroy(&l->lock);
    free(l->uids);
    free(l);
}

bool mg_manifest_log_has(const struct mg_manifest_log *l, uint32_t uid)
{
    return l->n > 0 && bsearch(&uid, l->uids, l->n, sizeof(*l->uids), cmp_u32) != NULL;
}

enum mg_code mg_manifest_log_append(struct mg_manifest_log *l, const struct mg_manifest_entry *v,
                                    size_t n, struct mg_error *err)
{
    if (n == 0)
        return MG_OK;
    char *buf = malloc(n * MG_MANIFEST_LINE_MAX);
    if (buf == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int k = mg_manifest_format_line(&v[i], buf + len, MG_MANIFEST_LINE_MAX);
        if (k > 0)
            len += (size_t)k;
    }
    pthread_mutex_lock(&l->lock);
    int e = l->broken ? EIO : 0;
    for (size_t off = 0; e == 0 && off < len;) {
        ssize_t w = write(l->fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            e = w < 0 ? errno : EIO;
        else
            off += (size_t)w;
    }
    if (e == 0 && fsync(l->fd) != 0)
        e = errno;
    bool was_broken = l->broken;
    if (e != 0)
        l->broken = true;
    pthread_mutex_unlock(&l->lock);
    free(buf);
    if (e == 0)
        return MG_OK;
    if (was_broken)
        return mg_error_set(err, MG_E_IO, "%s/" MG_MANIFEST_FILE " takes no more entries", l->dir);
    return mg_error_set(err, MG_E_IO, "cannot record checksums in %s/" MG_MANIFEST_FILE ": %s",
                        l->dir, strerror(e));
}

enum mg_code mg_manifest_log_forget(struct mg_manifest_log *l, int dirfd, uint32_t *uids, size_t n,
                                    struct mg_error *err)
{
    if (n == 0)
        return MG_OK;
    qsort(uids, n, sizeof(*uids), cmp_u32);
    pthread_mutex_lock(&l->lock);
    int e = l->broken ? EIO : rewrite(dirfd, l, uids, n);
    pthread_mutex_unlock(&l->lock);
    if (e != 0)
        return mg_error_set(err, MG_E_IO, "cannot update %s/" MG_MANIFEST_FILE ": %s", l->dir,
                            strerror(e));
    return MG_OK;
}
