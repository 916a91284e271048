/* restore.c - see include/mailgrab/restore.h */
#include "mailgrab/restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/cancel.h"
#include "mailgrab/fsutil.h"
#include "mailgrab/gmail.h"
#include "mailgrab/imap.h"
#include "mailgrab/log.h"
#include "mailgrab/manifest.h"
#include "mailgrab/mboxname.h"
#include "mailgrab/store.h"
#include "mailgrab/strmap.h"
#include "mailgrab/tls.h"

#define BATCH_MSGS 128          /* messages a session takes at a time */
#define BATCH_BYTES (32u << 20) /* ... or about this many bytes */
#define MAX_TRIES 4             /* sends of one message cut short, then given up */
#define OPEN_TRIES 5            /* failed logins in a row before a worker retires */
#define FIND_MAX 64             /* candidates looked at for an uncertain message */
#define JOURNAL_LINE 4096

enum state { TODO, UNSURE, DONE, FAILED, SAME };

struct msg {
    char *rel; /* path below DIR */
    unsigned dir, box;
    uint32_t uid; /* in the backup */
    uint64_t size;
    time_t mtime;
    char flags[8];
    enum state state;
    unsigned tries;
};

struct target {
    char utf8[1024];
    char imap[1024];
    bool refused; /* CREATE refused: its messages fail */
    struct mg_mailbox_report *rep;
};

struct run {
    const struct mg_account *a;
    const char *dir;
    struct mg_server srv;
    const struct mg_creds *cr;
    char **dirs;
    size_t ndirs;
    struct target *boxes;
    size_t nboxes;
    struct msg *msgs;
    size_t nmsgs, capmsgs;
    struct mg_strmap journal; /* "dir\tuid" -> count 1 tried, 2 done; "T\tbox\tuid": taken */
    int jfd;
    pthread_mutex_t mu; /* the queue, the journal, the counts, the sessions */
    size_t next;
    size_t *retry;
    size_t nretry;
    struct mg_imap **sess; /* one per worker, for cancelling */
    unsigned workers, active;
    atomic_size_t appended, settled;
    atomic_size_t looked, found; /* uncertain messages looked for, found there */
    atomic_uint_fast64_t bytes;
    size_t total;
    bool stop;
    struct mg_error fatal;
    struct mg_error last;  /* why a worker retired */
    struct mg_imap *first; /* the control session, handed to worker 0 */
    /* A Gmail backup into a server with Gmail's labels: the backup's All
     * Mail (box allbox) goes to the server's \All mailbox, each message
     * once, and gets its labels from labels.jsonl; the label folders' links
     * are not appended again. */
    bool gmail;
    size_t allbox;
    struct gm_label *lab; /* sorted by key */
    size_t nlab;
};

struct gm_label {
    char *key;  /* "<mailbox directory>\t<uid>" */
    char *line; /* its labels.jsonl line */
};

int mg_restore_box_name(const char *dir, char *out, size_t cap)
{
    const char *gen = strstr(dir, "%uidvalidity=");
    size_t n = gen ? (size_t)(gen - dir) : strlen(dir);
    char base[MG_MBOX_DIR_MAX + 1];
    if (n >= sizeof(base))
        return -1;
    memcpy(base, dir, n);
    base[n] = '\0';
    return mg_mbox_from_path(base, out, cap);
}

/* -- the backup, read back ------------------------------------------------ */

static int add_msg(struct run *r, const char *rel, unsigned dir, unsigned box, uint32_t uid,
                   const struct stat *sb, const char *flags)
{
    if (r->nmsgs == r->capmsgs) {
        size_t cap = r->capmsgs ? 2 * r->capmsgs : 1024;
        struct msg *v = reallocarray(r->msgs, cap, sizeof(*v));
        if (v == NULL)
            return -1;
        r->msgs = v;
        r->capmsgs = cap;
    }
    struct msg *m = &r->msgs[r->nmsgs];
    memset(m, 0, sizeof(*m));
    m->rel = strdup(rel);
    if (m->rel == NULL)
        return -1;
    m->dir = dir;
    m->box = box;
    m->uid = uid;
    m->size = (uint64_t)sb->st_size;
    m->mtime = sb->st_mtime;
    size_t k = 0;
    for (const char *p = flags; p && *p && k + 1 < sizeof(m->flags); p++)
        if (strchr("DFRST", *p) != NULL && strchr(m->flags, *p) == NULL)
            m->flags[k++] = *p;
    r->nmsgs++;
    return 0;
}

/* Every message file of one mailbox directory (eml, or Maildir cur/new). */
static enum mg_code scan_dir(struct run *r, unsigned dir, unsigned box, struct mg_error *err)
{
    char base[PATH_MAX];
    snprintf(base, sizeof(base), "%s/%s", r->dir, r->dirs[dir]);
    struct stat sb;
    char cur[PATH_MAX + 8];
    snprintf(cur, sizeof(cur), "%s/cur", base);
    bool maildir = stat(cur, &sb) == 0 && S_ISDIR(sb.st_mode);
    static const char *const maildir_subs[] = {"cur", "new"};
    static const char *const eml_subs[] = {""};
    const char *const *subs = maildir ? maildir_subs : eml_subs;
    size_t nsubs = maildir ? 2 : 1;
    for (size_t i = 0; i < nsubs; i++) {
        char path[PATH_MAX + 8];
        snprintf(path, sizeof(path), "%s%s%s", base, subs[i][0] ? "/" : "", subs[i]);
        DIR *d = opendir(path);
        if (d == NULL) {
            if (errno == ENOENT)
                continue;
            return mg_error_set(err, MG_E_IO, "cannot read %s: %s", path, strerror(errno));
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            uint32_t uid =
                mg_store_name_uid(maildir ? MG_FORMAT_MAILDIR : MG_FORMAT_EML, e->d_name);
            if (uid == 0)
                continue;
            if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
                continue;
            const char *info = maildir ? strstr(e->d_name, ":2,") : NULL;
            char rel[PATH_MAX];
            snprintf(rel, sizeof(rel), "%s%s%s/%s", r->dirs[dir], subs[i][0] ? "/" : "", subs[i],
                     e->d_name);
            if (add_msg(r, rel, dir, box, uid, &sb, info ? info + 3 : NULL) != 0) {
                closedir(d);
                return mg_error_set(err, MG_E_INTERNAL, "out of memory");
            }
        }
        closedir(d);
    }
    return MG_OK;
}

static bool wanted(const struct mg_restore_opts *o, const char *utf8)
{
    if (o->nmailboxes == 0)
        return true;
    for (size_t i = 0; i < o->nmailboxes; i++)
        if (strcmp(o->mailboxes[i], utf8) == 0 ||
            (strcasecmp(utf8, "INBOX") == 0 && strcasecmp(o->mailboxes[i], "INBOX") == 0))
            return true;
    return false;
}

static int cmp_msg(const void *x, const void *y)
{
    const struct msg *a = x, *b = y;
    if (a->box != b->box)
        return a->box < b->box ? -1 : 1;
    if (a->dir != b->dir)
        return a->dir < b->dir ? -1 : 1;
    return a->uid < b->uid ? -1 : a->uid > b->uid;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* -- generations merged --------------------------------------------------- */

struct sums {
    struct mg_strmap by_uid; /* "uid" -> bytes: index into hex */
    char (*hex)[2 * MG_SHA256_LEN + 1];
    size_t n, cap;
};

static void hex_of(const unsigned char *sha, char *out)
{
    for (size_t i = 0; i < MG_SHA256_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", sha[i]);
}

static void sum_entry(void *ctx, const struct mg_manifest_entry *e)
{
    struct sums *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        void *v = reallocarray(s->hex, cap, sizeof(*s->hex));
        if (v == NULL)
            return;
        s->hex = v;
        s->cap = cap;
    }
    char k[16];
    int kn = snprintf(k, sizeof(k), "%u", e->uid);
    struct mg_strmap_entry *m = mg_strmap_get(&s->by_uid, k, (size_t)kn, true);
    if (m == NULL)
        return;
    hex_of(e->sha256, s->hex[s->n]);
    m->bytes = s->n++;
    m->count = e->size;
}

/* "size sha256" of a message, from its directory's manifest, else its file. */
static int message_sum(struct run *r, const struct msg *m, struct sums *s, char *out, size_t cap)
{
    char k[16];
    int kn = snprintf(k, sizeof(k), "%u", m->uid);
    struct mg_strmap_entry *e = mg_strmap_get(&s->by_uid, k, (size_t)kn, false);
    if (e != NULL && e->count == m->size) {
        snprintf(out, cap, "%llu %s", (unsigned long long)m->size, s->hex[e->bytes]);
        return 0;
    }
    int dfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    unsigned char sha[MG_SHA256_LEN];
    uint64_t size;
    struct mg_error err;
    enum mg_code rc = mg_manifest_hash_file(dfd, m->rel, &size, sha, &err);
    close(dfd);
    if (rc != MG_OK)
        return -1;
    char hex[2 * MG_SHA256_LEN + 1];
    hex_of(sha, hex);
    snprintf(out, cap, "%llu %s", (unsigned long long)size, hex);
    return 0;
}

/* A mailbox whose UIDVALIDITY changed has its messages in several
 * generations, mostly the same ones renumbered: a message whose bytes a
 * newer generation holds too is restored once, from the newest. */
static enum mg_code merge_generations(struct run *r, size_t box, struct mg_error *err)
{
    struct mg_strmap seen;
    mg_strmap_init(&seen);
    enum mg_code rc = MG_OK;
    size_t same = 0;
    /* msgs are sorted by box, dir, uid; the newest generation sorts last. */
    size_t lo = 0, hi = 0;
    while (lo < r->nmsgs && r->msgs[lo].box != box)
        lo++;
    hi = lo;
    while (hi < r->nmsgs && r->msgs[hi].box == box)
        hi++;
    size_t end = hi;
    while (end > lo && rc == MG_OK) {
        unsigned dir = r->msgs[end - 1].dir;
        size_t start = end;
        while (start > lo && r->msgs[start - 1].dir == dir)
            start--;
        struct sums s = {0};
        mg_strmap_init(&s.by_uid);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", r->dir, r->dirs[dir]);
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd >= 0) {
            struct mg_manifest_reader rd;
            mg_manifest_reader_init(&rd, sum_entry, &s);
            bool exists;
            struct mg_error merr;
            if (mg_manifest_read(dfd, path, &rd, &exists, &merr) == MG_OK)
                mg_manifest_reader_end(&rd);
            close(dfd);
        }
        struct mg_strmap mine;
        mg_strmap_init(&mine);
        for (size_t i = start; i < end; i++) {
            char key[128];
            if (message_sum(r, &r->msgs[i], &s, key, sizeof(key)) != 0)
                continue; /* unreadable: restored (and reported) as it is */
            if (mg_strmap_get(&seen, key, strlen(key), false) != NULL) {
                r->msgs[i].state = SAME;
                same++;
                continue;
            }
            if (mg_strmap_get(&mine, key, strlen(key), true) == NULL) {
                rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
                break;
            }
        }
        /* Twins within one generation are two messages: both go. */
        size_t nk;
        struct mg_strmap_entry **v = mg_strmap_sorted(&mine, &nk);
        for (size_t i = 0; v != NULL && i < nk; i++)
            mg_strmap_get(&seen, v[i]->key, v[i]->keylen, true);
        free(v);
        mg_strmap_finish(&mine);
        mg_strmap_finish(&s.by_uid);
        free(s.hex);
        end = start;
    }
    mg_strmap_finish(&seen);
    if (same > 0)
        mg_info("%s: %zu messages of older generations are also in a newer one: restored once",
                r->boxes[box].utf8, same);
    return rc;
}

static enum mg_code read_backup(struct run *r, const struct mg_restore_opts *o,
                                struct mg_report *rep, struct mg_error *err)
{
    enum mg_code rc = mg_store_mailbox_dirs(r->dir, &r->dirs, &r->ndirs, err);
    if (rc != MG_OK)
        return rc;
    if (r->ndirs == 0)
        return mg_error_set(err, MG_E_USAGE,
                            "%s holds no mailgrab backup (no mailbox directory in it); give the "
                            "directory a backup wrote (its --output, or OUTPUT/ACCOUNT when "
                            "accounts share one)",
                            r->dir);
    /* NAME sorts before NAME%uidvalidity=N: the generations follow it. */
    qsort(r->dirs, r->ndirs, sizeof(*r->dirs), cmp_str);
    r->boxes = calloc(r->ndirs, sizeof(*r->boxes));
    rep->boxes = calloc(r->ndirs, sizeof(*rep->boxes));
    if (r->boxes == NULL || rep->boxes == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < r->ndirs; i++) {
        char utf8[1024];
        if (mg_restore_box_name(r->dirs[i], utf8, sizeof(utf8)) != 0 || !wanted(o, utf8))
            continue;
        size_t b = 0;
        while (b < r->nboxes && strcmp(r->boxes[b].utf8, utf8) != 0)
            b++;
        if (b == r->nboxes) {
            struct target *t = &r->boxes[r->nboxes++];
            snprintf(t->utf8, sizeof(t->utf8), "%s", utf8);
            if (mg_mbox_to_imap(utf8, t->imap, sizeof(t->imap)) != 0) {
                mg_warn("%s/%s: the mailbox name is not UTF-8; its messages are not restored",
                        r->dir, r->dirs[i]);
                r->nboxes--;
                continue;
            }
            t->rep = &rep->boxes[rep->nboxes++];
            snprintf(t->rep->name, sizeof(t->rep->name), "%s", utf8);
            snprintf(t->rep->dir, sizeof(t->rep->dir), "%s/%s", r->dir, r->dirs[i]);
        }
        rc = scan_dir(r, (unsigned)i, (unsigned)b, err);
        if (rc != MG_OK)
            return rc;
    }
    if (o->nmailboxes > 0 && r->nboxes < o->nmailboxes)
        for (size_t i = 0; i < o->nmailboxes; i++) {
            size_t b = 0;
            while (b < r->nboxes && !wanted(&(struct mg_restore_opts){.mailboxes = &o->mailboxes[i],
                                                                      .nmailboxes = 1},
                                            r->boxes[b].utf8))
                b++;
            if (b == r->nboxes)
                return mg_error_set(err, MG_E_MAILBOX,
                                    "the backup in %s holds no mailbox '%s' (check --mailbox)",
                                    r->dir, o->mailboxes[i]);
        }
    qsort(r->msgs, r->nmsgs, sizeof(*r->msgs), cmp_msg);
    for (size_t b = 0; b < r->nboxes; b++) {
        unsigned first = UINT_MAX;
        bool several = false;
        for (size_t i = 0; i < r->nmsgs; i++) {
            if (r->msgs[i].box != b)
                continue;
            if (first == UINT_MAX)
                first = r->msgs[i].dir;
            several = several || r->msgs[i].dir != first;
        }
        if (several && (rc = merge_generations(r, b, err)) != MG_OK)
            return rc;
    }
    for (size_t i = 0; i < r->nmsgs; i++)
        if (r->msgs[i].state != SAME)
            r->boxes[r->msgs[i].box].rep->listed++;
    return MG_OK;
}

/* -- the journal ---------------------------------------------------------- */

static void journal_key(const struct run *r, const struct msg *m, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s\t%u", r->dirs[m->dir], m->uid);
}

/* A UID of the server's taken by a restored message: never claimed for an
 * uncertain one. */
static void journal_taken(struct run *r, const char *box, uint32_t uid)
{
    char k[JOURNAL_LINE];
    int n = snprintf(k, sizeof(k), "T\t%s\t%u", box, uid);
    if (uid != 0 && n > 0 && (size_t)n < sizeof(k))
        mg_strmap_get(&r->journal, k, (size_t)n, true);
}

static bool is_taken(struct run *r, const char *box, uint32_t uid)
{
    char k[JOURNAL_LINE];
    int n = snprintf(k, sizeof(k), "T\t%s\t%u", box, uid);
    return n > 0 && (size_t)n < sizeof(k) && mg_strmap_get(&r->journal, k, (size_t)n, false);
}

static enum mg_code journal_open(struct run *r, struct mg_error *err)
{
    char who[600], comp[MG_MBOX_PATH_MAX + 8], path[PATH_MAX];
    snprintf(who, sizeof(who), "%s@%s:%s", r->a->user ? r->a->user : "", r->a->server, r->a->port);
    mg_mbox_to_path(who, comp, sizeof(comp));
    snprintf(path, sizeof(path), "%s/.mailgrab-restore-%s", r->dir, comp);
    r->jfd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (r->jfd < 0)
        return mg_error_set(err, MG_E_IO, "cannot open the restore journal %s: %s", path,
                            strerror(errno));
    /* A journal created now must still be there after a power loss. */
    int dfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        return mg_error_set(err, MG_E_IO, "cannot sync %s: %s", r->dir, strerror(e));
    }
    close(dfd);
    FILE *f = fdopen(dup(r->jfd), "r");
    if (f == NULL)
        return mg_error_set(err, MG_E_IO, "cannot read %s: %s", path, strerror(errno));
    char line[JOURNAL_LINE];
    bool torn = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        torn = len == 0 || line[len - 1] != '\n';
        if (torn)
            break; /* the last line of a killed run, or garbage: ignored */
        line[--len] = '\0';
        /* A dir uid | D dir uid box newuid: the key is "dir\tuid". */
        char *f1 = strchr(line, '\t');
        char *f2 = f1 ? strchr(f1 + 1, '\t') : NULL;
        if (f2 == NULL || (line[0] != 'A' && line[0] != 'D'))
            continue;
        char *f3 = strchr(f2 + 1, '\t');
        size_t klen = f3 ? (size_t)(f3 - f1 - 1) : strlen(f1 + 1);
        struct mg_strmap_entry *e = mg_strmap_get(&r->journal, f1 + 1, klen, true);
        if (e == NULL) {
            fclose(f);
            return mg_error_set(err, MG_E_INTERNAL, "out of memory");
        }
        if (line[0] == 'A' && e->count < 1)
            e->count = 1;
        if (line[0] == 'D') {
            e->count = 2;
            char *f4 = f3 ? strchr(f3 + 1, '\t') : NULL;
            if (f3 && f4) {
                *f4 = '\0';
                journal_taken(r, f3 + 1, (uint32_t)strtoul(f4 + 1, NULL, 10));
            }
        }
    }
    fclose(f);
    /* A torn last line: start the next one on a line of its own. */
    off_t end = lseek(r->jfd, 0, SEEK_END);
    char c = '\n';
    if (end > 0 && pread(r->jfd, &c, 1, end - 1) == 1 && c != '\n' && mg_write_all(r->jfd, "\n", 1))
        return mg_error_set(err, MG_E_IO, "cannot write %s", path);
    (void)torn;
    return MG_OK;
}

/* Under r->mu. Marks of appends about to be sent are durable (synced)
 * before they go: a message the server may hold is never forgotten, even
 * if the machine loses power. A lost "done" line only costs a look on the
 * server next time. */
static enum mg_code journal_write(struct run *r, const char *text, size_t len, bool durable,
                                  struct mg_error *err)
{
    int e = mg_write_all(r->jfd, text, len);
    if (e == 0 && durable && fdatasync(r->jfd) != 0)
        e = errno;
    if (e != 0)
        return mg_error_set(err, MG_E_IO, "cannot write the restore journal in %s: %s", r->dir,
                            strerror(e));
    return MG_OK;
}

/* -- the workers ---------------------------------------------------------- */

struct worker {
    struct run *r;
    unsigned id;
    pthread_t t;
};

/* A batch: up to BATCH_MSGS of one mailbox, retries first. Under r->mu. */
static size_t take(struct run *r, size_t *out)
{
    size_t n = 0;
    uint64_t bytes = 0;
    while (r->nretry > 0 && n < BATCH_MSGS) {
        size_t i = r->retry[r->nretry - 1];
        if (n > 0 && r->msgs[i].box != r->msgs[out[0]].box)
            break;
        out[n++] = i;
        r->nretry--;
    }
    if (n > 0)
        return n;
    while (r->next < r->nmsgs && n < BATCH_MSGS && bytes < BATCH_BYTES) {
        struct msg *m = &r->msgs[r->next];
        if (m->state == DONE || m->state == FAILED || m->state == SAME ||
            r->boxes[m->box].refused) {
            r->next++;
            continue;
        }
        if (n > 0 && m->box != r->msgs[out[0]].box)
            break;
        out[n++] = r->next++;
        bytes += m->size;
    }
    return n;
}

static void settle(struct run *r, struct msg *m, enum state st)
{
    m->state = st;
    struct mg_mailbox_report *rep = r->boxes[m->box].rep;
    if (st == DONE) {
        rep->fetched++;
        rep->bytes += m->size;
        atomic_fetch_add(&r->appended, 1);
        atomic_fetch_add(&r->bytes, m->size);
    } else {
        rep->failed++;
        rep->code = MG_E_PARTIAL;
    }
    atomic_fetch_add(&r->settled, 1);
}

/* Record m as done (under r->mu). */
static enum mg_code done(struct run *r, struct msg *m, uint32_t newuid, struct mg_error *err)
{
    char key[JOURNAL_LINE], line[JOURNAL_LINE + 1100];
    journal_key(r, m, key, sizeof(key));
    int n = snprintf(line, sizeof(line), "D\t%s\t%s\t%u\n", key, r->boxes[m->box].imap, newuid);
    journal_taken(r, r->boxes[m->box].imap, newuid);
    settle(r, m, DONE);
    return journal_write(r, line, (size_t)n, false, err);
}

static void stop_run(struct run *r, const struct mg_error *err)
{
    if (!r->stop && r->fatal.code == MG_OK)
        r->fatal = *err;
    r->stop = true;
    for (unsigned i = 0; i < r->workers; i++)
        if (r->sess[i] != NULL)
            mg_imap_cancel(r->sess[i]);
}

static void set_session(struct run *r, unsigned id, struct mg_imap *s)
{
    pthread_mutex_lock(&r->mu);
    r->sess[id] = s;
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    if (stop && s != NULL)
        mg_imap_cancel(s);
}

/* The Message-ID of a file's header (bounded), "" if none. */
static void message_id(int fd, char *out, size_t cap)
{
    char buf[16384];
    out[0] = '\0';
    ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
    if (got <= 0)
        return;
    buf[got] = '\0';
    for (char *p = buf; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (*p == '\r' || *p == '\n')
            return; /* end of the header */
        if (strncasecmp(p, "Message-ID:", 11) != 0)
            continue;
        p += 11;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, "\r\n");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n > 0 && n < cap && n < 990) {
            memcpy(out, p, n);
            out[n] = '\0';
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x80 ||
                    out[i] == '"' || out[i] == '\\')
                    out[0] = '\0';
        }
        return;
    }
}

/* Is an uncertain m on the server already? */
static enum mg_code check(struct run *r, struct mg_imap *s, struct msg *m, int fd, bool *there,
                          uint32_t *uid, struct mg_error *err)
{
    char mid[1000];
    message_id(fd, mid, sizeof(mid));
    uint32_t uids[FIND_MAX];
    size_t n;
    *there = false;
    atomic_fetch_add(&r->looked, 1);
    enum mg_code rc = mg_imap_find(s, r->boxes[m->box].imap, mid, m->size, uids, FIND_MAX, &n, err);
    if (rc != MG_OK)
        return rc;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n && i < FIND_MAX && !*there; i++)
        if (!is_taken(r, r->boxes[m->box].imap, uids[i])) {
            *there = true;
            *uid = uids[i];
            atomic_fetch_add(&r->found, 1);
        }
    pthread_mutex_unlock(&r->mu);
    return MG_OK;
}

static void give_back(struct run *r, struct msg *m, const char *why)
{
    m->tries++;
    if (m->tries >= MAX_TRIES) {
        mg_warn("%s/%s: given up after %u tries (%s)", r->dir, m->rel, m->tries, why);
        settle(r, m, FAILED);
        return;
    }
    r->retry[r->nretry++] = (size_t)(m - r->msgs);
}

/* -- Gmail labels ---------------------------------------------------------- */

static int cmp_label(const void *a, const void *b)
{
    return strcmp(((const struct gm_label *)a)->key, ((const struct gm_label *)b)->key);
}

/* labels.jsonl's path "<dir>/<name>" or "<dir>/cur/<name>" as a key. */
static int label_key(const char *path, char *out, size_t cap)
{
    const char *slash = strchr(path, '/'), *base = strrchr(path, '/');
    if (slash == NULL)
        return -1;
    uint32_t uid = mg_store_name_uid(MG_FORMAT_EML, base + 1);
    if (uid == 0)
        uid = mg_store_name_uid(MG_FORMAT_MAILDIR, base + 1);
    if (uid == 0)
        return -1;
    return snprintf(out, cap, "%.*s\t%u", (int)(slash - path), path, uid) < (int)cap ? 0 : -1;
}

/* The labels of message m (pointers into buf), from labels.jsonl. */
static size_t labels_of(const struct run *r, const struct msg *m, char *buf, size_t cap,
                        const char **out, size_t max)
{
    char key[JOURNAL_LINE];
    snprintf(key, sizeof(key), "%s\t%u", r->dirs[m->dir], m->uid);
    struct gm_label want = {key, NULL};
    const struct gm_label *l = bsearch(&want, r->lab, r->nlab, sizeof(*r->lab), cmp_label);
    if (l == NULL)
        return 0;
    return mg_gmail_line_labels(l->line, buf, cap, out, max);
}

/* Give message m, stored on the server as uid, its labels (Gmail only). */
static enum mg_code label_it(struct run *r, struct mg_imap *s, const struct msg *m, uint32_t uid,
                             struct mg_error *err)
{
    if (!r->gmail || m->box != r->allbox)
        return MG_OK;
    if (uid == 0) {
        mg_warn("%s/%s: the server did not say where it stored the message (no APPENDUID); its "
                "labels are not given",
                r->dir, m->rel);
        return MG_OK;
    }
    char buf[8192];
    const char *labels[64];
    size_t n = labels_of(r, m, buf, sizeof(buf), labels, 64);
    return mg_imap_add_labels(s, r->boxes[m->box].imap, uid, labels, n, err);
}

static void find_all(const char *name, unsigned roles, void *ctx)
{
    char *all = ctx;
    if ((roles & MG_ROLE_ALL) && all[0] == '\0')
        snprintf(all, 1024, "%s", name);
}

struct ino {
    dev_t dev;
    ino_t ino;
};

static int cmp_ino(const void *a, const void *b)
{
    const struct ino *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return (x->ino > y->ino) - (x->ino < y->ino);
}

static bool file_id(const struct run *r, const struct msg *m, struct ino *id)
{
    char path[PATH_MAX];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s", r->dir, m->rel);
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    *id = (struct ino){sb.st_dev, sb.st_ino};
    return true;
}

/* A Gmail backup (labels.jsonl) into a server with Gmail's labels: its All
 * Mail into the server's \All mailbox, the label folders' hard links left
 * out (their messages are the same files), labels given after each APPEND.
 * Anything else (another server, no labels.jsonl) restores folder by
 * folder. */
static enum mg_code gmail_plan(struct run *r, struct mg_error *err)
{
    int dfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return MG_OK;
    struct mg_gmail_index ix;
    mg_gmail_index_init(&ix);
    size_t bad;
    enum mg_code rc = mg_gmail_index_load(&ix, dfd, &bad, err);
    close(dfd);
    char all[1024] = "";
    if (rc == MG_OK && ix.n > 0 && !(mg_imap_caps(r->first) & MG_CAP_GMAIL))
        mg_info("%s has no Gmail labels: the Gmail backup is restored folder by folder",
                r->srv.host);
    else if (rc == MG_OK && ix.n > 0)
        rc = mg_imap_mailboxes(r->first, find_all, all, err);
    if (rc != MG_OK || ix.n == 0 || all[0] == '\0') {
        mg_gmail_index_finish(&ix);
        return rc;
    }
    r->lab = calloc(ix.n, sizeof(*r->lab));
    for (size_t i = 0; r->lab != NULL && i < ix.cap; i++) {
        char key[JOURNAL_LINE];
        if (ix.v[i].msgid == 0 || ix.v[i].path == NULL || ix.v[i].line == NULL ||
            label_key(ix.v[i].path, key, sizeof(key)) != 0)
            continue;
        struct gm_label *l = &r->lab[r->nlab];
        l->key = strdup(key);
        l->line = ix.v[i].line;
        ix.v[i].line = NULL; /* now r->lab's */
        if (l->key == NULL) {
            free(l->line);
            continue;
        }
        r->nlab++;
    }
    mg_gmail_index_finish(&ix);
    if (r->lab == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    qsort(r->lab, r->nlab, sizeof(*r->lab), cmp_label);
    /* The backup's All Mail: the directory labels.jsonl's paths are in. */
    const char *tab = r->nlab ? strchr(r->lab[0].key, '\t') : NULL;
    size_t b = r->nboxes;
    for (size_t i = 0; tab != NULL && i < r->nmsgs && b == r->nboxes; i++) {
        const char *d = r->dirs[r->msgs[i].dir];
        if (strlen(d) == (size_t)(tab - r->lab[0].key) && strncmp(d, r->lab[0].key, strlen(d)) == 0)
            b = r->msgs[i].box;
    }
    if (b == r->nboxes)
        return MG_OK;
    snprintf(r->boxes[b].imap, sizeof(r->boxes[b].imap), "%s", all);
    struct ino *ids = calloc(r->nmsgs ? r->nmsgs : 1, sizeof(*ids));
    if (ids == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    size_t nids = 0;
    for (size_t i = 0; i < r->nmsgs; i++)
        if (r->msgs[i].box == b && file_id(r, &r->msgs[i], &ids[nids]))
            nids++;
    qsort(ids, nids, sizeof(*ids), cmp_ino);
    size_t links = 0;
    for (size_t i = 0; i < r->nmsgs; i++) {
        struct msg *m = &r->msgs[i];
        struct ino id;
        if (m->box == b || m->state == SAME || !file_id(r, m, &id) ||
            bsearch(&id, ids, nids, sizeof(*ids), cmp_ino) == NULL)
            continue;
        m->state = SAME; /* a label folder's link to a message of All Mail */
        r->boxes[m->box].rep->listed--;
        links++;
    }
    free(ids);
    r->gmail = true;
    r->allbox = b;
    mg_info("Gmail: %s goes to %s, each message once with its labels; %zu links in label "
            "folders are the same messages",
            r->boxes[b].utf8, all, links);
    return MG_OK;
}

/* One batch on session s. Returns MG_OK, or the session's failure. */
static enum mg_code run_batch(struct run *r, struct mg_imap *s, const size_t *idx, size_t n,
                              struct mg_error *err)
{
    struct mg_append_msg v[BATCH_MSGS];
    struct mg_append_reply out[BATCH_MSGS];
    size_t which[BATCH_MSGS];
    int fds[BATCH_MSGS];
    size_t k = 0;
    enum mg_code rc = MG_OK;
    const struct target *t = &r->boxes[r->msgs[idx[0]].box];
    /* "A\t<dir>\t<uid>\n" for each: always fits (a directory name is at
     * most MG_MBOX_DIR_MAX bytes, and its %uidvalidity=N suffix 24 more). */
    char lines[BATCH_MSGS * (MG_MBOX_DIR_MAX + 48)];
    size_t ln = 0;
    for (size_t i = 0; i < n; i++) {
        struct msg *m = &r->msgs[idx[i]];
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", r->dir, m->rel);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            mg_warn("%s: cannot be read (%s); not restored", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            pthread_mutex_lock(&r->mu);
            settle(r, m, FAILED);
            pthread_mutex_unlock(&r->mu);
            continue;
        }
        m->size = (uint64_t)sb.st_size;
        if (m->state == UNSURE) {
            bool there;
            uint32_t uid = 0;
            rc = check(r, s, m, fd, &there, &uid, err);
            if (rc == MG_OK && there)
                rc = label_it(r, s, m, uid, err);
            if (rc != MG_OK) {
                close(fd);
                pthread_mutex_lock(&r->mu);
                for (size_t j = 0; j < k; j++) {
                    close(fds[j]);
                    r->retry[r->nretry++] = which[j];
                }
                for (size_t j = i; j < n; j++)
                    r->retry[r->nretry++] = idx[j];
                pthread_mutex_unlock(&r->mu);
                return rc;
            }
            if (there) {
                close(fd);
                pthread_mutex_lock(&r->mu);
                if (done(r, m, uid, err) != MG_OK)
                    stop_run(r, err);
                pthread_mutex_unlock(&r->mu);
                continue;
            }
        }
        fds[k] = fd;
        which[k] = idx[i];
        v[k] = (struct mg_append_msg){fd, m->size, m->mtime, m->flags};
        char key[JOURNAL_LINE];
        journal_key(r, m, key, sizeof(key));
        int w = snprintf(lines + ln, sizeof(lines) - ln, "A\t%s\n", key);
        if (w < 0 || (size_t)w >= sizeof(lines) - ln) {
            /* Never sent unmarked: the rest waits for the next batch. */
            close(fd);
            pthread_mutex_lock(&r->mu);
            for (size_t j = i; j < n; j++)
                r->retry[r->nretry++] = idx[j];
            pthread_mutex_unlock(&r->mu);
            break;
        }
        ln += (size_t)w;
        k++;
    }
    if (k == 0)
        return MG_OK;
    /* Marked before anything is sent: a message the server may hold is
     * never appended again without looking. */
    pthread_mutex_lock(&r->mu);
    rc = journal_write(r, lines, ln, true, err);
    for (size_t i = 0; i < k; i++)
        r->msgs[which[i]].state = UNSURE;
    pthread_mutex_unlock(&r->mu);
    if (rc != MG_OK) {
        pthread_mutex_lock(&r->mu);
        stop_run(r, err);
        pthread_mutex_unlock(&r->mu);
        goto close_out;
    }
    size_t answered = 0;
    rc = mg_imap_append(s, t->imap, v, k, out, &answered, err);
    /* Labels before the message counts as done: one that did not get them
     * stays uncertain, and the next try finds it and gives them. */
    for (size_t i = 0; rc == MG_OK && i < k; i++)
        if (out[i].settled && out[i].ok) {
            enum mg_code lrc = label_it(r, s, &r->msgs[which[i]], out[i].uid, err);
            if (lrc != MG_OK) {
                out[i].settled = false;
                if (mg_imap_broken(s))
                    rc = lrc;
            }
        }
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < k; i++) {
        struct msg *m = &r->msgs[which[i]];
        if (!out[i].settled) {
            give_back(r, m, rc != MG_OK ? err->msg : "not answered");
        } else if (out[i].ok) {
            struct mg_error jerr;
            if (done(r, m, out[i].uid, &jerr) != MG_OK)
                stop_run(r, &jerr);
        } else if (out[i].quota) {
            struct mg_error q;
            mg_error_set(&q, MG_E_LIMIT,
                         "%s refuses more messages: %s (a quota: Gmail takes about 500 MB a day "
                         "over IMAP); what is restored is recorded, run again later for the rest",
                         r->srv.host, out[i].said);
            m->state = UNSURE;
            stop_run(r, &q);
        } else if (out[i].busy && m->tries + 1 < MAX_TRIES) {
            m->tries++;
            m->state = TODO;
            r->retry[r->nretry++] = which[i];
            struct mg_error b;
            mg_error_retry(&b, MG_E_PROTOCOL, MG_RETRY_LATER, "%s is busy: %s", r->srv.host,
                           out[i].said);
            r->last = b;
        } else if (out[i].trycreate && m->tries == 0) {
            m->tries++;
            m->state = TODO;
            r->retry[r->nretry++] = which[i];
        } else {
            mg_warn("%s/%s (%llu bytes) refused by %s: %s", r->dir, m->rel,
                    (unsigned long long)m->size, r->srv.host, out[i].said);
            settle(r, m, FAILED);
        }
    }
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < k; i++)
        if (out[i].settled && out[i].trycreate && r->msgs[which[i]].state == TODO) {
            struct mg_error cerr;
            if (mg_imap_create(s, t->imap, &cerr) != MG_OK)
                mg_warn("%s", cerr.msg);
            break;
        }
close_out:
    for (size_t i = 0; i < k; i++)
        close(fds[i]);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->r;
    struct mg_imap *s = NULL;
    if (w->id == 0) {
        s = r->first;
        r->first = NULL;
        set_session(r, 0, s);
    }
    unsigned fails = 0;
    size_t idx[BATCH_MSGS];
    for (;;) {
        pthread_mutex_lock(&r->mu);
        size_t n = r->stop || mg_cancelled() ? 0 : take(r, idx);
        pthread_mutex_unlock(&r->mu);
        if (n == 0)
            break;
        struct mg_error err;
        mg_error_clear(&err);
        enum mg_code rc = MG_OK;
        if (s == NULL) {
            rc = mg_imap_open(&r->srv, r->cr, &s, &err);
            if (rc == MG_OK)
                set_session(r, w->id, s);
        }
        if (rc == MG_OK)
            rc = run_batch(r, s, idx, n, &err);
        else {
            pthread_mutex_lock(&r->mu);
            for (size_t i = 0; i < n; i++)
                r->retry[r->nretry++] = idx[i];
            pthread_mutex_unlock(&r->mu);
        }
        if (rc == MG_OK) {
            fails = 0;
            continue;
        }
        if (s != NULL && mg_imap_broken(s)) {
            set_session(r, w->id, NULL);
            mg_imap_close(s, false);
            s = NULL;
        }
        pthread_mutex_lock(&r->mu);
        bool fatal = err.retry == MG_RETRY_NONE && err.code != MG_E_MAILBOX;
        if (fatal)
            stop_run(r, &err);
        r->last = err;
        pthread_mutex_unlock(&r->mu);
        if (fatal || ++fails >= OPEN_TRIES)
            break;
        mg_cancel_sleep(200u << (fails < 5 ? fails : 5));
    }
    set_session(r, w->id, NULL);
    mg_imap_close(s, s != NULL && !mg_imap_broken(s));
    pthread_mutex_lock(&r->mu);
    r->active--;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void show_progress(struct run *r, double secs, bool end)
{
    if (!mg_progress_enabled())
        return;
    if (end) {
        mg_progress_end();
        return;
    }
    char b[32];
    mg_human_bytes(atomic_load(&r->bytes), b, sizeof(b));
    size_t a = atomic_load(&r->appended);
    mg_progress_show("restore: %zu/%zu messages settled, %zu appended  %s  %.0f msg/s",
                     atomic_load(&r->settled), r->total, a, b, secs > 0 ? (double)a / secs : 0.0);
}

/* -- the run -------------------------------------------------------------- */

static enum mg_code create_boxes(struct run *r, struct mg_error *err)
{
    for (size_t b = 0; b < r->nboxes; b++) {
        struct target *t = &r->boxes[b];
        if (strcasecmp(t->utf8, "INBOX") == 0 || (r->gmail && b == r->allbox))
            continue;
        bool needed = false;
        for (size_t i = 0; i < r->nmsgs && !needed; i++)
            needed =
                r->msgs[i].box == b && (r->msgs[i].state == TODO || r->msgs[i].state == UNSURE);
        if (!needed)
            continue;
        enum mg_code rc = mg_imap_create(r->first, t->imap, err);
        if (rc == MG_E_MAILBOX) {
            mg_warn("%s; its messages are not restored", err->msg);
            t->refused = true;
            for (size_t i = 0; i < r->nmsgs; i++)
                if (r->msgs[i].box == b && (r->msgs[i].state == TODO || r->msgs[i].state == UNSURE))
                    settle(r, &r->msgs[i], FAILED);
            continue;
        }
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static enum mg_code run_workers(struct run *r, struct mg_error *err)
{
    size_t todo = 0;
    for (size_t i = 0; i < r->nmsgs; i++)
        todo += r->msgs[i].state == TODO || r->msgs[i].state == UNSURE;
    unsigned n = r->a->chunks ? r->a->chunks : 4;
    size_t batches = (todo + BATCH_MSGS - 1) / BATCH_MSGS;
    if (batches < n)
        n = batches ? (unsigned)batches : 1;
    struct worker *w = calloc(n, sizeof(*w));
    r->sess = calloc(n, sizeof(*r->sess));
    r->retry = calloc(r->nmsgs ? r->nmsgs : 1, sizeof(*r->retry));
    if (w == NULL || r->sess == NULL || r->retry == NULL) {
        free(w);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    r->workers = n;
    r->active = n;
    double t0 = now_s();
    unsigned started = 0;
    for (unsigned i = 0; i < n; i++) {
        w[i] = (struct worker){r, i, 0};
        if (pthread_create(&w[i].t, NULL, worker_main, &w[i]) != 0)
            break;
        started++;
    }
    if (started == 0) {
        free(w);
        return mg_error_set(err, MG_E_INTERNAL, "cannot start a thread");
    }
    pthread_mutex_lock(&r->mu);
    r->active = started;
    pthread_mutex_unlock(&r->mu);
    for (;;) {
        pthread_mutex_lock(&r->mu);
        unsigned active = r->active;
        if (mg_cancelled() && !r->stop) {
            struct mg_error c;
            mg_cancel_error(&c);
            stop_run(r, &c);
        }
        pthread_mutex_unlock(&r->mu);
        if (active == 0)
            break;
        show_progress(r, now_s() - t0, false);
        mg_cancel_sleep(250);
        if (mg_cancelled()) {
            pthread_mutex_lock(&r->mu);
            if (!r->stop) {
                struct mg_error c;
                mg_cancel_error(&c);
                stop_run(r, &c);
            }
            pthread_mutex_unlock(&r->mu);
        }
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(w[i].t, NULL);
    show_progress(r, now_s() - t0, true);
    free(w);
    if (r->first != NULL) {
        mg_imap_close(r->first, true);
        r->first = NULL;
    }
    return MG_OK;
}

enum mg_code mg_restore_account(const struct mg_account *a, const struct mg_creds *cr,
                                const struct mg_restore_opts *o, struct mg_report *rep)
{
    struct run r;
    memset(&r, 0, sizeof(r));
    r.a = a;
    r.dir = o->dir;
    r.cr = cr;
    r.jfd = -1;
    mg_strmap_init(&r.journal);
    pthread_mutex_init(&r.mu, NULL);
    struct mg_error err;
    mg_error_clear(&err);
    mg_error_clear(&r.fatal);
    mg_error_clear(&r.last);
    struct mg_tls_ctx *tls = NULL;
    int lock = -1;
    enum mg_code rc = MG_OK;
    struct stat sb;
    if (stat(o->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        rc = mg_error_set(&err, MG_E_USAGE, "%s: no such directory (give the backup to restore)",
                          o->dir);
        goto out;
    }
    rc = mg_store_lock(o->dir, &lock, &err);
    if (rc == MG_OK)
        rc = read_backup(&r, o, rep, &err);
    if (rc == MG_OK)
        rc = journal_open(&r, &err);
    if (rc != MG_OK)
        goto out;
    for (size_t i = 0; i < r.nmsgs; i++) {
        char key[JOURNAL_LINE];
        if (r.msgs[i].state == SAME)
            continue;
        journal_key(&r, &r.msgs[i], key, sizeof(key));
        struct mg_strmap_entry *e = mg_strmap_get(&r.journal, key, strlen(key), false);
        if (e != NULL && e->count == 2) {
            r.msgs[i].state = DONE;
            r.boxes[r.msgs[i].box].rep->skipped++;
        } else if (e != NULL) {
            r.msgs[i].state = UNSURE;
        }
    }
    r.total = 0;
    for (size_t i = 0; i < r.nmsgs; i++)
        r.total += r.msgs[i].state == TODO || r.msgs[i].state == UNSURE;
    rc = mg_tls_ctx_create(a->cafile, &tls, &err);
    if (rc != MG_OK)
        goto out;
    r.srv = (struct mg_server){a->server, a->port, (int)a->timeout, tls};
    if (r.total > 0) {
        /* One session first: a wrong password or certificate shows at once,
         * and the mailboxes are created before anyone appends. */
        rc = mg_imap_open(&r.srv, cr, &r.first, &err);
        if (rc == MG_OK)
            mg_info("%s: %zu messages to restore; %s", a->server, r.total,
                    mg_imap_literal_plus(r.first)
                        ? "the server takes LITERAL+: APPENDs go out in batches"
                        : "no LITERAL+: one APPEND at a time per session");
        if (rc == MG_OK)
            rc = gmail_plan(&r, &err);
        if (rc == MG_OK && r.gmail) { /* the label folders' links are not restored */
            r.total = 0;
            for (size_t i = 0; i < r.nmsgs; i++)
                r.total += r.msgs[i].state == TODO || r.msgs[i].state == UNSURE;
        }
        if (rc == MG_OK)
            rc = create_boxes(&r, &err);
        if (rc == MG_OK) {
            rep->connections = 1;
            rc = run_workers(&r, &err);
            rep->connections = r.workers;
        }
    }
    if (rc == MG_OK && r.fatal.code != MG_OK) {
        err = r.fatal;
        rc = err.code;
    }
    if (rc == MG_OK) {
        size_t left = 0;
        for (size_t i = 0; i < r.nmsgs; i++)
            if (r.msgs[i].state == TODO || r.msgs[i].state == UNSURE) {
                left++;
                r.boxes[r.msgs[i].box].rep->failed++;
            }
        if (left > 0) {
            err = r.last;
            rc = err.code != MG_OK ? err.code : MG_E_PARTIAL;
            mg_error_set(&err, rc, "%zu messages not restored: %s", left,
                         r.last.code != MG_OK ? r.last.msg : "the sessions gave up");
        }
    }
    if (rc == MG_OK)
        for (size_t b = 0; b < r.nboxes; b++)
            if (r.boxes[b].rep->failed > 0)
                rc = mg_error_set(&err, MG_E_PARTIAL,
                                  "some messages were not restored (named "
                                  "above); run again once the cause is fixed");
out:
    if (r.first != NULL)
        mg_imap_close(r.first, false);
    size_t appended = atomic_load(&r.appended), skipped = 0;
    for (size_t b = 0; b < r.nboxes; b++)
        skipped += r.boxes[b].rep->skipped;
    if (rc != MG_OK && rc != MG_E_PARTIAL)
        mg_backup_err(a, err.msg);
    else if (rc == MG_E_PARTIAL)
        mg_warn("%s", err.msg);
    mg_info("%s: %zu messages restored, %zu restored before, from %s", a->name, appended, skipped,
            o->dir);
    if (atomic_load(&r.looked) > 0)
        mg_info("%s: %zu uncertain messages looked for on the server, %zu of them there already",
                a->name, atomic_load(&r.looked), atomic_load(&r.found));
    rep->code = rc;
    if (rc != MG_OK)
        snprintf(rep->error, sizeof(rep->error), "%s", err.msg);
    if (r.jfd >= 0)
        close(r.jfd);
    if (lock >= 0)
        close(lock);
    mg_tls_ctx_destroy(tls);
    for (size_t i = 0; i < r.nmsgs; i++)
        free(r.msgs[i].rel);
    free(r.msgs);
    free(r.boxes);
    free(r.retry);
    free(r.sess);
    for (size_t i = 0; i < r.nlab; i++) {
        free(r.lab[i].key);
        free(r.lab[i].line);
    }
    free(r.lab);
    mg_store_free_names(r.dirs, r.ndirs);
    mg_strmap_finish(&r.journal);
    pthread_mutex_destroy(&r.mu);
    return rc;
}
