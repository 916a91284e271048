/*
 * main.c - the story of one mailgrab run:
 * parse options -> read the password -> set up TLS -> lock the output ->
 * log in and open the mailbox -> list and plan -> run the workers ->
 * report -> exit with a code that says what happened.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailgrab/cli.h"
#include "mailgrab/error.h"
#include "mailgrab/imap.h"
#include "mailgrab/log.h"
#include "mailgrab/mboxname.h"
#include "mailgrab/password.h"
#include "mailgrab/plan.h"
#include "mailgrab/pool.h"
#include "mailgrab/store.h"
#include "mailgrab/tls.h"

#ifndef MAILGRAB_VERSION
#define MAILGRAB_VERSION "unknown"
#endif

#define BATCH_MSGS 256
#define BATCH_BYTES (8u << 20)

static int fail(const struct mg_error *err)
{
    mg_progress_end();
    mg_err("%s", err->msg);
    return (int)err->code;
}

static bool not_stored(uint32_t uid, void *ctx)
{
    return !mg_store_has(ctx, uid);
}

static void report(const struct mg_options *o, const char *dir, const struct mg_job_result *r,
                   size_t already)
{
    bool tell =
        mg_log_level() >= MG_VERBOSE || (mg_log_level() >= MG_NORMAL && isatty(STDERR_FILENO));
    if (!tell)
        return;
    double rate = r->seconds > 0 ? (double)r->stored / r->seconds : 0;
    fprintf(stderr,
            "mailgrab: %s: %zu new message%s (%.1f MB) in %.2f s, %.0f msg/s, %u connection%s; "
            "%zu already stored; in %s\n",
            o->mailbox, r->stored, r->stored == 1 ? "" : "s", (double)r->bytes / 1e6, r->seconds,
            rate, r->connections, r->connections == 1 ? "" : "s", already, dir);
}

static int download(const struct mg_options *o, const char *password)
{
    struct mg_error err;
    mg_error_clear(&err);
    struct mg_tls_ctx *tls = NULL;
    struct mg_imap *sess = NULL;
    struct mg_store *store = NULL;
    struct mg_msglist msgs = {0};
    int lockfd = -1;
    int rc;

    char imap_name[1024], component[MG_MBOX_PATH_MAX + 1];
    if (mg_mbox_to_imap(o->mailbox, imap_name, sizeof(imap_name)) != 0) {
        mg_error_set(&err, MG_E_USAGE, "mailbox name '%s' is not valid UTF-8 or too long",
                     o->mailbox);
        return fail(&err);
    }
    mg_mbox_to_path(o->mailbox, component, sizeof(component));

    if (mg_tls_ctx_create(o->cafile, &tls, &err) != MG_OK)
        return fail(&err);
    if (mg_store_lock(o->output, &lockfd, &err) != MG_OK)
        goto out_err;

    struct mg_server srv = {o->server, o->port, (int)o->timeout, tls};
    struct mg_creds cr = {o->user, password};
    mg_info("connecting to %s port %s as %s", o->server, o->port, o->user);
    if (mg_imap_open(&srv, &cr, &sess, &err) != MG_OK)
        goto out_err;
    struct mg_mailbox_info mi;
    if (mg_imap_examine(sess, imap_name, &mi, &err) != MG_OK)
        goto out_err;
    if (mg_store_open(o->output, component, &store, &err) != MG_OK)
        goto out_err;
    if (mi.exists > 0 && mg_imap_list(sess, &msgs, &err) != MG_OK)
        goto out_err;

    mg_msglist_sort(&msgs);
    size_t listed = msgs.n;
    mg_msglist_filter(&msgs, not_stored, store);
    size_t already = listed - msgs.n;
    if (o->limit > 0)
        mg_msglist_truncate(&msgs, o->limit);
    mg_info("%s: %zu messages on the server, %zu already stored, %zu to fetch", o->mailbox, listed,
            already, msgs.n);

    struct mg_job_result res;
    memset(&res, 0, sizeof(res));
    if (msgs.n == 0) {
        mg_imap_close(sess, true);
        sess = NULL;
        report(o, mg_store_dir(store), &res, already);
        rc = MG_OK;
        goto out;
    }
    unsigned workers = o->chunks;
    if (workers > msgs.n)
        workers = (unsigned)msgs.n;
    struct mg_job job = {
        .srv = &srv,
        .creds = &cr,
        .mailbox = imap_name,
        .uidvalidity = mi.uidvalidity,
        .store = store,
        .msgs = &msgs,
        .workers = workers,
        .batch_msgs = BATCH_MSGS,
        .batch_bytes = BATCH_BYTES,
    };
    enum mg_code prc = mg_pool_run(&job, sess, &res);
    sess = NULL; /* the pool closed it */
    if (prc != MG_OK && prc != MG_E_PARTIAL) {
        err = res.fatal;
        goto out_err;
    }
    report(o, mg_store_dir(store), &res, already);
    if (res.vanished > 0)
        mg_warn("%zu message%s disappeared from the server during the run", res.vanished,
                res.vanished == 1 ? "" : "s");
    if (prc == MG_E_PARTIAL) {
        mg_error_set(&err, MG_E_PARTIAL,
                     "%zu of %zu messages could not be downloaded (%zu stored); run again to "
                     "fetch the rest",
                     res.failed, msgs.n, res.stored);
        goto out_err;
    }
    rc = MG_OK;
    goto out;

out_err:
    rc = fail(&err);
out:
    mg_imap_close(sess, false);
    mg_msglist_finish(&msgs);
    mg_store_close(store);
    if (lockfd >= 0)
        close(lockfd);
    mg_tls_ctx_destroy(tls);
    return rc;
}

int main(int argc, char **argv)
{
    struct mg_options o;
    struct mg_error err;
    mg_error_clear(&err);

    if (mg_cli_parse(argc, argv, &o, &err) != MG_OK) {
        mg_err("%s", err.msg);
        return MG_E_USAGE;
    }
    if (o.action == MG_HELP) {
        mg_cli_usage(stdout);
        return 0;
    }
    if (o.action == MG_VERSION) {
        printf("mailgrab %s\n", MAILGRAB_VERSION);
        return 0;
    }
    mg_log_set_level(o.verbosity);
    mg_progress_enable(o.verbosity >= MG_NORMAL && isatty(STDERR_FILENO));

    /* A server closing first must not kill us; secrets stay out of cores;
     * everything we create is private. */
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_DUMPABLE, 0);
    umask(077);

    char *password = NULL;
    if (mg_password_get(o.password_file, o.password_command, o.user, o.server, &password, &err) !=
        MG_OK)
        return fail(&err);
    int rc = download(&o, password);
    mg_password_free(password);
    return rc;
}
