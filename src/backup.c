/* backup.c - see include/mailgrab/backup.h */
#include "mailgrab/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailgrab/gmail.h"
#include "mailgrab/imap.h"
#include "mailgrab/log.h"
#include "mailgrab/mboxname.h"
#include "mailgrab/plan.h"
#include "mailgrab/pool.h"
#include "mailgrab/provider.h"
#include "mailgrab/roles.h"
#include "mailgrab/store.h"
#include "mailgrab/tls.h"

#define FETCH_MSGS 256
#define FETCH_BYTES (8u << 20)
#define WARM_PER 32

struct box {
    char utf8[1024];
    char imap[1024];
    char path[MG_MBOX_PATH_MAX + 16];
    unsigned roles; /* enum mg_role, as listed */
    bool gm_list;   /* Gmail, not a full run: list this folder (its labels changed) */
    size_t gm_have; /* Gmail: messages stored by the last run that listed it */
    uint32_t gm_uv; /* Gmail: the UIDVALIDITY they were stored under */
};

struct boxes {
    struct box *v;
    size_t n;
    bool bad_name;
};

static void add_listed(const char *imap_name, unsigned roles, void *ctx)
{
    struct boxes *b = ctx;
    struct box *v = reallocarray(b->v, b->n + 1, sizeof(*v));
    if (v == NULL)
        return;
    b->v = v;
    struct box *x = &b->v[b->n];
    memset(x, 0, sizeof(*x)); /* what later steps set starts out zero */
    x->roles = roles;
    snprintf(x->imap, sizeof(x->imap), "%s", imap_name);
    if (mg_mbox_from_imap(imap_name, x->utf8, sizeof(x->utf8)) != 0) {
        /* Not valid modified UTF-7: keep the server's bytes as the name.
         * Raw UTF-8 is how some servers list names; anything else is odd. */
        char utf7[sizeof(x->imap)];
        snprintf(x->utf8, sizeof(x->utf8), "%s", imap_name);
        if (mg_mbox_to_imap(imap_name, utf7, sizeof(utf7)) != 0)
            b->bad_name = true;
    }
    b->n++;
}

static int cmp_box(const void *a, const void *b)
{
    return strcmp(((const struct box *)a)->utf8, ((const struct box *)b)->utf8);
}

/* Give each mailbox its directory name (mg_mbox_dir_names: names that
 * differ only in case get apart, and a mailbox keeps the directory it has). */
static enum mg_code name_dirs(const struct mg_account *a, struct boxes *b, struct mg_error *err)
{
    qsort(b->v, b->n, sizeof(*b->v), cmp_box);
    char **existing;
    size_t nexisting;
    enum mg_code rc = mg_store_mailbox_dirs(a->output, &existing, &nexisting, err);
    if (rc != MG_OK)
        return rc;
    const char **names = calloc(b->n ? b->n : 1, sizeof(*names));
    char(*dirs)[MG_MBOX_DIR_MAX + 1] = calloc(b->n ? b->n : 1, sizeof(*dirs));
    if (names == NULL || dirs == NULL) {
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < b->n; i++)
        names[i] = b->v[i].utf8;
    if (mg_mbox_dir_names(names, b->n, (const char *const *)existing, nexisting, dirs) != 0) {
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < b->n; i++)
        snprintf(b->v[i].path, sizeof(b->v[i].path), "%s", dirs[i]);
out:
    free(names);
    free(dirs);
    mg_store_free_names(existing, nexisting);
    return rc;
}

/* The listed mailboxes' roles, beside the backup (roles.h): what reads it
 * later knows the sent mail. A failure costs only that: a warning. */
static void save_roles(const struct mg_account *a, const struct boxes *b)
{
    struct mg_roles r;
    mg_roles_init(&r);
    int e = 0;
    for (size_t i = 0; e == 0 && i < b->n; i++)
        if (mg_roles_add(&r, b->v[i].path, b->v[i].roles) != 0)
            e = ENOMEM;
    const char *step = "prepare";
    int dfd = -1;
    if (e == 0 && (dfd = open(a->output, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        e = errno;
    /* No role at all: no file (and none left from an earlier run). */
    if (e == 0 && r.n == 0 && unlinkat(dfd, MG_ROLES_FILE, 0) != 0 && errno != ENOENT) {
        e = errno;
        step = "remove";
    } else if (e == 0 && r.n > 0) {
        e = mg_roles_save(&r, dfd, &step);
    }
    if (e != 0)
        mg_warn("%s/" MG_ROLES_FILE ": cannot %s: %s; statistics will not know the sent mail "
                "by its mailbox",
                a->output, step, strerror(e));
    if (dfd >= 0)
        close(dfd);
    mg_roles_finish(&r);
}

static enum mg_code select_boxes(const struct mg_account *a, struct mg_pool *pool, struct boxes *b,
                                 struct mg_error *err)
{
    if (a->all_mailboxes) {
        enum mg_code rc = mg_pool_mailboxes(pool, add_listed, b, err);
        if (rc != MG_OK)
            return rc;
        if (b->bad_name)
            mg_warn("the server listed a mailbox name that is neither modified UTF-7 nor UTF-8");
    } else {
        b->v = calloc(a->nmailboxes, sizeof(*b->v));
        if (b->v == NULL)
            return mg_error_set(err, MG_E_INTERNAL, "out of memory");
        for (size_t i = 0; i < a->nmailboxes; i++) {
            struct box *x = &b->v[b->n++];
            snprintf(x->utf8, sizeof(x->utf8), "%s", a->mailboxes[i]);
            if (mg_mbox_to_imap(a->mailboxes[i], x->imap, sizeof(x->imap)) != 0)
                return mg_error_set(err, MG_E_USAGE,
                                    "mailbox name '%s' is not valid UTF-8 or too long",
                                    a->mailboxes[i]);
        }
    }
    return name_dirs(a, b, err);
}

static bool not_stored(uint32_t uid, void *ctx)
{
    return !mg_store_has(ctx, uid);
}

static void tell(const struct mg_mailbox_report *r, unsigned connections)
{
    bool on_tty = mg_log_level() >= MG_NORMAL && isatty(STDERR_FILENO);
    if (mg_log_level() < MG_VERBOSE && !on_tty)
        return;
    double rate = r->seconds > 0 ? (double)r->fetched / r->seconds : 0;
    char links[96] = "";
    if (r->linked > 0 || r->unlinked > 0)
        snprintf(links, sizeof(links), ", %zu linked to the one copy, %zu links removed", r->linked,
                 r->unlinked);
    fprintf(stderr,
            "mailgrab: %s: %zu new (%.1f MB, %.1f MB on the wire) in %.2f s, %.0f msg/s, %u "
            "connection%s; %zu already stored%s; in %s\n",
            r->name, r->fetched, (double)r->bytes / 1e6, (double)r->wire_bytes / 1e6, r->seconds,
            rate, connections, connections == 1 ? "" : "s", r->skipped, links, r->dir);
}

/* The server refused this mailbox, or broke while it was opened or listed
 * (and again on a new session): that costs this mailbox, not the account.
 * A connection that cannot be had at all shows on the next one. */
static bool box_only(enum mg_code rc)
{
    return rc == MG_E_MAILBOX || rc == MG_E_PROTOCOL;
}

/* Say which mailbox a failure of its own belongs to. */
static void name_box(struct mg_error *err, const char *name)
{
    if (err->code == MG_E_MAILBOX)
        return; /* its message names it */
    char was[MG_ERROR_MAX];
    snprintf(was, sizeof(was), "%s", err->msg);
    enum mg_retry retry = err->retry;
    mg_error_retry(err, err->code, retry, "mailbox '%s': %s", name, was);
}

/* The progress line of a download, on a terminal (log.h decides), and the
 * caller's hook, which is told the mailbox by its UTF-8 name. */
struct progress_to {
    const struct mg_backup_hooks *hooks;
    const char *utf8;
};

/* A stored message, told to the run with what makes it sent mail. Called
 * from the workers: reads only what the job does not change. */
struct stored_to {
    const struct mg_backup_hooks *hooks;
    bool sent_box;                /* the mailbox has the \Sent role */
    const struct mg_gmlist *list; /* Gmail: the labels of what is fetched */
};

/* The listed message with this UID (the list is sorted), or NULL. */
static const struct mg_gmmsg *gm_find(const struct mg_gmlist *l, uint32_t uid)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].uid == uid)
            return &l->v[mid];
        if (l->v[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool gm_label_sent(const struct mg_gmlist *l, uint32_t uid)
{
    const struct mg_gmmsg *m = gm_find(l, uid);
    const char *p = m ? m->labels : NULL;
    for (size_t i = 0; p != NULL && i < m->nlabels; i++, p += strlen(p) + 1)
        if (strcmp(p, "\\Sent") == 0)
            return true;
    return false;
}

static void tell_stored(void *ctx, uint32_t uid, const char *path)
{
    const struct stored_to *to = ctx;
    bool sent = to->sent_box || (to->list != NULL && gm_label_sent(to->list, uid));
    to->hooks->on_stored(to->hooks->ctx, uid, path, sent);
}

static void show_progress(void *ctx, const struct mg_progress *pr)
{
    const struct progress_to *to = ctx;
    if (to->hooks != NULL && to->hooks->on_progress != NULL) {
        struct mg_progress named = *pr;
        named.mailbox = to->utf8;
        to->hooks->on_progress(to->hooks->ctx, &named);
    }
    if (pr->done) {
        mg_progress_end();
        return;
    }
    double rate = pr->seconds > 0 ? (double)pr->stored / pr->seconds : 0;
    double brate = pr->seconds > 0 ? (double)pr->bytes / pr->seconds : 0;
    char b1[32], b2[32];
    mg_human_bytes(pr->bytes, b1, sizeof(b1));
    mg_human_bytes((uint64_t)brate, b2, sizeof(b2));
    char eta[32] = "--";
    if (brate > 0 && pr->total_bytes > pr->bytes)
        snprintf(eta, sizeof(eta), "%.0fs", (double)(pr->total_bytes - pr->bytes) / brate);
    mg_progress_show("%s: %zu/%zu messages  %s  %.0f msg/s  %s/s  ETA %s", pr->mailbox, pr->stored,
                     pr->total, b1, rate, b2, eta);
}

/* A Gmail backup (gmail.h): each message downloaded once, into the first
 * folder that lists it (All Mail first); every other folder gets a hard
 * link to that file.
 *
 * What a run lists: with All Mail's mark of a complete earlier run
 * (store.h, gmail set) and CONDSTORE, All Mail's STATUS tells whether
 * anything changed (on Gmail every label given or taken off raises the
 * message's MODSEQ in All Mail, which holds every labelled message).
 * GM_NOTHING: nothing did; no folder is opened. GM_CHANGES: All Mail is
 * asked only for the messages above the mark's UIDNEXT and those changed
 * since its HIGHESTMODSEQ, and only the folders of their old and new labels
 * are listed. GM_FULL: every folder is listed in full (no trusted mark, no
 * CONDSTORE, and once a day, which catches deletions and anything missed). */
enum gm_mode { GM_FULL, GM_CHANGES, GM_NOTHING };

struct gm_run {
    struct mg_gmail_index ix;
    int outfd;             /* the account's output directory */
    size_t outlen;         /* length of its path, to make store paths relative */
    struct mg_gmlist list; /* the mailbox being backed up */
    size_t bad_lines;      /* of the previous labels.jsonl */
    enum gm_mode mode;
    struct mg_mailbox_info all; /* All Mail's STATUS at the start; uidvalidity 0: none */
    struct mg_store_mark mark;  /* All Mail's mark, as found */
    struct boxes *boxes;        /* the run's folders */
    bool whole;                 /* every folder opened so far was backed up whole */
    bool listed;                /* some folder was listed: labels.jsonl is written */
    size_t all_stored;          /* messages in All Mail after its listing */
};

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static bool regular_at(int dirfd, const char *path)
{
    struct stat sb;
    return fstatat(dirfd, path, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode);
}

/* Listed messages not stored in this mailbox but stored elsewhere in the
 * output are linked, not fetched; their UIDs go to *linked (sorted). */
static enum mg_code gm_link(struct gm_run *gm, struct mg_store *store, uint32_t **linked,
                            size_t *nlinked, size_t *count, struct mg_error *err)
{
    size_t cap = gm->list.n ? gm->list.n : 1;
    struct mg_store_link *v = calloc(cap, sizeof(*v));
    uint32_t *u = calloc(cap, sizeof(*u));
    *linked = NULL;
    *nlinked = *count = 0;
    if (v == NULL || u == NULL) {
        free(v);
        free(u);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < gm->list.n; i++) {
        const struct mg_gmmsg *m = &gm->list.v[i];
        if (mg_store_has(store, m->uid))
            continue;
        const struct mg_gmail_entry *e = mg_gmail_index_get(&gm->ix, m->msgid, false);
        if (e == NULL || e->path == NULL || !regular_at(gm->outfd, e->path))
            continue;
        v[n] = (struct mg_store_link){m->uid, gm->outfd, e->path, m->flags};
        u[n++] = m->uid;
    }
    enum mg_code rc = mg_store_link(store, v, n, count, err);
    free(v);
    *linked = u;
    *nlinked = n;
    return rc;
}

static bool gm_listed(const struct mg_gmlist *l, uint32_t uid)
{
    return gm_find(l, uid) != NULL;
}

/* A label taken off a message takes it out of that folder: its link goes
 * (never the last copy of a message, mg_store_unlink_copies). */
static enum mg_code gm_prune(struct gm_run *gm, struct mg_store *store, size_t *removed,
                             struct mg_error *err)
{
    uint32_t *stored;
    size_t n = mg_store_stored(store, &stored), ngone = 0;
    for (size_t i = 0; i < n; i++)
        if (!gm_listed(&gm->list, stored[i]))
            stored[ngone++] = stored[i];
    enum mg_code rc = mg_store_unlink_copies(store, stored, ngone, removed, err);
    free(stored);
    return rc;
}

/* Note where each listed message is stored now, and its labels.jsonl line
 * (from the first folder of the run that lists it: All Mail). */
static void gm_note(struct gm_run *gm, struct mg_store *store, bool all_mail)
{
    const char *rel = mg_store_dir(store) + gm->outlen + 1;
    for (size_t i = 0; i < gm->list.n; i++) {
        const struct mg_gmmsg *m = &gm->list.v[i];
        char name[MG_MBOX_PATH_MAX], path[PATH_MAX];
        if (mg_store_name_of(store, m->uid, name, sizeof(name)) != 0 ||
            snprintf(path, sizeof(path), "%s/%s", rel, name) >= (int)sizeof(path))
            continue; /* not stored */
        struct mg_gmail_entry *e = mg_gmail_index_get(&gm->ix, m->msgid, true);
        if (e == NULL)
            continue;
        if (e->path == NULL || all_mail || !regular_at(gm->outfd, e->path)) {
            char *p = strdup(path);
            if (p == NULL)
                continue;
            free(e->path);
            e->path = p;
        }
        if (e->seen)
            continue;
        char *line = mg_gmmsg_json(m, e->path);
        if (line != NULL) {
            free(e->line);
            e->line = line;
            e->seen = true;
        }
    }
}

static bool not_in(uint32_t uid, const uint32_t *v, size_t n)
{
    return n == 0 || bsearch(&uid, v, n, sizeof(*v), cmp_u32) == NULL;
}

/* Nothing new in mailbox x since the last complete run: its STATUS shows the
 * UIDNEXT and UIDVALIDITY of the mark and the files are all there. Then the
 * mailbox is not even opened (r is filled in); false means: open and list
 * it (also when STATUS fails for any reason but a cancel, in *rc). */
/* Without CONDSTORE a Maildir backup asks for every flag at most once a
 * day (about 30 bytes a message). */
#define FLAGS_EVERY (24 * 3600)

static bool flags_due(const struct mg_store_mark *m)
{
    time_t now = time(NULL);
    return now - m->flags_at >= FLAGS_EVERY || now < m->flags_at;
}

static bool unchanged(const struct mg_account *a, struct mg_pool *pool, const struct box *x,
                      struct mg_mailbox_report *r, struct mg_mailbox_info *si, enum mg_code *rc,
                      struct mg_error *err)
{
    *rc = MG_OK;
    memset(si, 0, sizeof(*si));
    if (!mg_store_marked(a->output, x->path))
        return false;
    struct mg_error serr;
    mg_error_clear(&serr);
    enum mg_code src = mg_pool_status(pool, x->imap, si, &serr);
    if (src == MG_E_INTERRUPTED) {
        *err = serr;
        *rc = src;
        return true;
    }
    char dir[PATH_MAX];
    if (src != MG_OK) {
        memset(si, 0, sizeof(*si));
        return false;
    }
    if (mg_store_locate(a->output, x->path, si->uidvalidity, dir, sizeof(dir)) != 1)
        return false;
    struct mg_store *store;
    bool newgen;
    if (mg_store_open(a->output, x->path, (enum mg_format)a->format, si->uidvalidity, &store,
                      &newgen, &serr) != MG_OK)
        return false;
    struct mg_store_mark mark;
    mg_store_get_mark(store, &mark);
    /* A Maildir's names carry flags: changed flags are a change; without
     * CONDSTORE they are asked for once a day. */
    bool flags_same =
        a->format != MG_FORMAT_MAILDIR ||
        (si->highestmodseq != 0 ? mark.modseq == si->highestmodseq : !flags_due(&mark));
    bool same = !newgen && mark.uidnext == si->uidnext && flags_same &&
                mg_store_count(store) >= mark.stored;
    if (same) {
        r->uidvalidity = si->uidvalidity;
        r->listed = r->skipped = si->exists;
        snprintf(r->dir, sizeof(r->dir), "%s", mg_store_dir(store));
        mg_info("%s: nothing new since the last complete run (UIDNEXT %u)", x->utf8, si->uidnext);
    }
    mg_store_close(store);
    return same;
}

struct reflag {
    struct mg_store *store;
    size_t renamed, failed;
};

static void reflag_one(uint32_t uid, const char *flags, void *ctx)
{
    struct reflag *f = ctx;
    int r = mg_store_set_flags(f->store, uid, flags);
    if (r > 0)
        f->renamed++;
    else if (r < 0)
        f->failed++;
}

/* Flags changed on the server since the mark reach the Maildir names, with
 * no body fetched (CONDSTORE). Returns false when they could not all be
 * asked for or applied: the mark then keeps its old modseq. */
static bool follow_flags(struct mg_pool *pool, const char *imap, struct mg_store *store,
                         const struct mg_store_mark *mark, struct mg_mailbox_report *r,
                         const char *name)
{
    struct reflag f = {store, 0, 0};
    struct mg_error err;
    mg_error_clear(&err);
    enum mg_code rc =
        mg_pool_flags_since(pool, imap, mark->uidnext, mark->modseq, reflag_one, &f, &err);
    if (rc == MG_OK && f.renamed > 0)
        rc = mg_store_flush_names(store, &err);
    r->reflagged = f.renamed;
    if (rc != MG_OK)
        mg_warn("%s: flags changed on the server were not all followed: %s", name, err.msg);
    else if (f.failed > 0)
        mg_warn("%s: %zu stored message%s could not be renamed for their new flags", name, f.failed,
                f.failed == 1 ? "" : "s");
    else if (f.renamed > 0)
        mg_info("%s: %zu message%s renamed for flags changed on the server", name, f.renamed,
                f.renamed == 1 ? "" : "s");
    return rc == MG_OK && f.failed == 0;
}

/* The label of Gmail folder x as X-GM-LABELS names it, or NULL when it
 * cannot be told (then the folder is always listed). */
static const char *gm_label_of(const struct box *x)
{
    static const struct {
        unsigned role;
        const char *label;
    } sys[] = {{MG_ROLE_SENT, "\\Sent"},
               {MG_ROLE_IMPORTANT, "\\Important"},
               {MG_ROLE_FLAGGED, "\\Starred"},
               {MG_ROLE_DRAFTS, "\\Draft"}};
    if (strcasecmp(x->utf8, "INBOX") == 0)
        return x->roles == 0 ? "\\Inbox" : NULL;
    if (x->roles == 0)
        return x->utf8;
    for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
        if (x->roles == sys[i].role)
            return sys[i].label;
    return NULL;
}

/* A message has or had label: its folder is listed in this run. */
static void gm_affect(struct gm_run *gm, const char *label)
{
    for (size_t i = 0; i < gm->boxes->n; i++) {
        const char *l = gm_label_of(&gm->boxes->v[i]);
        if (l != NULL && strcmp(l, label) == 0)
            gm->boxes->v[i].gm_list = true;
    }
}

/* The folders whose membership can have changed: those of the labels the
 * listed (new or changed) messages have now and had at the last run. */
static void gm_affected(struct gm_run *gm)
{
    for (size_t i = 0; i < gm->list.n; i++) {
        const struct mg_gmmsg *m = &gm->list.v[i];
        const char *l = m->labels;
        for (size_t k = 0; k < m->nlabels; k++, l += strlen(l) + 1)
            gm_affect(gm, l);
        const struct mg_gmail_entry *e = mg_gmail_index_get(&gm->ix, m->msgid, false);
        if (e == NULL || e->line == NULL)
            continue;
        char buf[8192];
        const char *was[256];
        size_t n = mg_gmail_line_labels(e->line, buf, sizeof(buf), was, 256);
        if (strlen(e->line) >= sizeof(buf) || n == 256) { /* some may be left out */
            for (size_t k = 0; k < gm->boxes->n; k++)
                gm->boxes->v[k].gm_list = true;
            return;
        }
        for (size_t k = 0; k < n; k++)
            gm_affect(gm, was[k]);
    }
}

/* Folder x as the last run that listed it left it: 1 marked, with all its
 * files (*have of them); 0 never backed up whole (list it); -1 files were
 * removed here since (a full run puts them back). */
static int gm_folder(const struct mg_account *a, const struct box *x, uint32_t *uidvalidity,
                     struct mg_store_mark *m, size_t *have)
{
    struct mg_store *st;
    bool newgen;
    struct mg_error err;
    mg_error_clear(&err);
    if (mg_store_peek(a->output, x->path, uidvalidity, m) != 1 || m->uidnext == 0 ||
        mg_store_open(a->output, x->path, (enum mg_format)a->format, *uidvalidity, &st, &newgen,
                      &err) != MG_OK)
        return 0;
    *have = mg_store_count(st);
    mg_store_close(st);
    return *have >= m->stored ? 1 : -1;
}

/* Not a full Gmail run, and folder x needs no listing: nothing in it can
 * have changed (r is filled in as for a mailbox with nothing new). Spam and
 * Trash, which All Mail does not hold, are asked for their STATUS. */
static bool gm_skip(const struct mg_account *a, struct mg_pool *pool, struct gm_run *gm,
                    const struct box *x, struct mg_mailbox_report *r)
{
    if (gm->mode == GM_FULL || x->gm_list)
        return false;
    uint32_t uv = gm->all.uidvalidity;
    size_t have = gm->all_stored;
    if (x->roles & (MG_ROLE_JUNK | MG_ROLE_TRASH)) {
        struct mg_store_mark m;
        struct mg_mailbox_info si;
        struct mg_error err;
        mg_error_clear(&err);
        if (gm_folder(a, x, &uv, &m, &have) != 1 ||
            mg_pool_status(pool, x->imap, &si, &err) != MG_OK || si.uidvalidity != uv ||
            si.uidnext != m.uidnext)
            return false;
    } else if (!(x->roles & MG_ROLE_ALL)) {
        have = x->gm_have;
        uv = x->gm_uv;
    }
    r->uidvalidity = uv;
    r->listed = r->skipped = have;
    if (mg_store_locate(a->output, x->path, uv, r->dir, sizeof(r->dir)) != 1)
        snprintf(r->dir, sizeof(r->dir), "%s/%s", a->output, x->path);
    mg_info("%s: nothing new since the last complete run", x->utf8);
    return true;
}

/* A Maildir's names carry flags: those of the listed messages stored here
 * become the server's (a flag change raises a message's MODSEQ, so an
 * incremental run lists it and its folders). False if some could not be
 * renamed. */
static bool gm_reflag(struct gm_run *gm, struct mg_store *store, struct mg_mailbox_report *r,
                      const char *name)
{
    if (mg_store_format(store) != MG_FORMAT_MAILDIR)
        return true;
    struct reflag f = {store, 0, 0};
    for (size_t i = 0; i < gm->list.n; i++)
        reflag_one(gm->list.v[i].uid, gm->list.v[i].flags, &f);
    struct mg_error err;
    mg_error_clear(&err);
    if (f.renamed > 0 && mg_store_flush_names(store, &err) != MG_OK) {
        mg_warn("%s: %s", name, err.msg);
        return false;
    }
    r->reflagged = f.renamed;
    if (f.failed > 0)
        mg_warn("%s: %zu stored message%s could not be renamed for their new flags", name, f.failed,
                f.failed == 1 ? "" : "s");
    return f.failed == 0;
}

/* Gmail folder x was backed up whole: its mark says so, with how many
 * messages it holds (files removed here later make the next run a full
 * one). All Mail's mark is written at the end of the run (gm_finish). */
static void gm_mark_folder(struct gm_run *gm, struct mg_store *store, const struct box *x,
                           uint32_t uidnext, bool *whole)
{
    if ((x->roles & MG_ROLE_ALL) && gm->mode == GM_CHANGES) {
        /* The lines of the messages not listed stay as earlier runs wrote
         * them: no label folder rewrites them. */
        for (size_t i = 0; i < gm->ix.cap; i++)
            if (gm->ix.v[i].line != NULL)
                gm->ix.v[i].seen = true;
    }
    if (!*whole)
        return;
    uint32_t *uids;
    size_t n = mg_store_stored(store, &uids);
    free(uids);
    if (x->roles & MG_ROLE_ALL) {
        gm->all_stored = n;
        return;
    }
    struct mg_store_mark m = {uidnext, n, 0, time(NULL), false};
    struct mg_error err;
    if (mg_store_set_mark(store, &m, &err) != MG_OK) {
        mg_warn("%s; the next run lists every folder", err.msg);
        *whole = false;
    }
}

/* One mailbox. Returns its code; fatal ones stop the account unless *only
 * says the failure was this mailbox's own. */
static enum mg_code backup_box(const struct mg_account *a, struct mg_pool *pool,
                               struct mg_tls_ctx *tls, const struct box *x, unsigned long limit,
                               const struct mg_backup_hooks *hooks, struct gm_run *gm,
                               struct mg_mailbox_report *r, unsigned *connections, bool *only,
                               struct mg_error *err)
{
    uint64_t wire_before = mg_tls_ctx_wire_bytes(tls);
    uint32_t *linked = NULL;
    size_t nlinked = 0;
    struct mg_mailbox_info mi;
    struct mg_store *store = NULL;
    struct mg_msglist msgs = {0};
    struct mg_store_mark mark = {0};
    bool whole = false; /* Gmail: this folder was backed up whole */
    *only = false;
    /* The run's budget is spent (--max-time above all): not even a listing. */
    if (hooks != NULL && mg_budget_stopped(hooks->budget))
        return mg_budget_error(hooks->budget, err);
    const char *imap = x->imap;
    enum mg_code rc;
    struct mg_mailbox_info status = {0};
    if (gm == NULL && unchanged(a, pool, x, r, &status, &rc, err))
        goto out;
    if (gm != NULL && gm_skip(a, pool, gm, x, r)) {
        rc = MG_OK;
        whole = true;
        goto out;
    }
    rc = mg_pool_examine(pool, imap, &mi, err);
    /* A server that lists names in raw UTF-8 wants them so: a name given
     * in UTF-8 and refused in modified UTF-7 is asked for as it was given. */
    if (rc == MG_E_MAILBOX && !a->all_mailboxes && strcmp(x->imap, x->utf8) != 0) {
        struct mg_error raw;
        mg_error_clear(&raw);
        if (mg_pool_examine(pool, x->utf8, &mi, &raw) == MG_OK) {
            imap = x->utf8;
            rc = MG_OK;
        }
    }
    if (rc != MG_OK) {
        *only = box_only(rc);
        goto out;
    }
    if (!mi.counted)
        mg_warn("%s: the server did not say how many messages it holds (no EXISTS); listing it "
                "anyway",
                x->utf8);
    r->uidvalidity = mi.uidvalidity;
    bool newgen = false;
    rc = mg_store_open(a->output, x->path, (enum mg_format)a->format, mi.uidvalidity, &store,
                       &newgen, err);
    if (rc != MG_OK)
        goto out;
    /* More messages on the server than here: the workers log in while the
     * control session lists, rather than after. */
    size_t have = mg_store_count(store);
    if (mi.exists > have) {
        /* A new connection costs a handshake and a login: about one per
         * WARM_PER messages expected, up to chunks. */
        size_t want = 1 + (mi.exists - have) / WARM_PER;
        mg_pool_warm(pool, imap, want < a->chunks ? (unsigned)want : a->chunks);
    }
    uint32_t uidvalidity = mi.uidvalidity, uidnext = mi.uidnext;
    /* Since a complete run, only what came after its mark, unless files
     * were removed here (then everything is listed and fetched again). */
    uint32_t from = 1;
    mg_store_get_mark(store, &mark);
    if (gm == NULL && mark.uidnext != 0 && have >= mark.stored && uidnext >= mark.uidnext)
        from = mark.uidnext;
    /* Gmail, changes only: All Mail's new messages and those changed since
     * the mark (gm_run). */
    uint64_t since = 0;
    if (gm != NULL && gm->mode == GM_CHANGES && (x->roles & MG_ROLE_ALL)) {
        if (uidvalidity != gm->all.uidvalidity) {
            *only = true;
            rc = mg_error_set(err, MG_E_PROTOCOL,
                              "UIDVALIDITY of %s changed during the run (%u, now %u): run again",
                              x->utf8, gm->all.uidvalidity, uidvalidity);
            goto out;
        }
        from = gm->mark.uidnext;
        since = gm->mark.modseq;
    }
    /* A Maildir with CONDSTORE: the server's HIGHESTMODSEQ for the mark
     * (STATUS once when the fast path did not ask already). */
    uint64_t modseq = status.uidvalidity == uidvalidity ? status.highestmodseq : 0;
    if (gm == NULL && a->format == MG_FORMAT_MAILDIR && modseq == 0) {
        unsigned caps = 0;
        struct mg_mailbox_info si;
        struct mg_error serr;
        if (mg_pool_caps(pool, &caps, &serr) == MG_OK && (caps & MG_CAP_CONDSTORE) &&
            mg_pool_status(pool, imap, &si, &serr) == MG_OK && si.uidvalidity == uidvalidity)
            modseq = si.highestmodseq;
    }
    bool flags_followed = true;
    time_t flags_at = mark.flags_at;
    bool maildir = gm == NULL && from > 1 && a->format == MG_FORMAT_MAILDIR;
    if (maildir && mark.modseq != 0 && modseq != 0 && modseq != mark.modseq) {
        flags_followed = follow_flags(pool, imap, store, &mark, r, x->utf8);
    } else if (maildir && modseq == 0 && flags_due(&mark)) {
        struct mg_store_mark all = mark;
        all.modseq = 0; /* every flag */
        time_t asked = time(NULL);
        if (follow_flags(pool, imap, store, &all, r, x->utf8))
            flags_at = asked;
    }
    if (!flags_followed)
        modseq = mark.modseq;
    if (gm == NULL && from > 1 && uidnext == mark.uidnext) {
        r->listed = r->skipped = mi.exists;
        snprintf(r->dir, sizeof(r->dir), "%s", mg_store_dir(store));
        if (modseq != mark.modseq || flags_at != mark.flags_at) {
            struct mg_store_mark now = mark;
            now.gmail = false; /* labels were not looked at */
            now.modseq = modseq;
            now.flags_at = flags_at;
            struct mg_error merr;
            if (mg_store_set_mark(store, &now, &merr) != MG_OK)
                mg_warn("%s; the next run asks again", merr.msg);
        }
        mg_info("%s: nothing new since the last complete run", x->utf8);
        goto out;
    }
    if (gm != NULL) {
        rc = mg_pool_gmlist(pool, imap, from, since, &mi, &gm->list, err);
        mg_gmlist_sort(&gm->list);
        gm->listed = true;
        if (rc == MG_OK && since != 0)
            gm_affected(gm);
        for (size_t i = 0; rc == MG_OK && i < gm->list.n; i++)
            if (mg_msglist_push(&msgs, gm->list.v[i].uid, gm->list.v[i].size) != 0)
                rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    } else {
        rc = mg_pool_list(pool, imap, from, &mi, &msgs, err);
    }
    *only = box_only(rc);
    if (rc != MG_OK)
        goto out;
    if (mi.uidvalidity != uidvalidity) {
        *only = true;
        rc = mg_error_set(err, MG_E_PROTOCOL,
                          "UIDVALIDITY of %s changed during the run (%u, now %u): run again",
                          x->utf8, uidvalidity, mi.uidvalidity);
        goto out;
    }
    snprintf(r->dir, sizeof(r->dir), "%s", mg_store_dir(store));
    if (newgen)
        mg_warn("%s: the server renumbered this mailbox (UIDVALIDITY is now %u); what was "
                "stored before is kept as it was, the new generation goes to %s",
                x->utf8, mi.uidvalidity, r->dir);

    mg_msglist_sort(&msgs);
    r->listed = msgs.n;
    mg_msglist_filter(&msgs, not_stored, store);
    r->skipped = r->listed - msgs.n;
    if (from > 1) { /* listed from the mark: the rest is stored */
        r->listed = mi.exists > msgs.n ? mi.exists : msgs.n;
        r->skipped = r->listed - msgs.n;
    }
    size_t wanted = msgs.n;
    if (gm != NULL && msgs.n > 0) {
        rc = gm_link(gm, store, &linked, &nlinked, &r->linked, err);
        if (rc != MG_OK)
            goto out;
        size_t o = 0;
        for (size_t i = 0; i < msgs.n; i++)
            if (not_in(msgs.v[i].uid, linked, nlinked))
                msgs.v[o++] = msgs.v[i];
        msgs.n = o;
    }
    bool cut = limit > 0 && msgs.n > limit;
    if (limit > 0)
        mg_msglist_truncate(&msgs, limit);
    mg_info("%s: %zu messages on the server, %zu already stored, %zu linked to a copy stored "
            "before, %zu to fetch",
            x->utf8, r->listed, r->skipped, r->linked, msgs.n);

    struct progress_to to = {hooks, x->utf8};
    struct stored_to stored = {hooks, (x->roles & MG_ROLE_SENT) != 0, gm ? &gm->list : NULL};
    struct mg_job job = {
        .mailbox = imap,
        .uidvalidity = mi.uidvalidity,
        .store = store,
        .msgs = &msgs,
        .fetch_msgs = FETCH_MSGS,
        .fetch_bytes = FETCH_BYTES,
        .on_stored = hooks && hooks->on_stored ? tell_stored : NULL,
        .ctx = &stored,
        .on_progress = show_progress,
        .progress_ctx = &to,
        .budget = hooks ? hooks->budget : NULL,
    };
    struct mg_job_result res;
    rc = mg_pool_run(pool, &job, &res);
    r->fetched = res.stored;
    r->failed = res.failed;
    r->vanished = res.vanished;
    r->bytes = res.bytes;
    r->wire_bytes = mg_tls_ctx_wire_bytes(tls) - wire_before;
    r->seconds = res.seconds;
    if (res.connections > *connections)
        *connections = res.connections;
    if (rc != MG_OK && rc != MG_E_PARTIAL) {
        *err = res.fatal;
        goto out;
    }
    if (gm != NULL && rc == MG_OK && !(x->roles & MG_ROLE_ALL)) {
        enum mg_code prc = gm_prune(gm, store, &r->unlinked, err);
        if (prc != MG_OK)
            mg_warn("%s: %s", x->utf8, err->msg);
        mg_error_clear(err);
    }
    if (gm != NULL) {
        bool reflagged = gm_reflag(gm, store, r, x->utf8); /* the names gm_note records */
        gm_note(gm, store, (x->roles & MG_ROLE_ALL) != 0);
        whole = rc == MG_OK && res.failed == 0 && !cut && reflagged;
        gm_mark_folder(gm, store, x, uidnext, &whole);
    }
    /* Everything below UIDNEXT is stored now: the next run starts there. */
    if (gm == NULL && rc == MG_OK && res.failed == 0 && msgs.n == wanted && uidnext != 0) {
        /* A full listing stored every message with its flags of now. */
        struct mg_store_mark now = {uidnext, have + res.stored, modseq,
                                    from > 1 || have > 0 ? flags_at : time(NULL), false};
        struct mg_error merr;
        if (mg_store_set_mark(store, &now, &merr) != MG_OK)
            mg_warn("%s; the next run lists the whole mailbox", merr.msg);
    }
    tell(r, res.connections ? res.connections : 1);
    if (res.vanished > 0)
        mg_warn("%s: %zu message%s disappeared from the server during the run", x->utf8,
                res.vanished, res.vanished == 1 ? "" : "s");
    if (rc == MG_E_PARTIAL)
        mg_error_set(err, MG_E_PARTIAL,
                     "%s: %zu of %zu messages could not be downloaded (%zu stored); run again "
                     "to fetch the rest",
                     x->utf8, res.failed, msgs.n, res.stored);
out:
    if (gm != NULL && !whole)
        gm->whole = false;
    r->wire_bytes = mg_tls_ctx_wire_bytes(tls) - wire_before; /* failures cost bytes too */
    if (*only)
        name_box(err, x->utf8);
    if (gm != NULL)
        mg_gmlist_finish(&gm->list);
    free(linked);
    mg_msglist_finish(&msgs);
    mg_store_close(store);
    return rc;
}

void mg_backup_err(const struct mg_account *a, const char *msg)
{
    if (strcmp(a->name, "command line") == 0)
        mg_err("%s", msg);
    else
        mg_err("[%s] %s", a->name, msg);
}

static bool fatal(enum mg_code rc)
{
    return rc != MG_OK && rc != MG_E_PARTIAL && rc != MG_E_MAILBOX;
}

/* Gmail closes sessions past 15 per account: never ask for more. */
static unsigned cap_connections(const struct mg_account *a)
{
    unsigned most = mg_provider_max_connections(a->server);
    if (most > 0 && a->chunks > most) {
        mg_warn("%s allows at most %u connections per account; using %u, not %u", a->server, most,
                most, a->chunks);
        return most;
    }
    return a->chunks;
}

/* The account's budget (budget.h): its daily limit, or its provider's
 * default, and the run's limits. A run that can fetch nothing stops here,
 * before it connects. */
static enum mg_code open_budget(const struct mg_account *a, struct mg_backup_hooks *h,
                                struct mg_error *err)
{
    uint64_t daily = mg_account_daily_limit(a, false);
    bool run = h->run != NULL && (h->run->max_bytes > 0 || h->run->deadline > 0);
    h->budget = NULL;
    if (daily == 0 && !run)
        return MG_OK;
    enum mg_code rc = mg_budget_create(a->output, daily, h->run, &h->budget, err);
    if (rc == MG_OK)
        rc = mg_budget_check(h->budget, err);
    if (rc == MG_OK && daily > 0 && !a->daily_limit_set) {
        char b[32];
        mg_human_bytes(daily, b, sizeof(b));
        mg_info("%s: daily limit %s (the default for %s; --daily-limit to change)", a->name, b,
                a->server);
    }
    return rc;
}

/* A Gmail account is known by its capabilities, whatever its host name: it
 * gets Gmail's default daily limit when none was given (open_budget could
 * only go by the host name, before connecting). */
static enum mg_code gmail_budget(const struct mg_account *a, struct mg_pool *pool,
                                 struct mg_backup_hooks *h, struct mg_error *err)
{
    uint64_t daily = mg_account_daily_limit(a, true);
    if (a->daily_limit_set || mg_provider_daily_limit(a->server) != 0 || daily == 0)
        return MG_OK;
    unsigned caps = 0;
    if (mg_pool_caps(pool, &caps, err) != MG_OK || !(caps & MG_CAP_GMAIL)) {
        mg_error_clear(err);
        return MG_OK;
    }
    struct mg_budget *b = NULL;
    enum mg_code rc = mg_budget_create(a->output, daily, h->run, &b, err);
    if (rc == MG_OK)
        rc = mg_budget_check(b, err);
    if (rc != MG_OK) {
        mg_budget_destroy(b);
        return rc;
    }
    mg_budget_destroy(h->budget);
    h->budget = b;
    char text[32];
    mg_human_bytes(daily, text, sizeof(text));
    mg_info("%s: Gmail (X-GM-EXT-1): daily limit %s (--daily-limit to change)", a->name, text);
    return MG_OK;
}

/* Lock and claim the directory that holds account a's backup, in dir: its
 * output, or output/<account> when other accounts of the config file share
 * the output. locks[0] locks the output, locks[1] the account's directory. */
static enum mg_code account_dir(const struct mg_account *a, char *dir, size_t cap, int locks[2],
                                struct mg_error *err)
{
    struct mg_store_owner who = {a->name, a->server, a->user};
    enum mg_code rc = mg_store_lock(a->output, &locks[0], err);
    /* A shared output is locked only while an account claims its directory
     * (below), so runs of other accounts (--shard) wait for it a moment. */
    for (int tries = 0; rc == MG_E_LOCKED && a->output_shared && tries < 600; tries++) {
        usleep(50 * 1000);
        rc = mg_store_lock(a->output, &locks[0], err);
    }
    if (rc != MG_OK)
        return rc;
    if (!a->output_shared) {
        snprintf(dir, cap, "%s", a->output);
        return mg_store_claim(a->output, &who, err);
    }
    char name[MG_MBOX_PATH_MAX + 1];
    mg_mbox_to_path(a->name, name, sizeof(name));
    if (snprintf(dir, cap, "%s/%s", a->output, name) >= (int)cap)
        return mg_error_set(err, MG_E_USAGE, "output path too long: %s", a->output);
    rc = mg_store_claim_shared(a->output, name, &who, a->output_first, err);
    if (rc == MG_OK)
        rc = mg_store_lock(dir, &locks[1], err);
    if (rc == MG_OK) { /* the account's own lock holds from here */
        close(locks[0]);
        locks[0] = -1;
    }
    return rc;
}

static int by_role(const void *pa, const void *pb)
{
    const struct box *a = pa, *b = pb;
    bool x = (a->roles & MG_ROLE_ALL) != 0, y = (b->roles & MG_ROLE_ALL) != 0;
    if (x != y)
        return x ? -1 : 1;
    return strcmp(a->utf8, b->utf8);
}

/* Several mailboxes on a server with Gmail's extensions are backed up as
 * Gmail keeps them (gmail.h): *gmail says so. Spam and Trash, which All Mail
 * does not hold, are left out of --all-mailboxes without spam_trash. */
static enum mg_code gmail_boxes(const struct mg_account *a, struct mg_pool *pool, struct boxes *b,
                                bool *gmail, struct mg_error *err)
{
    *gmail = false;
    if (b->n < 2)
        return MG_OK;
    unsigned caps = 0;
    enum mg_code rc = mg_pool_caps(pool, &caps, err);
    if (rc != MG_OK || !(caps & MG_CAP_GMAIL))
        return rc;
    *gmail = true;
    if (!a->all_mailboxes || a->spam_trash)
        return MG_OK;
    size_t o = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i].roles & (MG_ROLE_JUNK | MG_ROLE_TRASH)) {
            mg_info("%s: Gmail's Spam and Trash are not in All Mail; left out without "
                    "--spam-trash",
                    b->v[i].utf8);
            continue;
        }
        b->v[o++] = b->v[i];
    }
    b->n = o;
    return MG_OK;
}

static const char *gm_mode(const struct mg_account *a, struct mg_pool *pool, struct gm_run *gm);

/* A Gmail backup: All Mail first, so that every message is fetched from
 * it; what earlier runs stored is known from their labels.jsonl. Sets *gm
 * when this is such a backup. */
static enum mg_code gmail_plan(const struct mg_account *a, struct mg_pool *pool, struct boxes *b,
                               struct gm_run *state, struct gm_run **gm, struct mg_error *err)
{
    *gm = NULL;
    bool gmail;
    enum mg_code rc = gmail_boxes(a, pool, b, &gmail, err);
    if (rc != MG_OK || !gmail)
        return rc;
    qsort(b->v, b->n, sizeof(*b->v), by_role);
    state->outfd = open(a->output, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (state->outfd < 0)
        return mg_error_set(err, MG_E_IO, "cannot open %s: %s", a->output, strerror(errno));
    state->outlen = strlen(a->output);
    mg_gmail_index_init(&state->ix);
    rc = mg_gmail_index_load(&state->ix, state->outfd, &state->bad_lines, err);
    if (rc != MG_OK)
        return rc;
    if (state->bad_lines > 0)
        mg_warn("%s/" MG_LABELS_FILE ": %zu line%s not understood, left out", a->output,
                state->bad_lines, state->bad_lines == 1 ? "" : "s");
    mg_info("%s: Gmail: each message is downloaded once%s; the other folders link to it", a->name,
            b->n > 0 && (b->v[0].roles & MG_ROLE_ALL) ? " (from All Mail)" : "");
    state->boxes = b;
    state->whole = true;
    const char *why = gm_mode(a, pool, state);
    if (state->mode == GM_NOTHING)
        mg_info("%s: Gmail: nothing changed in All Mail since the last complete run (UIDNEXT %u, "
                "HIGHESTMODSEQ %llu): no folder is opened",
                a->name, state->all.uidnext, (unsigned long long)state->all.highestmodseq);
    else if (state->mode == GM_CHANGES)
        mg_info("%s: Gmail: All Mail changed since the last complete run: listing what is new "
                "(UID %u on) or changed (since MODSEQ %llu), then the folders of their labels",
                a->name, state->mark.uidnext, (unsigned long long)state->mark.modseq);
    else
        mg_info("%s: Gmail: every folder is listed: %s", a->name, why);
    *gm = state;
    return MG_OK;
}

/* Sets gm->mode (gm_run), and All Mail's STATUS and mark; says why a run
 * is a full one. Any mark found that is not GM_NOTHING's is withdrawn
 * first: a run cut short leaves the next one a full run. */
static const char *gm_mode(const struct mg_account *a, struct mg_pool *pool, struct gm_run *gm)
{
    struct boxes *b = gm->boxes;
    gm->mode = GM_FULL;
    if (b->n == 0 || !(b->v[0].roles & MG_ROLE_ALL))
        return "the server lists no All Mail (\\All)";
    const struct box *all = &b->v[0];
    struct mg_error err;
    mg_error_clear(&err);
    unsigned caps = 0;
    if (mg_pool_status(pool, all->imap, &gm->all, &err) != MG_OK) {
        memset(&gm->all, 0, sizeof(gm->all));
        return "All Mail's STATUS was refused";
    }
    struct mg_store *st = NULL;
    bool newgen = true;
    char dir[PATH_MAX];
    if (mg_store_locate(a->output, all->path, gm->all.uidvalidity, dir, sizeof(dir)) == 1 &&
        mg_store_open(a->output, all->path, (enum mg_format)a->format, gm->all.uidvalidity, &st,
                      &newgen, &err) != MG_OK)
        st = NULL;
    if (st != NULL && !newgen)
        mg_store_get_mark(st, &gm->mark);
    gm->all_stored = st != NULL ? mg_store_count(st) : 0;
    const char *why = NULL;
    struct stat sb;
    if (mg_pool_caps(pool, &caps, &err) != MG_OK || !(caps & MG_CAP_CONDSTORE) ||
        gm->all.highestmodseq == 0)
        why = "the server does not offer CONDSTORE";
    else if (st == NULL || newgen)
        why = "no earlier backup of All Mail under its UIDVALIDITY";
    else if (!gm->mark.gmail || gm->mark.uidnext == 0 || gm->mark.modseq == 0)
        why = "no complete earlier run of this version";
    else if (fstatat(gm->outfd, MG_LABELS_FILE, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
             !S_ISREG(sb.st_mode))
        why = MG_LABELS_FILE " is missing";
    else if (gm->bad_lines > 0)
        why = MG_LABELS_FILE " has lines not understood";
    else if (gm->all_stored < gm->mark.stored)
        why = "files were removed from All Mail here";
    else if (gm->all.uidnext < gm->mark.uidnext || gm->all.highestmodseq < gm->mark.modseq)
        why = "All Mail's UIDNEXT or HIGHESTMODSEQ went back";
    else if (flags_due(&gm->mark))
        why = "the daily full listing is due";
    for (size_t i = 1; why == NULL && i < b->n; i++) {
        struct box *x = &b->v[i];
        if (x->roles & (MG_ROLE_JUNK | MG_ROLE_TRASH))
            continue; /* asked for their STATUS (gm_skip) */
        struct mg_store_mark m;
        int f = gm_folder(a, x, &x->gm_uv, &m, &x->gm_have);
        if (f < 0)
            why = "files were removed from a folder here";
        x->gm_list = f == 0 || gm_label_of(x) == NULL;
    }
    if (why == NULL) {
        bool same = gm->all.uidnext == gm->mark.uidnext && gm->all.highestmodseq == gm->mark.modseq;
        gm->mode = same ? GM_NOTHING : GM_CHANGES;
        b->v[0].gm_list = !same;
    }
    if (st != NULL && gm->mode != GM_NOTHING && gm->mark.gmail) {
        struct mg_store_mark was = gm->mark;
        was.gmail = false;
        if (mg_store_set_mark(st, &was, &err) != MG_OK) {
            mg_warn("%s", err.msg);
            gm->whole = false; /* not marked whole again */
        }
    }
    mg_store_close(st);
    return why;
}

/* At the end of a Gmail run that listed something and left every folder
 * whole, All Mail's mark records what was seen at its start. */
static void gm_finish(const struct mg_account *a, struct gm_run *gm)
{
    if (!gm->whole || !gm->listed || gm->all.uidvalidity == 0 || gm->mode == GM_NOTHING)
        return;
    const struct box *all = &gm->boxes->v[0];
    struct mg_store *st;
    bool newgen;
    struct mg_error err;
    mg_error_clear(&err);
    if (mg_store_open(a->output, all->path, (enum mg_format)a->format, gm->all.uidvalidity, &st,
                      &newgen, &err) != MG_OK) {
        mg_warn("%s; the next run lists every folder", err.msg);
        return;
    }
    time_t full = gm->mode == GM_FULL ? time(NULL) : gm->mark.flags_at;
    struct mg_store_mark m = {gm->all.uidnext, gm->all_stored, gm->all.highestmodseq, full, true};
    if (mg_store_set_mark(st, &m, &err) != MG_OK)
        mg_warn("%s; the next run lists every folder", err.msg);
    mg_store_close(st);
}

/* What the account's run cost on the wire and what it stored. */
static void count_bytes(struct mg_report *rep, struct mg_tls_ctx *tls)
{
    rep->wire_bytes = mg_tls_ctx_wire_bytes(tls);
    rep->compressed = mg_tls_ctx_compressed(tls);
    for (size_t i = 0; i < rep->nboxes; i++)
        rep->stored_bytes += rep->boxes[i].bytes;
    if (tls == NULL)
        return;
    char wire[32], stored[32];
    mg_human_bytes(rep->wire_bytes, wire, sizeof(wire));
    mg_human_bytes(rep->stored_bytes, stored, sizeof(stored));
    mg_info("%s: %s received from the server (%s), %s of messages stored", rep->account, wire,
            rep->compressed > 0 ? "COMPRESS=DEFLATE" : "uncompressed", stored);
}

enum mg_code mg_backup_account(const struct mg_account *a, const struct mg_creds *cr,
                               unsigned long limit, const struct mg_backup_hooks *hooks,
                               struct mg_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    rep->account = a->name;
    rep->server = a->server;
    rep->user = a->user;
    struct mg_error err;
    mg_error_clear(&err);
    struct mg_tls_ctx *tls = NULL;
    struct mg_pool *pool = NULL;
    struct boxes b = {0};
    int locks[2] = {-1, -1};
    char dir[PATH_MAX] = "";
    struct mg_account own = *a;
    struct mg_backup_hooks own_hooks = {0};
    if (hooks != NULL)
        own_hooks = *hooks;

    enum mg_code rc = mg_tls_ctx_create(a->cafile, &tls, &err);
    if (rc == MG_OK && a->compress == MG_NO)
        mg_tls_ctx_no_compress(tls);
    if (rc == MG_OK)
        rc = account_dir(a, dir, sizeof(dir), locks, &err);
    own.output = dir;
    a = &own;
    if (rc == MG_OK)
        rc = open_budget(a, &own_hooks, &err);
    hooks = &own_hooks;
    struct mg_server srv = {a->server, a->port, (int)a->timeout, tls};
    struct mg_imap_source is = {&srv, cr};
    struct mg_source src = mg_imap_source(&is);
    if (rc == MG_OK)
        rc = mg_pool_create(&src, cap_connections(a), &pool, &err);
    if (rc == MG_OK) {
        mg_info("%s: connecting to %s port %s as %s", a->name, a->server, a->port, a->user);
        rc = mg_pool_connect(pool, &err);
    }
    if (rc == MG_OK)
        rc = gmail_budget(a, pool, &own_hooks, &err);
    if (rc == MG_OK)
        rc = select_boxes(a, pool, &b, &err);
    if (rc == MG_OK && a->all_mailboxes)
        save_roles(a, &b);
    struct gm_run gm_state = {.outfd = -1};
    struct gm_run *gm = NULL;
    if (rc == MG_OK)
        rc = gmail_plan(a, pool, &b, &gm_state, &gm, &err);
    if (rc == MG_OK && b.n > 0 && (rep->boxes = calloc(b.n, sizeof(*rep->boxes))) == NULL)
        rc = mg_error_set(&err, MG_E_INTERNAL, "out of memory");
    if (rc != MG_OK) {
        mg_backup_err(a, err.msg);
        rep->code = rc;
        snprintf(rep->error, sizeof(rep->error), "%s", err.msg);
        goto out;
    }

    enum mg_code worst = MG_OK;
    size_t opened = 0; /* mailboxes the server gave */
    struct mg_mailbox_report *first_skipped = NULL;
    for (size_t i = 0; i < b.n; i++) {
        struct mg_mailbox_report *r = &rep->boxes[rep->nboxes++];
        snprintf(r->name, sizeof(r->name), "%s", b.v[i].utf8);
        mg_error_clear(&err);
        bool only = false;
        if (hooks != NULL && hooks->on_mailbox_start != NULL)
            hooks->on_mailbox_start(hooks->ctx, r->name);
        rc = backup_box(a, pool, tls, &b.v[i], limit, hooks, gm, r, &rep->connections, &only, &err);
        r->code = rc;
        if (rc != MG_OK)
            snprintf(r->error, sizeof(r->error), "%s", err.msg);
        if (hooks != NULL && hooks->on_mailbox_end != NULL)
            hooks->on_mailbox_end(hooks->ctx, r);
        if (!only)
            opened++;
        if (rc == MG_OK)
            continue;
        /* A listed mailbox the server will not give: one warning, exit 1,
         * the others go on. One the user named keeps its own exit code. */
        if (only && a->all_mailboxes) {
            if (strcmp(a->name, "command line") == 0)
                mg_warn("skipped: %s", err.msg);
            else
                mg_warn("[%s] skipped: %s", a->name, err.msg);
            if (worst == MG_OK)
                worst = MG_E_PARTIAL;
            if (first_skipped == NULL)
                first_skipped = r;
            continue;
        }
        mg_backup_err(a, err.msg);
        if (fatal(rc) && !only) {
            worst = rc;
            snprintf(rep->error, sizeof(rep->error), "%s", err.msg);
            break;
        }
        if (worst == MG_OK || (worst == MG_E_PARTIAL && rc == MG_E_MAILBOX))
            worst = rc;
    }
    /* Not one listed mailbox could be opened: that is the account's failure
     * (a server breaking every session is exit 8, not 1). */
    if (opened == 0 && first_skipped != NULL && first_skipped->code == MG_E_PROTOCOL) {
        worst = MG_E_PROTOCOL;
        snprintf(rep->error, sizeof(rep->error), "%s", first_skipped->error);
    }
    rep->code = worst;
    if (gm != NULL && gm->listed) {
        mg_error_clear(&err);
        if (mg_gmail_index_save(&gm->ix, gm->outfd, a->output, &err) != MG_OK) {
            mg_backup_err(a, err.msg);
            gm->whole = false;
            if (rep->code == MG_OK) {
                rep->code = err.code;
                snprintf(rep->error, sizeof(rep->error), "%s", err.msg);
            }
        }
        if (rep->code == MG_OK)
            gm_finish(a, gm);
    }

out:
    if (gm_state.outfd >= 0)
        close(gm_state.outfd);
    mg_gmail_index_finish(&gm_state.ix);
    mg_pool_destroy(pool);
    count_bytes(rep, tls);
    mg_budget_destroy(own_hooks.budget);
    free(b.v);
    for (int i = 0; i < 2; i++)
        if (locks[i] >= 0)
            close(locks[i]);
    mg_tls_ctx_destroy(tls);
    return rep->code;
}

int mg_backup_dir(const struct mg_account *a, char *dir, size_t cap)
{
    if (!a->output_shared)
        return snprintf(dir, cap, "%s", a->output) < (int)cap ? 0 : -1;
    char name[MG_MBOX_PATH_MAX + 1];
    mg_mbox_to_path(a->name, name, sizeof(name));
    return snprintf(dir, cap, "%s/%s", a->output, name) < (int)cap ? 0 : -1;
}

enum mg_code mg_backup_mailboxes(const struct mg_account *a, struct mg_pool *pool,
                                 struct mg_backup_box **out, size_t *n, bool *gmail,
                                 struct mg_error *err)
{
    struct boxes b = {0};
    enum mg_code rc = select_boxes(a, pool, &b, err);
    if (rc == MG_OK)
        rc = gmail_boxes(a, pool, &b, gmail, err);
    if (rc == MG_OK && *gmail)
        qsort(b.v, b.n, sizeof(*b.v), by_role);
    struct mg_backup_box *v = rc == MG_OK ? calloc(b.n ? b.n : 1, sizeof(*v)) : NULL;
    if (rc == MG_OK && v == NULL)
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    for (size_t i = 0; rc == MG_OK && i < b.n; i++) {
        snprintf(v[i].utf8, sizeof(v[i].utf8), "%s", b.v[i].utf8);
        snprintf(v[i].imap, sizeof(v[i].imap), "%s", b.v[i].imap);
        snprintf(v[i].path, sizeof(v[i].path), "%s", b.v[i].path);
        v[i].roles = b.v[i].roles;
    }
    free(b.v);
    *out = v;
    *n = rc == MG_OK ? b.n : 0;
    return rc;
}

enum mg_code mg_backup_connect(const struct mg_account *a, const struct mg_creds *cr,
                               struct mg_backup_conn *c, struct mg_error *err)
{
    memset(c, 0, sizeof(*c));
    enum mg_code rc = mg_tls_ctx_create(a->cafile, &c->tls, err);
    if (rc == MG_OK && a->compress == MG_NO)
        mg_tls_ctx_no_compress(c->tls);
    c->srv = (struct mg_server){a->server, a->port, (int)a->timeout, c->tls};
    c->is = (struct mg_imap_source){&c->srv, cr};
    struct mg_source src = mg_imap_source(&c->is);
    if (rc == MG_OK)
        rc = mg_pool_create(&src, 1, &c->pool, err);
    if (rc == MG_OK) {
        mg_info("%s: connecting to %s port %s as %s", a->name, a->server, a->port, a->user);
        rc = mg_pool_connect(c->pool, err);
    }
    return rc;
}

void mg_backup_disconnect(struct mg_backup_conn *c)
{
    mg_pool_destroy(c->pool);
    mg_tls_ctx_destroy(c->tls);
    memset(c, 0, sizeof(*c));
}

void mg_report_finish(struct mg_report *rep)
{
    free(rep->boxes);
    rep->boxes = NULL;
    rep->nboxes = 0;
}
