/*
 * main.c - the story of one mailgrab run:
 * parse options -> fork the analyzer (--stats/--csv) -> load the config file
 * -> choose the accounts -> for each: get its credentials, back it up
 * (backup.c), feeding each stored message to the analyzer -> print the
 * statistics -> write the summary -> exit with a code that says what
 * happened. SIGINT, SIGTERM and SIGHUP (cancel.h) stop the backup at any
 * stage; the statistics and the summary are still written, and the exit
 * code is 130.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/backup.h"
#include "mailgrab/cancel.h"
#include "mailgrab/cli.h"
#include "mailgrab/config.h"
#include "mailgrab/error.h"
#include "mailgrab/events.h"
#include "mailgrab/imap.h"
#include "mailgrab/log.h"
#include "mailgrab/login_cmd.h"
#include "mailgrab/metrics.h"
#include "mailgrab/oauth2.h"
#include "mailgrab/password.h"
#include "mailgrab/restore.h"
#include "mailgrab/pool.h"
#include "mailgrab/shard.h"
#include "mailgrab/analyzer.h"
#include "mailgrab/stats.h"
#include "mailgrab/stats_cmd.h"
#include "mailgrab/estimate.h"
#include "mailgrab/verify.h"

#ifndef MAILGRAB_VERSION
#define MAILGRAB_VERSION "unknown"
#endif

/* Which accounts this run backs up, each merged as defaults < [defaults] <
 * [account] < command line. */
static enum mg_code choose_accounts(const struct mg_options *o, const struct mg_config *cfg,
                                    const struct mg_shard *shard, struct mg_account **out,
                                    size_t *n, struct mg_error *err)
{
    size_t want = 1;
    bool from_config = cfg->naccounts > 0 && o->over.server == NULL;
    if (o->account != NULL) {
        from_config = true;
        want = 1;
    } else if (from_config) {
        want = cfg->naccounts;
    }
    struct mg_account *v = calloc(want, sizeof(*v));
    if (v == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    size_t k = 0;
    for (size_t i = 0; from_config && i < cfg->naccounts; i++) {
        if (o->account != NULL && strcmp(cfg->accounts[i].name, o->account) != 0)
            continue;
        if (!mg_shard_has(shard, cfg->accounts[i].name))
            continue;
        mg_account_init(&v[k], cfg->accounts[i].name);
        mg_account_merge(&v[k], &cfg->defaults);
        mg_account_merge(&v[k], &cfg->accounts[i]);
        mg_account_merge(&v[k], &o->over);
        k++;
    }
    if (shard->count > 0 && !from_config) {
        free(v);
        return mg_error_set(err, MG_E_USAGE, "--shard needs the accounts of a config file (%s)",
                            cfg->path[0] ? cfg->path : "none found");
    }
    if (o->account != NULL && k == 0) {
        free(v);
        return mg_error_set(err, MG_E_USAGE, "no [account %s] in %s", o->account,
                            cfg->path[0] ? cfg->path : "the config file");
    }
    if (from_config)
        mg_config_share_outputs(cfg, v, k);
    if (!from_config) {
        mg_account_init(&v[0], "command line");
        mg_account_merge(&v[0], &cfg->defaults);
        mg_account_merge(&v[0], &o->over);
        k = 1;
    }
    *out = v;
    *n = k;
    return MG_OK;
}

/* Credentials for one account: a password, or a shared OAuth2 token source. */
static enum mg_code get_creds(const struct mg_account *a, const char *env_password,
                              struct mg_creds *cr, struct mg_error *err)
{
    memset(cr, 0, sizeof(*cr));
    cr->user = a->user;
    cr->auth = (enum mg_auth)a->auth;
    if (cr->auth == MG_AUTH_PASSWORD) {
        char *pw = NULL;
        enum mg_code rc = mg_password_get(a->password_file, a->password_command, env_password,
                                          a->user, a->server, &pw, err);
        cr->password = pw;
        return rc;
    }
    struct mg_oauth2_cfg oc = {
        .token_url = a->oauth2_token_url,
        .client_id = a->oauth2_client_id,
        .client_secret_file = a->oauth2_client_secret_file,
        .refresh_token_file = a->oauth2_refresh_token_file,
        .token_command = a->oauth2_token_command,
        .cafile = a->oauth2_cafile,
    };
    return mg_oauth2_create(&oc, &cr->oauth, err);
}

static void drop_creds(struct mg_creds *cr)
{
    mg_secret_free((char *)cr->password);
    mg_oauth2_destroy(cr->oauth);
    memset(cr, 0, sizeof(*cr));
}

/* Each committed message goes to the analyzer process, if there is one.
 * Called by several workers at once; queuing never waits (analyzer.h). */
struct feed {
    struct mg_analyzer *an;
    atomic_bool broken;
    struct mg_events *ev; /* --events, or NULL */
    const char *account;  /* the account being backed up */
};

static void feed_stored(void *ctx, uint32_t uid, const char *path, bool sent)
{
    struct feed *f = ctx;
    struct mg_error err;
    (void)uid;
    if (f->an == NULL || atomic_load(&f->broken))
        return;
    if (mg_analyzer_feed(f->an, path, sent, &err) != MG_OK && !atomic_exchange(&f->broken, true)) {
        /* Statistics are a bonus: the backup goes on without them. */
        mg_warn("%s; statistics will be incomplete", err.msg);
    }
}

static void feed_mailbox_start(void *ctx, const char *mailbox)
{
    struct feed *f = ctx;
    mg_events_mailbox_start(f->ev, f->account, mailbox);
}

static void feed_mailbox_end(void *ctx, const struct mg_mailbox_report *r)
{
    struct feed *f = ctx;
    mg_events_mailbox_end(f->ev, f->account, r);
    if (r->code != MG_OK)
        mg_events_error(f->ev, f->account, r->name, r->code, r->error);
}

static void feed_progress(void *ctx, const struct mg_progress *pr)
{
    struct feed *f = ctx;
    mg_events_progress(f->ev, f->account, pr);
}

static void warn_to_events(void *ctx, const char *line)
{
    mg_events_warning(ctx, line);
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

static double unix_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A run that ends before any account: its one error, and the end event. */
static int stop_early(struct mg_events *ev, const struct mg_error *err)
{
    mg_err("%s", err->msg);
    mg_events_error(ev, NULL, NULL, err->code, err->msg);
    mg_events_run_end(ev, NULL, 0, err->code);
    mg_log_set_warn_sink(NULL, NULL);
    mg_events_close(ev);
    return err->code;
}

/* The analyzer, with the per-message table opened here so a path that
 * cannot be written stops the run before it starts. */
static enum mg_code start_analyzer(const struct mg_stats_settings *st, struct mg_analyzer **an,
                                   struct mg_error *err)
{
    if (mg_stats_settings_check(st, err) != MG_OK)
        return err->code;
    char *me[MG_STATS_ME_MAX] = {NULL};
    struct mg_analyzer_opts ao = {.stopwords_path = st->stopwords,
                                  .tz = st->tz,
                                  .me = (const char *const *)me,
                                  .nme = st->nme,
                                  .rows_fd = -1};
    FILE *rows = NULL;
    enum mg_code rc = MG_OK;
    if (mg_stats_me_lower(st, me) != 0)
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    if (rc == MG_OK && st->messages_csv != NULL)
        rc = mg_stats_rows_open(st->messages_csv, &rows, err);
    if (rc == MG_OK && rows != NULL) {
        if (fflush(rows) != 0)
            rc = mg_error_set(err, MG_E_IO, "writing %s failed: %s", st->messages_csv,
                              strerror(errno));
        ao.rows_fd = fileno(rows);
    }
    if (rc == MG_OK)
        rc = mg_analyzer_start(&ao, an, err);
    if (rows != NULL && rows != stdout)
        fclose(rows); /* the analyzer has its own copy */
    for (size_t i = 0; i < MG_STATS_ME_MAX; i++)
        free(me[i]);
    return rc;
}

static enum mg_code run_account(const struct mg_account *acct, const struct mg_options *o,
                                const char *env_password, struct feed *feed,
                                struct mg_run_limits *run, struct mg_report *rep)
{
    struct mg_account a = *acct;
    struct mg_error err;
    mg_error_clear(&err);
    memset(rep, 0, sizeof(*rep));
    rep->account = acct->name;
    rep->server = acct->server;
    rep->user = acct->user;
    struct mg_creds cr;
    memset(&cr, 0, sizeof(cr));
    enum mg_code rc = mg_account_finish(&a, &err);
    if (rc == MG_OK) {
        rep->server = a.server;
        rc = get_creds(&a, env_password, &cr, &err);
    }
    if (rc != MG_OK) {
        mg_backup_err(&a, err.msg);
        rep->code = rc;
        snprintf(rep->error, sizeof(rep->error), "%s", err.msg);
        drop_creds(&cr);
        return rc;
    }
    struct mg_backup_hooks hooks = {
        .on_stored = feed_stored,
        .ctx = feed,
        .on_mailbox_start = feed_mailbox_start,
        .on_mailbox_end = feed_mailbox_end,
        .on_progress = feed_progress,
        .run = run,
    };
    rc = mg_backup_account(&a, &cr, o->limit, &hooks, rep);
    if (cr.oauth != NULL)
        mg_info("%s: %lu OAuth2 token refresh%s", a.name, mg_oauth2_refreshes(cr.oauth),
                mg_oauth2_refreshes(cr.oauth) == 1 ? "" : "es");
    drop_creds(&cr);
    return rc;
}

/* mailgrab verify: each account's backup against its server, or with
 * --offline against its manifests only (no credentials needed then). */
static int verify_accounts(const struct mg_account *accounts, size_t n, const struct mg_options *o,
                           const char *env_password)
{
    struct mg_verify_tally t = {0};
    enum mg_code worst = MG_OK;
    for (size_t i = 0; i < n; i++) {
        struct mg_account a = accounts[i];
        struct mg_creds cr;
        memset(&cr, 0, sizeof(cr));
        struct mg_error err;
        mg_error_clear(&err);
        enum mg_code rc = MG_OK;
        if (o->offline && a.output == NULL)
            a.output = ".";
        if (!o->offline) {
            rc = mg_account_finish(&a, &err);
            if (rc == MG_OK)
                rc = get_creds(&a, env_password, &cr, &err);
            if (rc != MG_OK)
                mg_backup_err(&a, err.msg);
        }
        if (rc == MG_OK)
            rc = mg_verify_account(&a, o->offline ? NULL : &cr, o->offline, &t);
        drop_creds(&cr);
        if (rc != MG_OK && (worst == MG_OK || worst == MG_E_MAILBOX))
            worst = rc;
        if (mg_cancelled())
            break;
    }
    if (mg_cancelled())
        worst = MG_E_INTERRUPTED;
    return mg_verify_finish(&t, worst);
}

/* A run a signal cut short exits 130 whatever else happened, and says so
 * once: said is true when an account's error already told of the signal
 * (a signal after the last account, during the statistics, is told here). */
static int cut_short(int code, bool said)
{
    if (!mg_cancelled())
        return code;
    if (!said) {
        struct mg_error err;
        mg_cancel_error(&err);
        mg_err("%s", err.msg);
    }
    return MG_E_INTERRUPTED;
}

/* mailgrab estimate: what each account's next backup would download. */
static int estimate_accounts(const struct mg_account *accounts, size_t n,
                             const struct mg_options *o, const char *env_password)
{
    struct mg_estimate *v = calloc(n ? n : 1, sizeof(*v));
    if (v == NULL) {
        mg_err("out of memory");
        return MG_E_INTERNAL;
    }
    enum mg_code worst = MG_OK;
    size_t done = 0;
    bool said = false; /* the signal, in an account's error */
    for (size_t i = 0; i < n && !mg_cancelled(); i++) {
        struct mg_account a = accounts[i];
        struct mg_creds cr;
        memset(&cr, 0, sizeof(cr));
        struct mg_error err;
        mg_error_clear(&err);
        enum mg_code rc = mg_account_finish(&a, &err);
        if (rc == MG_OK)
            rc = get_creds(&a, env_password, &cr, &err);
        if (rc == MG_OK)
            rc = mg_estimate_account(&a, &cr, &v[done], &err);
        drop_creds(&cr);
        if (rc == MG_OK) {
            v[done].daily_limit = mg_account_daily_limit(&a, v[done].gmail);
            done++;
        } else {
            mg_estimate_finish(&v[done]);
            mg_backup_err(&a, err.msg);
            said |= rc == MG_E_INTERRUPTED;
            if (worst == MG_OK)
                worst = rc;
        }
    }
    worst = cut_short(worst, said);
    if (done > 0 && mg_estimate_print(stdout, v, done, o->json) != 0) {
        mg_err("cannot write the estimate: %s", strerror(errno));
        if (worst == MG_OK)
            worst = MG_E_IO;
    }
    for (size_t i = 0; i < done; i++)
        mg_estimate_finish(&v[i]);
    free(v);
    return worst;
}

/* mailgrab restore: DIR into one account (the command line's, or the one
 * --account names, or the config file's only one). */
static int restore_account(const struct mg_account *accounts, size_t n, const struct mg_options *o,
                           const char *env_password)
{
    if (n != 1) {
        mg_err("the config file has %zu accounts: name the one to restore into with --account", n);
        return MG_E_USAGE;
    }
    struct mg_account a = accounts[0];
    struct mg_report rep;
    memset(&rep, 0, sizeof(rep));
    rep.account = a.name;
    rep.server = a.server;
    rep.user = a.user;
    struct mg_creds cr;
    memset(&cr, 0, sizeof(cr));
    struct mg_error err;
    mg_error_clear(&err);
    enum mg_code rc = mg_account_finish(&a, &err);
    if (rc == MG_OK) {
        rep.server = a.server;
        rc = get_creds(&a, env_password, &cr, &err);
    }
    if (rc != MG_OK) {
        mg_backup_err(&a, err.msg);
        rep.code = rc;
        snprintf(rep.error, sizeof(rep.error), "%s", err.msg);
    } else {
        struct mg_restore_opts ro = {o->restore_dir, o->over.mailboxes, o->over.nmailboxes};
        rc = mg_restore_account(&a, &cr, &ro, &rep);
    }
    drop_creds(&cr);
    int exit_code = cut_short(rc, rc == MG_E_INTERRUPTED);
    if (o->summary_json != NULL &&
        mg_summary_write(o->summary_json, &rep, 1, exit_code, &err) != MG_OK) {
        mg_err("%s", err.msg);
        if (exit_code == MG_OK)
            exit_code = err.code;
    }
    mg_report_finish(&rep);
    return exit_code;
}

int main(int argc, char **argv)
{
    struct mg_options o;
    struct mg_error err;
    mg_error_clear(&err);

    if (argc > 1 && strcmp(argv[1], "login") == 0)
        return mg_login_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "stats") == 0)
        return mg_stats_main(argc - 1, argv + 1);
    /* Signals are blocked before anything else, the first fork or thread
     * above all, so that every thread and child inherits them blocked and
     * one signal thread takes them (cancel.h); a server closing first must
     * not kill us (SIGPIPE is ignored). */
    if (mg_cancel_init(&err) != MG_OK) {
        mg_err("%s", err.msg);
        return err.code;
    }
    if (mg_cli_parse(argc, argv, &o, &err) != MG_OK) {
        mg_err("%s", err.msg);
        return MG_E_USAGE;
    }
    if (o.action == MG_HELP) {
        if (o.restore)
            mg_cli_restore_usage(stdout);
        else if (o.verify)
            mg_cli_verify_usage(stdout);
        else if (o.estimate)
            mg_cli_estimate_usage(stdout);
        else
            mg_cli_usage(stdout);
        return 0;
    }
    if (o.action == MG_VERSION) {
        printf("mailgrab %s\n", MAILGRAB_VERSION);
        return 0;
    }
    mg_log_set_level(o.verbosity);
    mg_progress_enable(o.verbosity >= MG_NORMAL && isatty(STDERR_FILENO));

    /* Secrets stay out of cores; everything we create is private. */
    prctl(PR_SET_DUMPABLE, 0);
    umask(077);
    /* Each worker keeps a batch of unnamed files open until it commits them;
     * the common soft limit of 1024 descriptors is too small for that. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* The analyzer is forked first, before any thread, TLS context or
     * credential exists in this process. */
    struct feed feed = {NULL, false, NULL, NULL};
    if (o.stats || mg_stats_wanted(&o.analysis)) {
        if (start_analyzer(&o.analysis, &feed.an, &err) != MG_OK) {
            mg_err("%s", err.msg);
            return err.code;
        }
    }
    if (mg_cancel_start(&err) != MG_OK) {
        mg_err("%s", err.msg);
        mg_analyzer_destroy(feed.an);
        return err.code;
    }
    if (o.events != NULL && mg_events_open(o.events, &feed.ev, &err) != MG_OK) {
        mg_err("%s", err.msg);
        mg_analyzer_destroy(feed.an);
        return err.code;
    }
    mg_log_set_warn_sink(feed.ev != NULL ? warn_to_events : NULL, feed.ev);
    char *env_password = mg_password_take_env();
    struct mg_config cfg;
    char path[PATH_MAX];
    if (o.config == NULL)
        mg_config_default_path(path, sizeof(path));
    if (mg_config_load(o.config ? o.config : path, o.config != NULL, &cfg, &err) != MG_OK) {
        mg_secret_free(env_password);
        mg_analyzer_destroy(feed.an);
        return stop_early(feed.ev, &err);
    }
    struct mg_shard shard = {0, 0};
    struct mg_account *accounts = NULL;
    size_t n = 0;
    if ((o.shard != NULL && mg_shard_resolve(o.shard, env_get, &shard, &err) != MG_OK) ||
        choose_accounts(&o, &cfg, &shard, &accounts, &n, &err) != MG_OK) {
        mg_config_finish(&cfg);
        mg_secret_free(env_password);
        mg_analyzer_destroy(feed.an);
        return stop_early(feed.ev, &err);
    }
    char shard_text[32] = "";
    if (shard.count > 0) {
        snprintf(shard_text, sizeof(shard_text), "%u/%u", shard.index, shard.count);
        mg_info("shard %s: %zu of the config file's %zu accounts", shard_text, n, cfg.naccounts);
    }

    if (o.restore || o.verify || o.estimate) {
        mg_events_close(feed.ev);
        int code = o.restore  ? restore_account(accounts, n, &o, env_password)
                   : o.verify ? verify_accounts(accounts, n, &o, env_password)
                              : estimate_accounts(accounts, n, &o, env_password);
        free(accounts);
        mg_config_finish(&cfg);
        mg_secret_free(env_password);
        return code;
    }

    mg_events_run_start(feed.ev, MAILGRAB_VERSION, n, shard.count ? shard_text : NULL);
    struct mg_metrics *metrics = NULL;
    if (o.metrics != NULL && mg_metrics_open(o.metrics, &metrics, &err) != MG_OK) {
        free(accounts);
        mg_config_finish(&cfg);
        mg_secret_free(env_password);
        mg_analyzer_destroy(feed.an);
        return stop_early(feed.ev, &err);
    }
    /* --max-bytes and --max-time are the whole run's, over its accounts;
     * the clock starts now. */
    struct mg_run_limits run;
    mg_run_limits_init(&run, o.max_bytes, o.max_time);
    struct mg_report *reps = calloc(n ? n : 1, sizeof(*reps));
    struct mg_metrics_run *runs = calloc(n ? n : 1, sizeof(*runs));
    int exit_code = reps && runs ? MG_OK : MG_E_INTERNAL;
    bool said = false; /* the signal, in an account's error */
    for (size_t i = 0; reps != NULL && runs != NULL && i < n; i++) {
        runs[i].rep = &reps[i];
        runs[i].started = unix_now();
        if (mg_cancelled()) { /* accounts not started are in the summary too */
            reps[i].account = accounts[i].name;
            reps[i].server = accounts[i].server;
            reps[i].user = accounts[i].user;
            reps[i].code = mg_cancel_error(&err);
            snprintf(reps[i].error, sizeof(reps[i].error), "%s", err.msg);
            mg_events_account_end(feed.ev, &reps[i]);
            continue;
        }
        /* One failing account does not stop the others; the first failure
         * gives the exit code. */
        feed.account = accounts[i].name;
        mg_events_account_start(feed.ev, accounts[i].name, accounts[i].server, accounts[i].user);
        enum mg_code rc = run_account(&accounts[i], &o, env_password, &feed, &run, &reps[i]);
        runs[i].ended = unix_now();
        if (rc != MG_OK && reps[i].error[0] != '\0')
            mg_events_error(feed.ev, reps[i].account, NULL, rc, reps[i].error);
        mg_events_account_end(feed.ev, &reps[i]);
        if (rc != MG_OK && exit_code == MG_OK)
            exit_code = rc;
        said |= rc == MG_E_INTERRUPTED;
        /* After each account, so that a long run shows each as it ends. */
        if (metrics != NULL && mg_metrics_write(metrics, runs, i + 1, &err) != MG_OK) {
            mg_err("%s", err.msg);
            mg_events_error(feed.ev, NULL, NULL, err.code, err.msg);
            if (exit_code == MG_OK)
                exit_code = err.code;
        }
    }
    if (feed.an != NULL) {
        struct mg_stats st;
        mg_stats_init(&st);
        enum mg_code src = mg_analyzer_finish(feed.an, &st, &err);
        if (src == MG_OK)
            src = mg_stats_output(&st, &o.analysis, o.stats, &err);
        if (src != MG_OK) {
            mg_err("%s", err.msg);
            if (exit_code == MG_OK)
                exit_code = src;
        }
        mg_stats_finish(&st);
        mg_analyzer_destroy(feed.an);
    }
    /* A signal at any stage, even while the statistics were being
     * gathered: whatever else happened, the run was cut short. */
    exit_code = cut_short(exit_code, said);
    if (o.summary_json != NULL && reps != NULL &&
        mg_summary_write(o.summary_json, reps, n, exit_code, &err) != MG_OK) {
        mg_err("%s", err.msg);
        if (exit_code == MG_OK)
            exit_code = err.code;
    }
    if (reps != NULL)
        mg_events_run_end(feed.ev, reps, n, exit_code);
    mg_log_set_warn_sink(NULL, NULL);
    mg_events_close(feed.ev);
    for (size_t i = 0; reps != NULL && i < n; i++)
        mg_report_finish(&reps[i]);
    free(reps);
    free(runs);
    mg_metrics_close(metrics);
    free(accounts);
    mg_config_finish(&cfg);
    mg_secret_free(env_password);
    return exit_code;
}
