/*
 * pool.h - the worker pool: N threads, each with its own IMAP session,
 * fetching one mailbox's planned messages into the store.
 *
 * Owns the threads, the plan's lock, retries and reconnects, cancellation on
 * SIGINT/SIGTERM, and the progress line. Each failure is classified: a broken
 * connection is reconnected and its batch re-queued (bounded attempts per
 * message); a server limiting connections retires that worker while the
 * others go on; a local I/O failure or a credential/certificate refusal stops
 * the whole run. The calling thread waits in mg_pool_run and draws progress.
 *
 * Memory: everything in struct mg_job is borrowed for the duration of the run.
 * The session passed as `first` is taken over (closed by the pool).
 * Thread-safety: mg_pool_run is called by one thread; on_stored callbacks are
 * serialised by the pool.
 */
#ifndef MAILGRAB_POOL_H
#define MAILGRAB_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "mailgrab/error.h"
#include "mailgrab/imap.h"
#include "mailgrab/plan.h"
#include "mailgrab/store.h"

struct mg_job {
    const struct mg_server *srv;
    const struct mg_creds *creds;
    const char *mailbox;  /* as sent to the server */
    uint32_t uidvalidity; /* every worker checks it matches */
    struct mg_store *store;
    const struct mg_msglist *msgs; /* sorted, only what is to be fetched */
    unsigned workers;              /* connections, including `first` */
    size_t batch_msgs;             /* most messages per FETCH */
    uint64_t batch_bytes;          /* about the most bytes per FETCH */
    void (*on_stored)(void *ctx, uint32_t uid, const char *path);
    void *ctx;
};

struct mg_job_result {
    size_t stored;
    size_t failed;   /* gave up after retries, or never attempted */
    size_t vanished; /* the server no longer had them */
    uint64_t bytes;
    unsigned connections; /* sessions that were opened at least once */
    double seconds;
    bool interrupted;
    struct mg_error fatal; /* code != MG_OK when the run was stopped */
};

enum mg_code mg_pool_run(const struct mg_job *job, struct mg_imap *first,
                         struct mg_job_result *res);

#endif
