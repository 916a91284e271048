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
#include "mailgrab/provider.h"
#include "mailgrab/store.h"
#include "mailgrab/tls.h"

#define FETCH_MSGS 256
#define FETCH_BYTES (8u << 20)

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
    fprintf(stderr,
            "mailgrab: %s: %zu new (%.1f MB) in %.2f s, %.0f msg/s, %u connection%s; %zu "
            "already stored; in %s\n",
            r->name, r->fetched, (double)r->bytes / 1e6, r->seconds, rate, connections,
            connections == 1 ? "" : "s", r->skipped, r->dir);
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

/* The progress line of a download, on a terminal (log.h decides). */
static void show_progress(void *ctx, const struct mg_progress *pr)
{
    (void)ctx;
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

/* One mailbox. Returns its code; fatal ones stop the account unless *only
 * says the failure was this mailbox's own. */
static enum mg_code backup_box(const struct mg_account *a, struct mg_pool *pool,
                               const struct box *x, unsigned long limit,
                               const struct mg_backup_hooks *hooks, struct mg_mailbox_report *r,
                               unsigned *connections, bool *only, struct mg_error *err)
{
    struct mg_mailbox_info mi;
    struct mg_store *store = NULL;
    struct mg_msglist msgs = {0};
    *only = false;
    /* The run's budget is spent (--max-time above all): not even a listing. */
    if (hooks != NULL && mg_budget_stopped(hooks->budget))
        return mg_budget_error(hooks->budget, err);
    const char *imap = x->imap;
    enum mg_code rc = mg_pool_examine(pool, imap, &mi, err);
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
    if (mi.exists > have)
        mg_pool_warm(pool, imap,
                     mi.exists - have < a->chunks ? (unsigned)(mi.exists - have) : a->chunks);
    uint32_t uidvalidity = mi.uidvalidity;
    rc = mg_pool_list(pool, imap, &mi, &msgs, err);
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
    if (limit > 0)
        mg_msglist_truncate(&msgs, limit);
    mg_info("%s: %zu messages on the server, %zu already stored, %zu to fetch", x->utf8, r->listed,
            r->skipped, msgs.n);

    struct mg_job job = {
        .mailbox = imap,
        .uidvalidity = mi.uidvalidity,
        .store = store,
        .msgs = &msgs,
        .fetch_msgs = FETCH_MSGS,
        .fetch_bytes = FETCH_BYTES,
        .on_stored = hooks ? hooks->on_stored : NULL,
        .ctx = hooks ? hooks->ctx : NULL,
        .on_progress = show_progress,
        .budget = hooks ? hooks->budget : NULL,
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
    if (*only)
        name_box(err, x->utf8);
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
    uint64_t daily = a->daily_limit_set ? a->daily_limit : mg_provider_daily_limit(a->server);
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

/* Lock and claim the directory that holds account a's backup, in dir: its
 * output, or output/<account> when other accounts of the config file share
 * the output. locks[0] locks the output, locks[1] the account's directory. */
static enum mg_code account_dir(const struct mg_account *a, char *dir, size_t cap, int locks[2],
                                struct mg_error *err)
{
    struct mg_store_owner who = {a->name, a->server, a->user};
    enum mg_code rc = mg_store_lock(a->output, &locks[0], err);
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
    return rc;
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
    size_t opened = 0; /* mailboxes the server gave */
    struct mg_mailbox_report *first_skipped = NULL;
    for (size_t i = 0; i < b.n; i++) {
        struct mg_mailbox_report *r = &rep->boxes[rep->nboxes++];
        snprintf(r->name, sizeof(r->name), "%s", b.v[i].utf8);
        mg_error_clear(&err);
        bool only = false;
        rc = backup_box(a, pool, &b.v[i], limit, hooks, r, &rep->connections, &only, &err);
        r->code = rc;
        if (!only)
            opened++;
        if (rc == MG_OK)
            continue;
        snprintf(r->error, sizeof(r->error), "%s", err.msg);
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

out:
    mg_pool_destroy(pool);
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
                                 struct mg_backup_box **out, size_t *n, struct mg_error *err)
{
    struct boxes b = {0};
    enum mg_code rc = select_boxes(a, pool, &b, err);
    struct mg_backup_box *v = rc == MG_OK ? calloc(b.n ? b.n : 1, sizeof(*v)) : NULL;
    if (rc == MG_OK && v == NULL)
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    for (size_t i = 0; rc == MG_OK && i < b.n; i++) {
        snprintf(v[i].utf8, sizeof(v[i].utf8), "%s", b.v[i].utf8);
        snprintf(v[i].imap, sizeof(v[i].imap), "%s", b.v[i].imap);
        snprintf(v[i].path, sizeof(v[i].path), "%s", b.v[i].path);
    }
    free(b.v);
    *out = v;
    *n = rc == MG_OK ? b.n : 0;
    return rc;
}

void mg_report_finish(struct mg_report *rep)
{
    free(rep->boxes);
    rep->boxes = NULL;
    rep->nboxes = 0;
}
