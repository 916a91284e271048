/*
 * pool.h - the worker pool: N threads, each with its own session of a
 * message source (source.h: IMAP, or the engine tests' fake), fetching one
 * mailbox's planned messages into the store.
 *
 * Owns the threads, the plan's lock, retries and reconnects, and the
 * progress line. A cancel (cancel.h: SIGINT, SIGTERM, SIGHUP) stops every
 * session, control and warm-up ones too, and the calls below return
 * MG_E_INTERRUPTED; messages that arrived whole before it are committed.
 * Each failure is classified: a broken connection is reconnected and its
 * fetch re-queued; a server limiting connections retires that worker while
 * the others go on; a local I/O failure or a credential/certificate refusal
 * stops the whole run. The calling thread waits in mg_pool_run and reports
 * progress to the job's on_progress (how to show it is the caller's).
 *
 * Convergence when the server keeps ending sessions (cuts, time limits,
 * Gmail's BYE at token expiry):
 * - A cut FETCH commits every message that arrived whole before it (libetpan
 *   reports a message only once its response is complete); only the one
 *   arriving is thrown away. The rest go back without spending an attempt,
 *   and the worker's next fetch is half as large (mg_plan_size; it doubles
 *   again after each fetch that succeeds).
 * - No progress: the message in flight at a cut (the first one missing, as
 *   servers answer in UID order; when nothing of the fetch arrived, it too)
 *   becomes a suspect: fetched alone, and as the first FETCH of a new
 *   session, so it has a whole session's life. A suspect cut there again is
 *   a strike; at MG_PLAN_STRIKES (3) strikes it is given up: counted failed,
 *   one warning line with its UID and size. Short of the run stopping,
 *   nothing else makes a message fail but the server refusing it
 *   (MAX_ATTEMPTS answers without it).
 * - A worker backs off after failures in a row (none after a cut that came
 *   after progress) and retires after MAX_FAILS of them, but a cut resets
 *   the count while anyone is settling messages (stored, struck or given
 *   up): nobody gives up while progress is being made. Each message has
 *   bounded strikes, so this ends.
 * - Wire bytes: a cut costs the message in flight, so big messages (of
 *   BIG_BYTES or more) are fetched first thing on a new session, the
 *   biggest of the worker's share first (mg_plan_take_big). The pool learns
 *   how many bytes a session carries before it is ended (from cuts; raised
 *   by any session that carries more), asks no session for much more than
 *   it has left, and starts a big message that would not fit on a new
 *   session instead.
 *
 * The sessions themselves, their slots, the control operations and the
 * warm-up are session.h's; the pool schedules fetches over them (plan.h)
 * and decides retries. Sessions outlive a run: the next mailbox reuses them,
 * so a multi-folder backup never holds more than `workers` sessions.
 *
 * Memory: the pool copies *src (its ctx stays borrowed); everything in
 * struct mg_job is borrowed for the duration of the run.
 * Thread-safety: the pool is driven by one thread; on_stored is called from
 * several workers at once, outside the pool's lock, and must not block.
 */
#ifndef MAILGRAB_POOL_H
#define MAILGRAB_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/budget.h"
#include "mailgrab/error.h"
#include "mailgrab/plan.h"
#include "mailgrab/source.h"
#include "mailgrab/store.h"

/* How far a run is: messages stored and bytes streamed so far. */
struct mg_progress {
    const char *mailbox;
    size_t stored, total;
    uint64_t bytes, total_bytes;
    double seconds;
    bool done;
};

struct mg_job {
    const char *mailbox;  /* as sent to the server (modified UTF-7) */
    uint32_t uidvalidity; /* every worker checks it matches */
    struct mg_store *store;
    const struct mg_msglist *msgs; /* sorted, only what is to be fetched */
    size_t fetch_msgs;             /* most messages per FETCH */
    uint64_t fetch_bytes;          /* about the most bytes per FETCH */
    void (*on_stored)(void *ctx, uint32_t uid, const char *path);
    void *ctx;
    /* Called about four times a second by the thread in mg_pool_run, and
     * once more with done set when the run ends; may be NULL. */
    void (*on_progress)(void *ctx, const struct mg_progress *pr);
    void *progress_ctx;
    /* May be NULL. Each fetch is granted by it before it is sent (the
     * longest prefix that fits); once it stops, no more work is handed out,
     * fetches in flight finish, and the run returns MG_E_LIMIT with the
     * budget's line; what was not fetched is not counted as failed. */
    struct mg_budget *budget;
};

struct mg_job_result {
    size_t stored;
    size_t failed;   /* gave up after retries, or never attempted */
    size_t vanished; /* the server no longer had them */
    uint64_t bytes;
    unsigned connections; /* sessions that took part */
    double seconds;
    bool interrupted;
    struct mg_error fatal; /* code != MG_OK when the run was stopped */
};

struct mg_pool;

/* No connection is made yet. workers >= 1 is the most sessions ever open. */
enum mg_code mg_pool_create(const struct mg_source *src, unsigned workers, struct mg_pool **out,
                            struct mg_error *err);

/* The unit of the pauses between retries (default 1000 ms: a busy server
 * is asked again after 2, 4, 8 s ..., a lost connection after 0.2, 0.4 s
 * ...). The engine tests shorten it. */
void mg_pool_set_pause(struct mg_pool *p, unsigned ms);

/* A run uses one connection per `bytes` of its job (at least one, at most
 * `workers`): a connection more costs a TLS handshake and a login, worth it
 * only for its share of the work (default 256 KiB). The engine tests, whose
 * messages are tiny, set 1. */
void mg_pool_set_session_worth(struct mg_pool *p, uint64_t bytes);

/* Connect the pool's first session (the control session) now, so that
 * credential and certificate problems show before anything else. */
enum mg_code mg_pool_connect(struct mg_pool *p, struct mg_error *err);

/* LIST "" "*" on the control session (see mg_imap_mailboxes). */
enum mg_code mg_pool_mailboxes(struct mg_pool *p,
                               void (*each)(const char *name, unsigned roles, void *ctx), void *ctx,
                               struct mg_error *err);

/* EXAMINE mailbox on the control session. */
enum mg_code mg_pool_examine(struct mg_pool *p, const char *mailbox, struct mg_mailbox_info *mi,
                             struct mg_error *err);

/* Log in and EXAMINE mailbox on up to n - 1 more sessions in the background
 * (the control session is the n-th), so that they are ready when the next
 * mg_pool_run starts instead of opening one round trip after another once
 * the listing is done. Best effort: a slot that cannot be readied now is
 * tried again, and judged, by its worker. Call it only when there is likely
 * something to fetch: on a run with nothing new it costs logins. */
void mg_pool_warm(struct mg_pool *p, const char *mailbox, unsigned n);

/* List mailbox's UIDs from `from` on and their sizes into out (replacing what it held), after an
 * EXAMINE unless it is open on the control session already. A server that
 * ends the control session (Gmail does when a token expires) costs a
 * reconnect, not the run: these calls retry on a new session a few times. */
enum mg_code mg_pool_list(struct mg_pool *p, const char *mailbox, uint32_t from,
                          struct mg_mailbox_info *mi, struct mg_msglist *out, struct mg_error *err);

/* Which flags of mailbox's messages below UID `below` changed since modseq
 * (CONDSTORE), on the control session: each(uid, Maildir letters, ctx). */
enum mg_code mg_pool_flags_since(struct mg_pool *p, const char *mailbox, uint32_t below,
                                 uint64_t modseq,
                                 void (*each)(uint32_t uid, const char *flags, void *ctx),
                                 void *ctx, struct mg_error *err);

/* STATUS of mailbox on the control session (UIDVALIDITY, UIDNEXT, MESSAGES),
 * without opening it. */
enum mg_code mg_pool_status(struct mg_pool *p, const char *mailbox, struct mg_mailbox_info *mi,
                            struct mg_error *err);

/* mg_pool_list with Gmail's message ids, thread ids, labels, flags and
 * INTERNALDATE (only on a server that offers MG_CAP_GMAIL): the messages
 * from UID from on, and with changedsince (CONDSTORE) those below from
 * whose MODSEQ rose above it (source.h gmlist). from 1: every message. */
enum mg_code mg_pool_gmlist(struct mg_pool *p, const char *mailbox, uint32_t from,
                            uint64_t changedsince, struct mg_mailbox_info *mi,
                            struct mg_gmlist *out, struct mg_error *err);

/* What the server offers after login (enum mg_cap bits), asked on the
 * control session. */
enum mg_code mg_pool_caps(struct mg_pool *p, unsigned *caps, struct mg_error *err);

/* Fetch job->msgs with up to `workers` sessions (fewer for few messages).
 * Returns MG_OK, MG_E_PARTIAL, or the fatal code in res->fatal. */
enum mg_code mg_pool_run(struct mg_pool *p, const struct mg_job *job, struct mg_job_result *res);

/* Log out every session. Accepts NULL. */
void mg_pool_destroy(struct mg_pool *p);

#endif
