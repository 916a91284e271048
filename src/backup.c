/* backup.c - see include/mailgrab/backup.h */
#include "mailgrab/backup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mailgrab/imap.h"
#include "mailgrab/log.h"
#include "mailgrab/mboxname.h"
#include "mailgrab/plan.h"
#include "mailgrab/pool.h"
#include "mailgrab/store.h"
#include "mailgrab/tls.h"

#define BATCH_MSGS 256
#define BATCH_BYTES (8u << 20)

struct box {
    char utf8[1024];
    char imap[1024];
    char path[MG_MBOX_PATH_MAX + 16];
};

struct boxes {
    struct box *v;
    size_t n;
    bool bad_name;
};

static void add_listed(const char *imap_name, void *ctx)
{
    struct boxes *b = ctx;
    struct box *v = reallocarray(b->v, b->n + 1, sizeof(*v));
    if (v == NULL)
        return;
    b->v = v;
    struct box *x = &b->v[b->n];
    snprintf(x->imap, sizeof(x->imap), "%s", imap_name);
    if (mg_mbox_from_imap(imap_name, x->utf8, sizeof(x->utf8)) != 0) {
        /* Not valid modified UTF-7: keep the server's bytes as the name. */
        snprintf(x->utf8, sizeof(x->utf8), "%s", imap_name);
        b->bad_name = true;
    }
    b->n++;
}

static int cmp_box(const void *a, const void *b)
{
    return strcmp(((const struct box *)a)->utf8, ((const struct box *)b)->utf8);
}

/* Give each mailbox its directory name. On a case-insensitive file system
 * "Work" and "work" would share one directory: later ones get a suffix. */
static void name_dirs(struct boxes *b)
{
    qsort(b->v, b->n, sizeof(*b->v), cmp_box);
    for (size_t i = 0; i < b->n; i++) {
        char p[MG_MBOX_PATH_MAX + 1];
        mg_mbox_to_path(b->v[i].utf8, p, sizeof(p));
        snprintf(b->v[i].path, sizeof(b->v[i].path), "%s", p);
        for (size_t j = 0; j < i; j++) {
            if (strcasecmp(b->v[j].path, b->v[i].path) == 0) {
                uint32_t h = 2166136261u;
                for (const char *s = b->v[i].utf8; *s; s++)
                    h = (h ^ (unsigned char)*s) * 16777619u;
                snprintf(b->v[i].path, sizeof(b->v[i].path), "%s~%08x", p, h);
                break;
            }
        }
    }
}

static enum mg_code select_boxes(const struct mg_account *a, struct mg_pool *pool, struct boxes *b,
                                 struct mg_error *err)
{
    if (a->all_mailboxes) {
        enum mg_code rc = mg_pool_mailboxes(pool, add_listed, b, err);
        if (rc != MG_OK)
            return rc;
        if (b->bad_name)
            mg_warn("the server listed a mailbox name that is not valid modified UTF-7");
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
    name_dirs(b);
    return MG_OK;
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
    fprintf(stderr,
            "mailgrab: %s: %zu new (%.1f MB) in %.2f s, %.0f msg/s, %u connection%s; %zu "
            "already stored; in %s\n",
            r->name, r->fetched, (double)r->bytes / 1e6, r->seconds, rate, connections,
            connections == 1 ? "" : "s", r->skipped, r->dir);
}

/* One mailbox. Returns its code; fatal ones stop the account. */
static enum mg_code backup_box(const struct mg_account *a, struct mg_pool *pool,
                               const struct box *x, unsigned long limit,
                               const struct mg_backup_hooks *hooks, struct mg_mailbox_report *r,
                               unsigned *connections, struct mg_error *err)
{
    struct mg_mailbox_info mi;
    struct mg_store *store = NULL;
    struct mg_msglist msgs = {0};
    enum mg_code rc = mg_pool_examine(pool, x->imap, &mi, err);
    if (rc != MG_OK)
        goto out;
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
    if (mi.exists > have)
        mg_pool_warm(pool, x->imap,
                     mi.exists - have < a->chunks ? (unsigned)(mi.exists - have) : a->chunks);
    uint32_t uidvalidity = mi.uidvalidity;
    rc = mg_pool_list(pool, x->imap, &mi, &msgs, err);
    if (rc != MG_OK)
        goto out;
    if (mi.uidvalidity != uidvalidity) {
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
    if (limit > 0)
        mg_msglist_truncate(&msgs, limit);
    mg_info("%s: %zu messages on the server, %zu already stored, %zu to fetch", x->utf8, r->listed,
            r->skipped, msgs.n);

    struct mg_job job = {
        .mailbox = x->imap,
        .uidvalidity = mi.uidvalidity,
        .store = store,
        .msgs = &msgs,
        .batch_msgs = BATCH_MSGS,
        .batch_bytes = BATCH_BYTES,
        .on_stored = hooks ? hooks->on_stored : NULL,
        .ctx = hooks ? hooks->ctx : NULL,
    };
    struct mg_job_result res;
    rc = mg_pool_run(pool, &job, &res);
    r->fetched = res.stored;
    r->failed = res.failed;
    r->vanished = res.vanished;
    r->bytes = res.bytes;
    r->seconds = res.seconds;
    if (res.connections > *connections)
        *connections = res.connections;
    if (rc != MG_OK && rc != MG_E_PARTIAL) {
        *err = res.fatal;
        goto out;
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
    unsigned most = mg_server_max_connections(a->server);
    if (most > 0 && a->chunks > most) {
        mg_warn("%s allows at most %u connections per account; using %u, not %u", a->server, most,
                most, a->chunks);
        return most;
    }
    return a->chunks;
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
    int lockfd = -1;

    enum mg_code rc = mg_tls_ctx_create(a->cafile, &tls, &err);
    if (rc == MG_OK)
        rc = mg_store_lock(a->output, &lockfd, &err);
    struct mg_server srv = {a->server, a->port, (int)a->timeout, tls};
    if (rc == MG_OK)
        rc = mg_pool_create(&srv, cr, cap_connections(a), &pool, &err);
    if (rc == MG_OK) {
        mg_info("%s: connecting to %s port %s as %s", a->name, a->server, a->port, a->user);
        rc = mg_pool_connect(pool, &err);
    }
    if (rc == MG_OK)
        rc = select_boxes(a, pool, &b, &err);
    if (rc == MG_OK && b.n > 0 && (rep->boxes = calloc(b.n, sizeof(*rep->boxes))) == NULL)
        rc = mg_error_set(&err, MG_E_INTERNAL, "out of memory");
    if (rc != MG_OK) {
        mg_backup_err(a, err.msg);
        rep->code = rc;
        snprintf(rep->error, sizeof(rep->error), "%s", err.msg);
        goto out;
    }

    enum mg_code worst = MG_OK;
    for (size_t i = 0; i < b.n; i++) {
        struct mg_mailbox_report *r = &rep->boxes[rep->nboxes++];
        snprintf(r->name, sizeof(r->name), "%s", b.v[i].utf8);
        mg_error_clear(&err);
        rc = backup_box(a, pool, &b.v[i], limit, hooks, r, &rep->connections, &err);
        r->code = rc;
        if (rc == MG_OK)
            continue;
        mg_backup_err(a, err.msg);
        snprintf(r->error, sizeof(r->error), "%s", err.msg);
        if (fatal(rc)) {
            worst = rc;
            snprintf(rep->error, sizeof(rep->error), "%s", err.msg);
            break;
        }
        if (worst == MG_OK || (worst == MG_E_PARTIAL && rc == MG_E_MAILBOX))
            worst = rc;
    }
    rep->code = worst;

out:
    mg_pool_destroy(pool);
    free(b.v);
    if (lockfd >= 0)
        close(lockfd);
    mg_tls_ctx_destroy(tls);
    return rep->code;
}

void mg_report_finish(struct mg_report *rep)
{
    free(rep->boxes);
    rep->boxes = NULL;
    rep->nboxes = 0;
}
