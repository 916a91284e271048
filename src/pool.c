/* pool.c - see include/mailgrab/pool.h */
#include "mailgrab/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "mailgrab/cancel.h"
#include "mailgrab/log.h"
#include "mailgrab/session.h"

#define MAX_ATTEMPTS 3 /* refusals of one message */
#define MAX_FAILS 3    /* failures in a row of one worker, nobody making progress */
/* A worker's first fetch is small so files and durable progress appear
 * after one round trip; each success doubles it up to the job's limits. */
#define FIRST_FETCH_MSGS 16
#define FIRST_FETCH_BYTES (1u << 20)
#define WHY_MAX 200 /* a broken message's reason, as the warning shows it */
/* A message this big is what a new session starts with, and it is not
 * started on a session likely to end before it arrives: a new session is
 * opened for it instead. */
#define BIG_BYTES (256u << 10)
/* Bytes of a job that make one more connection worth opening. */
#define SESSION_WORTH (256u << 10)
/* Once the budget stops the run (--max-time above all), fetches in flight
 * get this long to finish; then they are cut (what arrived whole is kept). */
#define STOP_GRACE_S 5.0
/* A server asking to slow down ([THROTTLED]) halves the connections that
 * fetch; this many fetches in a row answered without it give one back. */
#define CALM_FETCHES 16

/* A worker thread's state during one run. */
struct worker {
    struct mg_pool *p;
    unsigned id;
    pthread_t thread;
    struct mg_slot *slot;
    struct mg_batch *batch;
    size_t *idx;     /* plan indices of the fetch, ordered like uids */
    uint32_t *uids;  /* sorted */
    uint32_t *sizes; /* of the fetch's messages, for the budget */
    size_t (*pairs)[2];
    bool *got;
    char (*bad)[WHY_MAX]; /* why a message did not arrive whole, "" if it did */
    bool blamed;          /* a failure was pinned on one message of the fetch */
    size_t n;
    bool used; /* had a session during this run */
    struct mg_error err;
    bool sink_failed;
    bool answered;  /* the last FETCH was completed by the server, OK or NO */
    bool committed; /* what it delivered is stored */
    bool partial;   /* a message was arriving when the last FETCH ended */
    bool fresh;     /* the last FETCH was the first on its session */
    bool progress;  /* the last FETCH settled a message, stored or given up */
    bool alive;     /* its thread runs (under mu) */
};

struct mg_pool {
    struct mg_sessions ses; /* the slots and their sessions */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* per run, guarded by mu */
    const struct mg_job *job;
    struct mg_plan plan;
    struct worker *w;
    unsigned nw;
    size_t inflight;
    uint64_t progress;      /* messages settled so far, stored or given up */
    uint64_t life;          /* bytes a session carries before the server ends it; 0: unknown */
    uint64_t session_worth; /* bytes of a job per connection it may use */
    unsigned running;
    bool abort;
    bool stopping;  /* the budget stopped: no more work is handed out */
    bool cut_short; /* ... and fetches in flight were cut after the grace */
    /* Workers with an id below this fetch; the others wait without a
     * session. Lowered by [THROTTLED] and by logins refused for a
     * connection limit, raised again slowly; kept from run to run. */
    unsigned allowed;
    unsigned calm; /* fetches in a row not throttled */
    struct mg_job_result *res;
    int cancel_hook;                 /* wakes mg_pool_run's wait at once on a signal */
    bool *unsent;                    /* per message: answered for without it, every attempt */
    atomic_uint_fast64_t bytes_seen; /* streamed, for progress */
    atomic_size_t stored;
};

/* A cancel hook (signal thread): the wait in mg_pool_run and sleeping
 * workers look at the cancel now rather than at their next tick. */
static void wake_on_cancel(void *arg)
{
    struct mg_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

enum mg_code mg_pool_create(const struct mg_source *src, unsigned workers, struct mg_pool **out,
                            struct mg_error *err)
{
    struct mg_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    enum mg_code rc = mg_sessions_init(&p->ses, src, workers, err);
    if (rc != MG_OK) {
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->session_worth = SESSION_WORTH;
    p->cancel_hook = mg_cancel_hook_add(wake_on_cancel, p);
    p->allowed = workers;
    *out = p;
    return MG_OK;
}

void mg_pool_destroy(struct mg_pool *p)
{
    if (p == NULL)
        return;
    mg_cancel_hook_remove(p->cancel_hook);
    mg_sessions_finish(&p->ses);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void mg_pool_set_pause(struct mg_pool *p, unsigned ms)
{
    p->ses.pause_ms = ms;
}

void mg_pool_set_session_worth(struct mg_pool *p, uint64_t bytes)
{
    p->session_worth = bytes ? bytes : 1;
}

enum mg_code mg_pool_connect(struct mg_pool *p, struct mg_error *err)
{
    return mg_sessions_connect(&p->ses, err);
}

enum mg_code mg_pool_mailboxes(struct mg_pool *p,
                               void (*each)(const char *name, unsigned roles, void *ctx), void *ctx,
                               struct mg_error *err)
{
    return mg_sessions_mailboxes(&p->ses, each, ctx, err);
}

enum mg_code mg_pool_examine(struct mg_pool *p, const char *mailbox, struct mg_mailbox_info *mi,
                             struct mg_error *err)
{
    return mg_sessions_examine(&p->ses, mailbox, mi, err);
}

enum mg_code mg_pool_list(struct mg_pool *p, const char *mailbox, uint32_t from,
                          struct mg_mailbox_info *mi, struct mg_msglist *out, struct mg_error *err)
{
    return mg_sessions_list(&p->ses, mailbox, from, mi, out, err);
}

enum mg_code mg_pool_flags_since(struct mg_pool *p, const char *mailbox, uint32_t below,
                                 uint64_t modseq,
                                 void (*each)(uint32_t uid, const char *flags, void *ctx),
                                 void *ctx, struct mg_error *err)
{
    return mg_sessions_flags_since(&p->ses, mailbox, below, modseq, each, ctx, err);
}

enum mg_code mg_pool_status(struct mg_pool *p, const char *mailbox, struct mg_mailbox_info *mi,
                            struct mg_error *err)
{
    return mg_sessions_status(&p->ses, mailbox, mi, err);
}

enum mg_code mg_pool_gmlist(struct mg_pool *p, const char *mailbox, uint32_t from,
                            uint64_t changedsince, struct mg_mailbox_info *mi,
                            struct mg_gmlist *out, struct mg_error *err)
{
    return mg_sessions_gmlist(&p->ses, mailbox, from, changedsince, mi, out, err);
}

enum mg_code mg_pool_caps(struct mg_pool *p, unsigned *caps, struct mg_error *err)
{
    return mg_sessions_caps(&p->ses, caps, err);
}

void mg_pool_warm(struct mg_pool *p, const char *mailbox, unsigned n)
{
    mg_sessions_warm(&p->ses, mailbox, n);
}

/* Caller holds mu. Stop the run: first fatal error wins. */
static void set_fatal(struct mg_pool *p, const struct mg_error *e)
{
    if (p->res->fatal.code == MG_OK) {
        p->res->fatal = *e;
        /* A session failing because of the cancel is the cancel. */
        if (mg_cancelled()) {
            p->res->interrupted = true;
            mg_cancel_error(&p->res->fatal);
        }
    }
    p->abort = true;
    mg_sessions_abort(&p->ses, true); /* every session, control and warm-up too */
    pthread_cond_broadcast(&p->cv);
}

static bool sink_body(void *ctx, const char *bytes, size_t len)
{
    struct worker *w = ctx;
    if (!mg_batch_in_message(w->batch) && mg_batch_begin(w->batch, &w->err) != MG_OK)
        goto fail;
    if (len > 0 && mg_batch_write(w->batch, bytes, len, &w->err) != MG_OK)
        goto fail;
    w->slot->carried += len;
    atomic_fetch_add(&w->p->bytes_seen, len);
    return true;
fail:
    w->sink_failed = true;
    return false;
}

/* Where uid is in the worker's fetch, or w->n when it was not asked for. */
static size_t fetch_index(const struct worker *w, uint32_t uid)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < w->n && w->uids[lo] == uid ? lo : w->n;
}

static bool sink_done(void *ctx, uint32_t uid, time_t idate, const char *flags)
{
    struct worker *w = ctx;
    size_t lo = fetch_index(w, uid);
    if (uid == 0 || lo == w->n || w->got[lo]) {
        /* Not asked for, or sent twice: a server that lies gets nothing stored. */
        if (uid != 0)
            mg_debug("worker %u: ignoring unrequested or repeated UID %u", w->id, uid);
        mg_batch_drop_current(w->batch);
        return true;
    }
    if (mg_batch_end(w->batch, uid, idate, flags, &w->err) != MG_OK) {
        w->sink_failed = true;
        return false;
    }
    w->got[lo] = true;
    return true;
}

static void sink_bad(void *ctx, uint32_t uid, const char *why)
{
    struct worker *w = ctx;
    size_t i = fetch_index(w, uid);
    if (i < w->n && !w->got[i]) {
        mg_batch_drop_current(w->batch); /* what was streamed of it */
        snprintf(w->bad[i], sizeof(w->bad[i]), "%s", why);
        w->blamed = true;
    }
}

static int cmp_pair(const void *a, const void *b)
{
    const size_t *x = a, *y = b; /* [uid, idx] */
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Order the fetch by UID (retries may come in any order). */
static void prepare_fetch(struct worker *w)
{
    const struct mg_msglist *m = w->p->job->msgs;
    for (size_t i = 0; i < w->n; i++) {
        w->pairs[i][0] = m->v[w->idx[i]].uid;
        w->pairs[i][1] = w->idx[i];
    }
    qsort(w->pairs, w->n, sizeof(w->pairs[0]), cmp_pair);
    for (size_t i = 0; i < w->n; i++) {
        w->uids[i] = (uint32_t)w->pairs[i][0];
        w->idx[i] = w->pairs[i][1];
        w->got[i] = false;
        w->bad[i][0] = '\0';
    }
    w->blamed = false;
}

static void sleep_ms(struct mg_pool *p, unsigned ms)
{
    struct timespec until = mg_deadline(ms);
    pthread_mutex_lock(&p->mu);
    while (!p->abort && pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&p->mu);
}

/* Make sure the worker's slot has a session with the job's mailbox open. */
static enum mg_code ready_session(struct worker *w, struct mg_error *err)
{
    struct mg_pool *p = w->p;
    struct mg_slot *s = w->slot;
    enum mg_code rc = mg_slot_open(s, err);
    if (rc != MG_OK)
        return rc;
    w->used = true;
    rc = mg_slot_ready(s, p->job->mailbox, err);
    if (rc != MG_OK)
        return rc;
    if (s->info.uidvalidity != p->job->uidvalidity)
        return mg_error_set(err, MG_E_PROTOCOL,
                            "UIDVALIDITY of %s changed during the run (%u, now %u): run again",
                            p->job->mailbox, p->job->uidvalidity, s->info.uidvalidity);
    return MG_OK;
}

static void on_stored(void *ctx, uint32_t uid, const char *path)
{
    struct worker *w = ctx;
    struct mg_pool *p = w->p;
    atomic_fetch_add(&p->stored, 1);
    /* Not under mu: the callback must not block (it queues for the
     * analyzer), and if it ever did, only this worker would wait. */
    if (p->job->on_stored != NULL)
        p->job->on_stored(p->job->ctx, uid, path);
}

static enum mg_code run_fetch(struct worker *w, struct mg_error *err)
{
    struct mg_fetch_sink sink = {w, sink_body, sink_done, sink_bad};
    w->sink_failed = false;
    w->committed = false;
    w->fresh = w->slot->fetches++ == 0;
    enum mg_code rc =
        w->p->ses.src.ops->fetch(w->slot->sess, w->uids, w->n, &sink, &w->answered, err);
    w->partial = mg_batch_in_message(w->batch);
    if (w->sink_failed) {
        *err = w->err;
        rc = err->code;
        w->answered = false;
        mg_batch_discard(w->batch);
        return rc;
    }
    /* Answered, even with a refusal, or cut: every message reported done
     * arrived whole (libetpan reports a message once its response is
     * complete); only the one arriving when a cut came is thrown away.
     * No lock here: workers flush and rename their batches in parallel. */
    mg_batch_drop_current(w->batch);
    struct mg_error cerr;
    mg_error_clear(&cerr);
    enum mg_code crc = mg_batch_commit(w->batch, on_stored, w, &cerr);
    if (crc != MG_OK) {
        *err = cerr;
        return crc;
    }
    w->committed = true;
    return rc;
}

/* Caller holds mu. Message i of a cut fetch did not arrive: it comes back
 * without spending an attempt. The one that was arriving (servers answer in
 * UID order, so the first one missing; also when none arrived at all)
 * becomes a suspect, to be fetched alone on a new session; cut there too, it
 * earns a strike, and at the last one it is given up. */
static void settle_cut(struct worker *w, size_t i, bool *first, bool none)
{
    struct mg_pool *p = w->p;
    size_t idx = w->idx[i];
    bool arriving = *first && (w->partial || none);
    *first = false;
    if (!arriving) {
        mg_plan_return(&p->plan, idx);
        return;
    }
    if (!(w->n == 1 && w->fresh)) {
        mg_plan_suspect(&p->plan, idx);
        return;
    }
    /* A strike moves the plan towards a decision (there are only so many):
     * it counts as progress. */
    p->progress++;
    w->progress = true;
    if (mg_plan_strike(&p->plan, idx)) {
        mg_info("message UID %u did not arrive whole on a new session (%u of %u times)", w->uids[i],
                mg_plan_strikes(&p->plan, idx), p->plan.max_strikes);
        return;
    }
    p->res->failed++;
    mg_warn("message UID %u (%u bytes) never arrived whole: the server ended %u new sessions "
            "while sending it; skipped (it needs a session that lasts longer)",
            w->uids[i], p->job->msgs->v[idx].size, p->plan.max_strikes);
}

/* Caller holds mu. Account what arrived; re-queue what did not. A message
 * the server left out of a complete answer may be gone; one missing from a
 * refused fetch has failed; one missing from a cut fetch is tried again. */
static void settle_fetch(struct worker *w, bool complete)
{
    struct mg_pool *p = w->p;
    const struct mg_msglist *m = p->job->msgs;
    bool first = true, none = true;
    for (size_t i = 0; i < w->n; i++)
        if (w->committed && w->got[i])
            none = false;
    w->progress = false;
    for (size_t i = 0; i < w->n; i++) {
        if (w->committed && w->got[i]) {
            p->res->stored++;
            p->res->bytes += m->v[w->idx[i]].size;
            p->progress++;
            w->progress = true;
        } else if (w->bad[i][0] != '\0') {
            /* The failure is pinned on this message: it spends an attempt,
             * which moves towards a decision. */
            p->progress++;
            w->progress = true;
            if (!mg_plan_requeue(&p->plan, w->idx[i])) {
                p->res->failed++;
                mg_warn("%s: message UID %u not stored: %s", p->job->mailbox, w->uids[i],
                        w->bad[i]);
            }
        } else if (!w->answered && w->blamed) {
            mg_plan_return(&p->plan, w->idx[i]); /* it broke on another message */
        } else if (!w->answered) {
            settle_cut(w, i, &first, none);
        } else if (!mg_plan_requeue(&p->plan, w->idx[i])) {
            p->progress++;
            w->progress = true;
            if (complete) {
                p->unsent[w->idx[i]] = true; /* judged at the end of the run */
            } else {
                p->res->failed++;
            }
        }
    }
    w->n = 0;
}

/* Caller holds mu. A fetch that never reached the server costs no attempt. */
static void give_back(struct worker *w)
{
    for (size_t i = 0; i < w->n; i++)
        mg_plan_return(&w->p->plan, w->idx[i]);
    w->n = 0;
}

/* Ask the budget for the fetch (its messages in UID order); what does not
 * fit goes back to the plan unsent and the run stops handing out work. */
static enum mg_code grant(struct worker *w, struct mg_error *err)
{
    struct mg_pool *p = w->p;
    for (size_t i = 0; i < w->n; i++)
        w->sizes[i] = p->job->msgs->v[w->idx[i]].size;
    size_t granted = 0;
    enum mg_code rc = mg_budget_take(p->job->budget, w->sizes, w->n, &granted, err);
    if (rc != MG_OK)
        return rc; /* nothing granted: the caller gives it all back */
    if (granted == w->n)
        return MG_OK;
    pthread_mutex_lock(&p->mu);
    for (size_t i = granted; i < w->n; i++)
        mg_plan_return(&p->plan, w->idx[i]);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    w->n = granted;
    return MG_OK;
}

/* Caller holds mu. Worker w waits, without a session, while the server
 * wants fewer connections and a worker below it can still fetch. */
static bool parked(const struct worker *w)
{
    const struct mg_pool *p = w->p;
    if (w->id < p->allowed)
        return false;
    for (unsigned i = 0; i < p->allowed && i < p->nw; i++)
        if (p->w[i].alive)
            return true;
    return false;
}

/* Caller holds mu. Fewer connections: the server asked to slow down, or
 * refused a login for a connection limit. */
static void fewer(struct mg_pool *p, unsigned most, const char *why)
{
    p->calm = 0;
    if (most < 1)
        most = 1;
    if (most >= p->allowed)
        return;
    p->allowed = most;
    mg_info("%s: going on with %u connection%s", why, most, most == 1 ? "" : "s");
    pthread_cond_broadcast(&p->cv);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct mg_pool *p = w->p;
    const struct mg_job *job = p->job;
    unsigned fails = 0;
    uint64_t seen = 0; /* p->progress at this worker's last failure */
    struct mg_plan_size want;
    mg_plan_size_init(&want, FIRST_FETCH_MSGS, FIRST_FETCH_BYTES, job->fetch_msgs,
                      job->fetch_bytes);

    mg_slot_join_warm(w->slot); /* its session may be ready, or never will be */
    pthread_mutex_lock(&p->mu);
    w->alive = true;
    for (;;) {
        if (p->abort || p->stopping)
            break;
        if (job->budget != NULL && mg_budget_stopped(job->budget)) {
            p->stopping = true;
            pthread_cond_broadcast(&p->cv);
            break;
        }
        if (parked(w)) {
            if (w->slot->sess != NULL) { /* one connection fewer */
                pthread_mutex_unlock(&p->mu);
                mg_slot_drop(w->slot);
                pthread_mutex_lock(&p->mu);
                continue;
            }
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        /* Ask for no more than the session is likely to carry before the
         * server ends it (small messages aside: losing one costs little). */
        uint64_t left = UINT64_MAX, bytes = want.bytes;
        if (p->life > 0 && w->slot->sess != NULL)
            left = p->life > w->slot->carried ? p->life - w->slot->carried : 0;
        uint64_t room = left > BIG_BYTES ? left : BIG_BYTES;
        if (room < bytes)
            bytes = room;
        /* Once the server is known to end sessions, a new session starts
         * with the biggest message of its share, while it has its whole life
         * ahead (retries come first, though). Not before: on a healthy
         * server the first fetches are small ones, so that files appear at
         * once and a nearly full disk still takes what fits. */
        bool fresh = w->slot->sess == NULL || w->slot->fetches == 0;
        w->n = 0;
        if (fresh && p->life > 0 && p->plan.nretry == 0)
            w->n = mg_plan_take_big(&p->plan, w->id, BIG_BYTES, w->idx);
        if (w->n == 0)
            w->n = mg_plan_take(&p->plan, w->id, want.msgs, bytes, w->idx);
        if (w->n == 0) {
            if (p->inflight == 0)
                break;
            pthread_cond_wait(&p->cv, &p->mu); /* a failing fetch may come back */
            continue;
        }
        /* A suspect gets a whole session's life: first thing on a new one; so
         * does a big message the session is unlikely to have room left for. */
        uint32_t first = job->msgs->v[w->idx[0]].size;
        bool renew = w->slot->sess != NULL && w->slot->fetches > 0 &&
                     ((w->n == 1 && mg_plan_is_suspect(&p->plan, w->idx[0])) ||
                      (first >= BIG_BYTES && first > left));
        p->inflight++;
        pthread_mutex_unlock(&p->mu);

        if (renew)
            mg_slot_drop(w->slot);
        prepare_fetch(w);
        struct mg_error err;
        mg_error_clear(&err);
        enum mg_code rc = ready_session(w, &err);
        bool sent = rc == MG_OK;
        w->answered = w->committed = w->progress = false;
        if (sent && job->budget != NULL) {
            rc = grant(w, &err);
            sent = rc == MG_OK && w->n > 0;
        }
        if (sent)
            rc = run_fetch(w, &err);
        bool cut = sent && !w->answered;
        bool throttled = sent && rc == MG_OK && p->ses.src.ops->throttled != NULL &&
                         p->ses.src.ops->throttled(w->slot->sess);

        pthread_mutex_lock(&p->mu);
        if (sent)
            settle_fetch(w, rc == MG_OK);
        else
            give_back(w);
        /* Learn how much a session carries: from the sessions the server
         * ended, and from any that has outlived the estimate. */
        if (cut && w->slot->carried > 0)
            p->life = p->life > 0 ? (3 * p->life + w->slot->carried) / 4 : w->slot->carried;
        else if (sent && p->life > 0 && w->slot->carried > p->life)
            p->life = w->slot->carried;
        p->inflight--;
        pthread_cond_broadcast(&p->cv);
        if (rc != MG_OK && p->cut_short)
            break; /* cut by the budget's stop: the next run goes on */
        if (rc == MG_OK && throttled) {
            /* Fewer connections, and a pause before this one goes on. */
            fewer(p, p->allowed / 2, "the server asks to slow down ([THROTTLED])");
            fails = 0;
            pthread_mutex_unlock(&p->mu);
            sleep_ms(p, p->ses.pause_ms);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (rc == MG_OK) {
            fails = 0;
            if (sent && ++p->calm >= CALM_FETCHES && p->allowed < p->nw) {
                p->allowed++; /* recover slowly */
                p->calm = 0;
                pthread_cond_broadcast(&p->cv);
            }
            mg_plan_size_grow(&want);
            continue;
        }
        if (p->abort)
            break;
        /* A login refused for a connection limit: the sessions open already
         * carry on; this one and those after it wait. */
        if (!sent && rc == MG_E_CONNECT && err.retry == MG_RETRY_LATER && w->id > 0 &&
            w->id < p->allowed) {
            fewer(p, w->id, err.msg);
            continue;
        }
        if (err.retry == MG_RETRY_NONE || rc == MG_E_IO || rc == MG_E_INTERNAL) {
            set_fatal(p, &err); /* credentials, certificate, disk: stop everything */
            break;
        }
        if (!(sent && w->answered)) { /* a refusal leaves the session in step */
            pthread_mutex_unlock(&p->mu);
            mg_slot_drop(w->slot);
            pthread_mutex_lock(&p->mu);
        }
        if (cut)
            mg_plan_size_halve(&want);
        /* A cut is given up on only while nobody gets anything done: as long
         * as messages are being settled, by this worker or another, it
         * reconnects and carries on. A failure pinned on one message settles
         * an attempt of it: progress too. */
        if (cut && (w->progress || p->progress != seen))
            fails = 0;
        seen = p->progress;
        if (++fails >= MAX_FAILS) {
            /* Retire; the others take over this worker's share. */
            mg_warn("connection %u gives up after %u failures: %s", w->id, fails, err.msg);
            if (p->running == 1 && mg_plan_pending(&p->plan) > 0)
                set_fatal(p, &err); /* the last one: nobody else will fetch */
            break;
        }
        mg_info("connection %u: %s; retrying", w->id, err.msg);
        /* Back off, more with each failure in a row; straight back after a
         * cut that came after something was done. */
        unsigned ms = cut && fails == 1 && err.retry != MG_RETRY_LATER
                          ? 0
                          : mg_sessions_backoff(&p->ses, err.retry, fails);
        if (ms > 0) {
            pthread_mutex_unlock(&p->mu);
            sleep_ms(p, ms);
            pthread_mutex_lock(&p->mu);
        }
    }
    --p->running;
    w->alive = false;
    pthread_cond_broadcast(&p->cv); /* the last one ends mg_pool_run's wait */
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report_progress(struct mg_pool *p, double t0, uint64_t total, bool done)
{
    const struct mg_job *job = p->job;
    if (job->on_progress == NULL)
        return;
    struct mg_progress pr = {
        .mailbox = job->mailbox,
        .stored = atomic_load(&p->stored),
        .total = job->msgs->n,
        .bytes = atomic_load(&p->bytes_seen),
        .total_bytes = total,
        .seconds = now_s() - t0,
        .done = done,
    };
    job->on_progress(job->progress_ctx, &pr);
}

static void free_workers(struct mg_pool *p)
{
    for (unsigned i = 0; i < p->nw; i++) {
        mg_batch_destroy(p->w[i].batch);
        free(p->w[i].idx);
        free(p->w[i].uids);
        free(p->w[i].sizes);
        free(p->w[i].pairs);
        free(p->w[i].got);
        free(p->w[i].bad);
    }
    free(p->w);
    p->w = NULL;
    p->nw = 0;
}

static enum mg_code alloc_workers(struct mg_pool *p, unsigned nw, struct mg_error *err)
{
    p->w = calloc(nw, sizeof(*p->w));
    if (p->w == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    p->nw = nw;
    size_t bm = p->job->fetch_msgs;
    /* Share the descriptors left (beyond sockets and the like) among the
     * workers' open unnamed files. */
    struct rlimit rl;
    size_t budget = bm;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        size_t spare = rl.rlim_cur > 256 ? (size_t)rl.rlim_cur - 256 : 0;
        if (spare / nw < budget)
            budget = spare / nw;
    }
    for (unsigned i = 0; i < nw; i++) {
        struct worker *w = &p->w[i];
        w->p = p;
        w->id = i;
        w->slot = &p->ses.slots[i];
        w->idx = calloc(bm, sizeof(*w->idx));
        w->uids = calloc(bm, sizeof(*w->uids));
        w->sizes = calloc(bm, sizeof(*w->sizes));
        w->pairs = calloc(bm, sizeof(*w->pairs));
        w->got = calloc(bm, sizeof(*w->got));
        w->bad = calloc(bm, sizeof(*w->bad));
        if (w->idx == NULL || w->uids == NULL || w->sizes == NULL || w->pairs == NULL ||
            w->got == NULL || w->bad == NULL)
            return mg_error_set(err, MG_E_INTERNAL, "out of memory");
        enum mg_code rc = mg_batch_create(p->job->store, i, budget, &w->batch, err);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}

static bool listed(const struct mg_msglist *l, uint32_t uid)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->v[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && l->v[lo].uid == uid;
}

/* Messages the server answered for without sending them, every attempt:
 * expunged meanwhile, or withheld? A new listing tells; one line says which. */
static void judge_unsent(struct mg_pool *p, const struct mg_job *job, struct mg_job_result *res)
{
    size_t n = 0;
    for (size_t i = 0; i < job->msgs->n; i++)
        n += p->unsent[i];
    if (n == 0)
        return;
    struct mg_msglist now = {0};
    struct mg_mailbox_info mi;
    struct mg_error err;
    mg_error_clear(&err);
    enum mg_code rc = res->interrupted
                          ? MG_E_INTERRUPTED
                          : mg_pool_list(p, job->mailbox, job->msgs->n ? job->msgs->v[0].uid : 1,
                                         &mi, &now, &err);
    if (rc == MG_OK)
        mg_msglist_sort(&now);
    size_t kept = 0;
    char some[96] = "";
    size_t len = 0;
    for (size_t i = 0; i < job->msgs->n; i++) {
        if (!p->unsent[i])
            continue;
        uint32_t uid = job->msgs->v[i].uid;
        if (rc == MG_OK && !listed(&now, uid)) {
            res->vanished++; /* expunged: nothing to keep */
            continue;
        }
        res->failed++;
        if (kept++ < 8 && len < sizeof(some)) {
            int k = snprintf(some + len, sizeof(some) - len, "%s%u", len ? ", " : "", uid);
            len += k > 0 ? (size_t)k : 0;
        }
    }
    mg_msglist_finish(&now);
    if (kept > 0)
        mg_warn("%s: %zu message%s listed by the server %s never sent by it (UID %s%s)%s%s",
                job->mailbox, kept, kept == 1 ? "" : "s", kept == 1 ? "was" : "were", some,
                kept > 8 ? ", ..." : "",
                rc == MG_OK || rc == MG_E_INTERRUPTED ? "" : "; listing again failed: ",
                rc == MG_OK || rc == MG_E_INTERRUPTED ? "" : err.msg);
}

enum mg_code mg_pool_run(struct mg_pool *p, const struct mg_job *job, struct mg_job_result *res)
{
    memset(res, 0, sizeof(*res));
    unsigned nw = p->ses.n;
    if (job->msgs->n < nw)
        nw = (unsigned)job->msgs->n;
    if (nw == 0)
        return MG_OK;
    if (job->budget != NULL && mg_budget_stopped(job->budget)) {
        res->failed = 0; /* not tried: the next run fetches them */
        return mg_budget_error(job->budget, &res->fatal);
    }
    /* A connection more costs a handshake and a login (a few KB and round
     * trips): worth it only for its share of SESSION_WORTH bytes. */
    uint64_t worth = 1 + mg_msglist_bytes(job->msgs) / p->session_worth;
    if (nw > worth)
        nw = (unsigned)worth;
    pthread_mutex_lock(&p->mu); /* warm-up threads may be looking */
    p->job = job;
    p->res = res;
    p->abort = false;
    p->stopping = false;
    p->cut_short = false;
    p->inflight = 0;
    p->progress = 0;
    p->running = 0;
    pthread_mutex_unlock(&p->mu);
    atomic_store(&p->bytes_seen, 0);
    atomic_store(&p->stored, 0);
    p->unsent = calloc(job->msgs->n, sizeof(*p->unsent));
    if (p->unsent == NULL || mg_plan_init(&p->plan, job->msgs, nw, MAX_ATTEMPTS) != 0) {
        free(p->unsent);
        p->unsent = NULL;
        return mg_error_set(&res->fatal, MG_E_INTERNAL, "out of memory");
    }
    if (alloc_workers(p, nw, &res->fatal) != MG_OK) {
        free_workers(p);
        mg_plan_finish(&p->plan);
        free(p->unsent);
        p->unsent = NULL;
        return res->fatal.code;
    }

    if (mg_cancelled()) { /* the workers start only to see it and end */
        struct mg_error e;
        mg_cancel_error(&e);
        pthread_mutex_lock(&p->mu);
        set_fatal(p, &e);
        pthread_mutex_unlock(&p->mu);
    }
    double t0 = now_s();
    uint64_t total = mg_msglist_bytes(job->msgs);
    unsigned started = 0;
    for (; started < nw; started++) {
        pthread_mutex_lock(&p->mu);
        p->running++;
        pthread_mutex_unlock(&p->mu);
        if (pthread_create(&p->w[started].thread, NULL, worker_main, &p->w[started]) != 0) {
            pthread_mutex_lock(&p->mu);
            p->running--;
            if (started == 0) {
                struct mg_error e;
                mg_error_set(&e, MG_E_INTERNAL, "cannot start a worker thread");
                set_fatal(p, &e);
            }
            pthread_mutex_unlock(&p->mu);
            break;
        }
    }

    /* Wait for the workers; draw progress; turn a cancel (cancel.h: a
     * signal, taken by the signal thread, whose hook wakes this wait) into
     * a clean stop: every session is cancelled, finished batches commit. */
    double stop_at = 0; /* when the budget stopped the run */
    for (;;) {
        bool stopped = job->budget != NULL && mg_budget_stopped(job->budget);
        pthread_mutex_lock(&p->mu);
        if (p->running == 0) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (stopped && !p->stopping) {
            p->stopping = true; /* idle workers see it now */
            pthread_cond_broadcast(&p->cv);
        }
        if (p->stopping && stop_at == 0)
            stop_at = now_s();
        if (p->stopping && !p->cut_short && stop_at > 0 && now_s() - stop_at > STOP_GRACE_S) {
            p->cut_short = true;
            mg_sessions_abort(&p->ses, true);
        }
        if (mg_cancelled() && !res->interrupted) {
            struct mg_error e;
            mg_cancel_error(&e);
            set_fatal(p, &e);
            res->interrupted = true;
        }
        mg_cancel_timedwait(&p->cv, &p->mu, 250); /* a tick of the progress line */
        pthread_mutex_unlock(&p->mu);
        report_progress(p, t0, total, false);
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(p->w[i].thread, NULL);
    report_progress(p, t0, total, true);

    /* Slots no worker needed may still be warming up. A cancelled session
     * is dead: do not hand it to the next mailbox. */
    for (unsigned i = 0; i < p->ses.n; i++)
        mg_slot_join_warm(&p->ses.slots[i]);
    if (p->abort || p->cut_short)
        for (unsigned i = 0; i < p->ses.n; i++)
            mg_slot_drop(&p->ses.slots[i]);
    mg_sessions_abort(&p->ses, false);
    pthread_mutex_lock(&p->mu);
    p->abort = false;
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < nw; i++)
        res->connections += p->w[i].used;
    /* Whatever was never handed out or never settled did not arrive;
     * unless the budget stopped the run: that is for the next run. */
    if (p->stopping && res->fatal.code == MG_OK && mg_plan_pending(&p->plan) > 0)
        mg_budget_error(job->budget, &res->fatal);
    else
        res->failed += mg_plan_pending(&p->plan);
    free_workers(p);
    mg_plan_finish(&p->plan);
    p->job = NULL;
    if (res->fatal.code == MG_OK)
        judge_unsent(p, job, res);
    free(p->unsent);
    p->unsent = NULL;
    res->seconds = now_s() - t0;
    if (res->fatal.code != MG_OK)
        return res->fatal.code;
    return res->failed > 0 ? MG_E_PARTIAL : MG_OK;
}
