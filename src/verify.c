/* verify.c - see include/mailgrab/verify.h: one mailbox directory */
#include "mailgrab/verify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailgrab/cancel.h"
#include "mailgrab/manifest.h"
#include "mailgrab/store.h"

/* Names kept for reporting live in one growing pool, by offset. */
struct pool {
    char *s;
    size_t n, cap;
};

static int pool_add(struct pool *p, const char *s, size_t len, size_t *off)
{
    if (p->n + len + 1 > p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4096;
        while (cap < p->n + len + 1)
            cap *= 2;
        char *v = realloc(p->s, cap);
        if (v == NULL)
            return -1;
        p->s = v;
        p->cap = cap;
    }
    memcpy(p->s + p->n, s, len);
    p->s[p->n + len] = '\0';
    *off = p->n;
    p->n += len + 1;
    return 0;
}

struct rec { /* a manifest entry */
    uint32_t uid;
    bool seen; /* a file for it was found */
    char origin;
    size_t seq;
    uint64_t size;
    unsigned char sha256[MG_SHA256_LEN];
    size_t name;
};

struct file { /* a stored file named for a UID */
    uint32_t uid;
    bool plain;
    size_t name; /* relative to the mailbox directory */
    uint64_t size;
};

struct check {
    const char *label;
    FILE *out;
    struct mg_verify_tally *t;
    struct pool names;
    struct rec *recs;
    size_t nrecs, caprecs;
    struct file *files;
    size_t nfiles, capfiles;
    bool oom;
};

static void *grow(void *v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return v;
    size_t c = *cap ? *cap * 2 : 1024;
    void *w = reallocarray(v, c, size);
    if (w != NULL)
        *cap = c;
    return w;
}

/* name with control bytes as %XX: a file name is anyone's, and must not
 * drive the terminal. Mailbox directory names keep their UTF-8 and their
 * own %XX (mboxname.h), as the user sees them in the file system. */
static void put_name(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fprintf(out, "%%%02X", c);
        else
            fputc(c, out);
    }
}

static void problem(struct check *c, const char *what, const char *name, const char *tail)
{
    fprintf(c->out, "%s ", what);
    put_name(c->out, c->label);
    if (name != NULL) {
        fputc('/', c->out);
        put_name(c->out, name);
    }
    fprintf(c->out, "%s\n", tail != NULL ? tail : "");
}

static void add_rec(void *ctx, const struct mg_manifest_entry *e)
{
    struct check *c = ctx;
    struct rec *v = grow(c->recs, &c->caprecs, c->nrecs, sizeof(*v));
    size_t off;
    if (v == NULL || pool_add(&c->names, e->name, e->name_len, &off) != 0) {
        c->oom = true;
        c->recs = v != NULL ? v : c->recs;
        return;
    }
    c->recs = v;
    struct rec *r = &c->recs[c->nrecs];
    r->uid = e->uid;
    r->seen = false;
    r->origin = e->origin;
    r->seq = c->nrecs;
    r->size = e->size;
    memcpy(r->sha256, e->sha256, sizeof(r->sha256));
    r->name = off;
    c->nrecs++;
}

static int cmp_rec(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    if (x->uid != y->uid)
        return (x->uid > y->uid) - (x->uid < y->uid);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int cmp_file(const void *a, const void *b)
{
    const struct file *x = a, *y = b;
    return (x->uid > y->uid) - (x->uid < y->uid);
}

/* Sort by UID; of several lines for one UID the last one counts. */
static void settle_recs(struct check *c)
{
    if (c->nrecs > 1)
        qsort(c->recs, c->nrecs, sizeof(*c->recs), cmp_rec);
    size_t k = 0;
    for (size_t i = 0; i < c->nrecs; i++) {
        if (k > 0 && c->recs[k - 1].uid == c->recs[i].uid)
            k--;
        c->recs[k++] = c->recs[i];
    }
    c->nrecs = k;
}

static struct rec *find_rec(struct check *c, uint32_t uid)
{
    struct rec key = {.uid = uid};
    size_t lo = 0, hi = c->nrecs;
    while (lo < hi) { /* settle_recs left one per UID */
        size_t mid = lo + (hi - lo) / 2;
        if (c->recs[mid].uid < key.uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nrecs && c->recs[lo].uid == uid ? &c->recs[lo] : NULL;
}

static bool ours(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
           strcmp(name, ".mailgrab-state") == 0 || strcmp(name, MG_MANIFEST_FILE) == 0 ||
           strncmp(name, MG_TMP_PREFIX, strlen(MG_TMP_PREFIX)) == 0;
}

static bool maildir_folder(const char *name)
{
    return strcmp(name, "cur") == 0 || strcmp(name, "new") == 0 || strcmp(name, "tmp") == 0;
}

/* Every entry of one directory: message files, or unexpected ones.
 * top: the mailbox directory itself, where a Maildir's folders are. */
static enum mg_code list_dir(struct check *c, int dirfd, const char *prefix, enum mg_format f,
                             bool top, struct mg_error *err)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return mg_error_set(err, MG_E_IO, "cannot read %s/%s: %s", c->label, prefix,
                            strerror(errno));
    }
    rewinddir(d); /* the descriptor may have been read before */
    struct dirent *de;
    while (!c->oom && (de = readdir(d)) != NULL) {
        if (ours(de->d_name))
            continue;
        struct stat sb;
        if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* gone meanwhile */
        if (top && f == MG_FORMAT_MAILDIR && S_ISDIR(sb.st_mode) && maildir_folder(de->d_name))
            continue;
        char rel[512];
        int len = snprintf(rel, sizeof(rel), "%s%s", prefix, de->d_name);
        if (len < 0 || (size_t)len >= sizeof(rel))
            len = (int)sizeof(rel) - 1;
        uint32_t uid = mg_store_name_uid(f, de->d_name);
        if (uid == 0 || !S_ISREG(sb.st_mode)) {
            c->t->unexpected++;
            problem(c, "unexpected", rel, uid != 0 ? " (not a plain file)" : NULL);
            continue;
        }
        struct file *v = grow(c->files, &c->capfiles, c->nfiles, sizeof(*v));
        size_t off;
        if (v == NULL || pool_add(&c->names, rel, (size_t)len, &off) != 0) {
            c->files = v != NULL ? v : c->files;
            c->oom = true;
            break;
        }
        c->files = v;
        c->files[c->nfiles++] = (struct file){uid, true, off, (uint64_t)sb.st_size};
    }
    closedir(d);
    if (c->oom)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    return MG_OK;
}

static enum mg_code list_files(struct check *c, int dirfd, struct mg_error *err)
{
    struct stat sb;
    bool maildir = fstatat(dirfd, "cur", &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode);
    if (!maildir)
        return list_dir(c, dirfd, "", MG_FORMAT_EML, true, err);
    enum mg_code rc = list_dir(c, dirfd, "", MG_FORMAT_MAILDIR, true, err);
    const char *subs[] = {"cur", "new"};
    for (size_t i = 0; rc == MG_OK && i < 2; i++) {
        int fd = openat(dirfd, subs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        char prefix[8];
        snprintf(prefix, sizeof(prefix), "%s/", subs[i]);
        rc = list_dir(c, fd, prefix, MG_FORMAT_MAILDIR, false, err);
        close(fd);
    }
    return rc;
}

/* Each stored file against its manifest entry, read once. */
static void check_files(struct check *c, int dirfd)
{
    if (c->nfiles > 1)
        qsort(c->files, c->nfiles, sizeof(*c->files), cmp_file);
    for (size_t i = 0; i < c->nfiles && !mg_cancelled(); i++) {
        struct file *f = &c->files[i];
        const char *name = c->names.s + f->name;
        if (i > 0 && c->files[i - 1].uid == f->uid) {
            char tail[64];
            snprintf(tail, sizeof(tail), " (a second file for uid %u)", f->uid);
            c->t->unexpected++;
            problem(c, "unexpected", name, tail);
            f->plain = false;
            continue;
        }
        c->t->checked++;
        struct rec *r = find_rec(c, f->uid);
        if (r == NULL) {
            c->t->unrecorded++;
            problem(c, "unrecorded", name, NULL);
            continue;
        }
        r->seen = true;
        uint64_t size;
        unsigned char sha[MG_SHA256_LEN];
        struct mg_error err;
        if (mg_manifest_hash_file(dirfd, name, &size, sha, &err) != MG_OK) {
            c->t->altered++;
            problem(c, "altered", name, " (cannot be read)");
            f->plain = false;
            continue;
        }
        f->size = size;
        if (size != r->size || memcmp(sha, r->sha256, sizeof(sha)) != 0) {
            c->t->altered++;
            problem(c, "altered", name, NULL);
            f->plain = false; /* already reported */
        }
    }
    for (size_t i = 0; i < c->nrecs; i++) {
        if (c->recs[i].seen)
            continue;
        c->t->deleted++;
        problem(c, "deleted", c->names.s + c->recs[i].name, NULL);
    }
}

static const struct file *find_file(const struct check *c, uint32_t uid)
{
    struct file key = {.uid = uid};
    if (c->nfiles == 0)
        return NULL;
    return bsearch(&key, c->files, c->nfiles, sizeof(*c->files), cmp_file);
}

/* What the server lists against what is stored. A message deleted from the
 * backup was said so already. */
static void check_server(struct check *c, const struct mg_msglist *server)
{
    for (size_t i = 0; i < server->n; i++) {
        const struct mg_msg *m = &server->v[i];
        const struct file *f = find_file(c, m->uid);
        /* bsearch may land on a duplicate: the first of a UID is the one */
        while (f != NULL && f > c->files && f[-1].uid == m->uid)
            f--;
        if (f == NULL) {
            const struct rec *r = find_rec(c, m->uid);
            if (r == NULL || r->seen) {
                char tail[32];
                snprintf(tail, sizeof(tail), " uid %u", m->uid);
                c->t->missing++;
                problem(c, "missing", NULL, tail);
            }
            continue;
        }
        if (f->plain && f->size != m->size) {
            char tail[96];
            snprintf(tail, sizeof(tail), " (%llu bytes stored, the server lists %u)",
                     (unsigned long long)f->size, m->size);
            c->t->size++;
            problem(c, "size", c->names.s + f->name, tail);
        }
    }
}

enum mg_code mg_verify_dir(const char *dir, const char *label, const struct mg_msglist *server,
                           FILE *out, struct mg_verify_tally *t, struct mg_error *err)
{
    struct check c = {.label = label, .out = out, .t = t};
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0)
        return mg_error_set(err, MG_E_IO, "cannot open %s: %s", dir, strerror(errno));
    t->mailboxes++;
    struct mg_manifest_reader r;
    mg_manifest_reader_init(&r, add_rec, &c);
    bool exists;
    enum mg_code rc = mg_manifest_read(dirfd, dir, &r, &exists, err);
    if (rc == MG_OK && c.oom)
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    if (rc == MG_OK && r.damaged > 0) {
        char tail[64];
        snprintf(tail, sizeof(tail), " line %lu", r.first_damaged);
        if (r.damaged > 1)
            snprintf(tail + strlen(tail), sizeof(tail) - strlen(tail), " (and %lu more)",
                     r.damaged - 1);
        t->damaged++;
        problem(&c, "damaged", MG_MANIFEST_FILE, tail);
    }
    if (rc == MG_OK) {
        settle_recs(&c);
        rc = list_files(&c, dirfd, err);
    }
    if (rc == MG_OK)
        check_files(&c, dirfd);
    /* A signal stops a long read at the next file: what was checked is
     * incomplete, and said so. */
    if (rc == MG_OK && mg_cancelled())
        rc = mg_cancel_error(err);
    if (rc == MG_OK && server != NULL)
        check_server(&c, server);
    free(c.recs);
    free(c.files);
    free(c.names.s);
    close(dirfd);
    return rc;
}

size_t mg_verify_problems(const struct mg_verify_tally *t)
{
    return t->missing + t->deleted + t->altered + t->size + t->unexpected + t->unrecorded +
           t->damaged;
}
