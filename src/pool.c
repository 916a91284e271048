/* pool.c - see include/mailgrab/pool.h */
#include "mailgrab/pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mailgrab/log.h"

#define MAX_ATTEMPTS 3
#define MAX_CONNECT_FAILS 3

struct pool;

struct worker {
    struct pool *pool;
    unsigned id;
    pthread_t thread;
    struct mg_imap *sess; /* guarded by pool->mu for cancel */
    struct mg_batch *batch;
    /* the batch being fetched */
    size_t *idx;
    uint32_t *uids; /* sorted */
    size_t *uid_idx;
    bool *got;
    size_t n;
    struct mg_error err;
    bool sink_failed;
};

struct pool {
    const struct mg_job *job;
    struct mg_plan plan;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t inflight;
    unsigned running;
    bool abort;
    struct mg_job_result *res;
    struct worker *w;
    atomic_uint_fast64_t bytes_seen; /* streamed, for progress */
    atomic_size_t stored;
};

static void set_fatal(struct pool *p, const struct mg_error *e)
{
    /* caller holds mu */
    if (p->res->fatal.code == MG_OK)
        p->res->fatal = *e;
    p->abort = true;
    for (unsigned i = 0; i < p->job->workers; i++)
        mg_imap_cancel(p->w[i].sess);
    pthread_cond_broadcast(&p->cv);
}

static bool sink_body(void *ctx, const char *bytes, size_t len)
{
    struct worker *w = ctx;
    if (!mg_batch_in_message(w->batch) && mg_batch_begin(w->batch, &w->err) != MG_OK)
        goto fail;
    if (len > 0 && mg_batch_write(w->batch, bytes, len, &w->err) != MG_OK)
        goto fail;
    atomic_fetch_add(&w->pool->bytes_seen, len);
    return true;
fail:
    w->sink_failed = true;
    return false;
}

static bool sink_done(void *ctx, uint32_t uid, time_t idate)
{
    struct worker *w = ctx;
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (uid == 0 || lo == w->n || w->uids[lo] != uid || w->got[lo]) {
        /* Not asked for, or sent twice: a server that lies gets nothing stored. */
        if (uid != 0)
            mg_debug("worker %u: ignoring unrequested or repeated UID %u", w->id, uid);
        mg_batch_drop_current(w->batch);
        return true;
    }
    if (mg_batch_end(w->batch, uid, idate, &w->err) != MG_OK) {
        w->sink_failed = true;
        return false;
    }
    w->got[lo] = true;
    return true;
}

static int cmp_pair(const void *a, const void *b)
{
    const size_t *x = a, *y = b; /* [uid, idx] */
    return (x[0] > y[0]) - (x[0] < y[0]);
}

static void prepare_batch(struct worker *w)
{
    const struct mg_msglist *m = w->pool->job->msgs;
    size_t(*pairs)[2] = (size_t(*)[2])w->uid_idx;
    for (size_t i = 0; i < w->n; i++) {
        pairs[i][0] = m->v[w->idx[i]].uid;
        pairs[i][1] = w->idx[i];
    }
    qsort(pairs, w->n, sizeof(pairs[0]), cmp_pair);
    for (size_t i = 0; i < w->n; i++) {
        w->uids[i] = (uint32_t)pairs[i][0];
        w->idx[i] = pairs[i][1];
        w->got[i] = false;
    }
}

static void sleep_ms(struct pool *p, unsigned ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&p->mu);
    while (!p->abort && pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&p->mu);
}

static enum mg_code open_session(struct worker *w, struct mg_error *err)
{
    struct pool *p = w->pool;
    struct mg_imap *s = NULL;
    enum mg_code rc = mg_imap_open(p->job->srv, p->job->creds, &s, err);
    if (rc != MG_OK)
        return rc;
    struct mg_mailbox_info mi;
    rc = mg_imap_examine(s, p->job->mailbox, &mi, err);
    if (rc == MG_OK && mi.uidvalidity != p->job->uidvalidity)
        rc = mg_error_set(err, MG_E_PROTOCOL,
                          "UIDVALIDITY of %s changed during the run (%u, now %u): run again",
                          p->job->mailbox, p->job->uidvalidity, mi.uidvalidity);
    if (rc != MG_OK) {
        mg_imap_close(s, false);
        return rc;
    }
    pthread_mutex_lock(&p->mu);
    w->sess = s;
    if (p->abort)
        mg_imap_cancel(s);
    pthread_mutex_unlock(&p->mu);
    return MG_OK;
}

static void drop_session(struct worker *w, bool polite)
{
    struct pool *p = w->pool;
    pthread_mutex_lock(&p->mu);
    struct mg_imap *s = w->sess;
    w->sess = NULL;
    pthread_mutex_unlock(&p->mu);
    mg_imap_close(s, polite);
}

static void on_stored(void *ctx, uint32_t uid, const char *path)
{
    struct worker *w = ctx;
    struct pool *p = w->pool;
    atomic_fetch_add(&p->stored, 1);
    if (p->job->on_stored != NULL)
        p->job->on_stored(p->job->ctx, uid, path);
}

/* Fetch and commit the current batch. Under mu afterwards: requeue misses. */
static enum mg_code run_batch(struct worker *w, struct mg_error *err)
{
    struct pool *p = w->pool;
    struct mg_fetch_sink sink = {w, sink_body, sink_done};
    w->sink_failed = false;
    enum mg_code rc = mg_imap_fetch(w->sess, w->uids, w->n, &sink, err);
    if (w->sink_failed) {
        *err = w->err;
        rc = err->code;
    }
    if (rc != MG_OK) {
        mg_batch_discard(w->batch);
        return rc;
    }
    pthread_mutex_lock(&p->mu); /* on_stored callbacks are serialised */
    rc = mg_batch_commit(w->batch, on_stored, w, err);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* After a batch: account what arrived, re-queue what did not. */
static void settle_batch(struct worker *w, bool fetched)
{
    struct pool *p = w->pool;
    const struct mg_msglist *m = p->job->msgs;
    for (size_t i = 0; i < w->n; i++) {
        if (fetched && w->got[i]) {
            p->res->stored++;
            p->res->bytes += m->v[w->idx[i]].size;
            continue;
        }
        if (mg_plan_requeue(&p->plan, w->idx[i]))
            continue;
        if (fetched) {
            p->res->vanished++;
            mg_warn("message UID %u was not returned by the server %d times; skipped", w->uids[i],
                    MAX_ATTEMPTS);
        } else {
            p->res->failed++;
        }
    }
    w->n = 0;
}

/* Return a batch untouched (no attempt spent): it never reached the server. */
static void give_back(struct worker *w)
{
    struct pool *p = w->pool;
    for (size_t i = 0; i < w->n; i++)
        mg_plan_return(&p->plan, w->idx[i]);
    w->n = 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct pool *p = w->pool;
    const struct mg_job *job = p->job;
    unsigned fails = 0;

    for (;;) {
        pthread_mutex_lock(&p->mu);
        for (;;) {
            if (p->abort)
                goto out_locked;
            w->n = mg_plan_take(&p->plan, w->id, job->batch_msgs, job->batch_bytes, w->idx);
            if (w->n > 0)
                break;
            if (p->inflight == 0)
                goto out_locked;
            pthread_cond_wait(&p->cv, &p->mu); /* a failing batch may come back */
        }
        p->inflight++;
        pthread_mutex_unlock(&p->mu);
        prepare_batch(w);

        struct mg_error err;
        mg_error_clear(&err);
        enum mg_code rc = MG_OK;
        if (w->sess == NULL) {
            rc = open_session(w, &err);
            if (rc == MG_OK) {
                pthread_mutex_lock(&p->mu);
                p->res->connections++;
                pthread_mutex_unlock(&p->mu);
            }
        }
        bool fetched = false;
        if (rc == MG_OK) {
            rc = run_batch(w, &err);
            fetched = rc == MG_OK;
        }

        pthread_mutex_lock(&p->mu);
        if (w->sess == NULL && rc != MG_OK) {
            give_back(w); /* could not connect: the batch was never sent */
        } else {
            settle_batch(w, fetched);
        }
        p->inflight--;
        pthread_cond_broadcast(&p->cv);
        bool aborting = p->abort;
        if (rc != MG_OK && !aborting) {
            if (err.retry == MG_RETRY_NONE || rc == MG_E_IO || rc == MG_E_INTERNAL) {
                set_fatal(p, &err); /* credentials, certificate, disk: stop */
            } else if (++fails >= MAX_CONNECT_FAILS) {
                mg_warn("worker %u gives up after %u failures: %s", w->id, fails, err.msg);
                if (p->running == 1 && mg_plan_pending(&p->plan) > 0)
                    set_fatal(p, &err); /* the last worker: nothing else will fetch */
                pthread_mutex_unlock(&p->mu);
                drop_session(w, false);
                pthread_mutex_lock(&p->mu);
                goto out_locked;
            } else {
                mg_info("worker %u: %s; retrying", w->id, err.msg);
            }
        } else if (rc == MG_OK) {
            fails = 0;
        }
        pthread_mutex_unlock(&p->mu);

        if (rc != MG_OK) {
            drop_session(w, false);
            if (!aborting && err.retry != MG_RETRY_NONE)
                sleep_ms(p, err.retry == MG_RETRY_LATER ? 1000u << fails : 100u * fails);
        }
    }

out_locked:
    p->running--;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    drop_session(w, !p->abort);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human_bytes(uint64_t b, char *buf, size_t cap)
{
    if (b >= 1000000000)
        snprintf(buf, cap, "%.2f GB", (double)b / 1e9);
    else if (b >= 1000000)
        snprintf(buf, cap, "%.1f MB", (double)b / 1e6);
    else
        snprintf(buf, cap, "%.1f kB", (double)b / 1e3);
}

static void show_progress(struct pool *p, double t0)
{
    size_t done = atomic_load(&p->stored);
    uint64_t bytes = atomic_load(&p->bytes_seen);
    uint64_t total = mg_msglist_bytes(p->job->msgs);
    double el = now_s() - t0;
    double rate = el > 0 ? (double)done / el : 0;
    double brate = el > 0 ? (double)bytes / el : 0;
    char b1[32], b2[32];
    human_bytes(bytes, b1, sizeof(b1));
    human_bytes((uint64_t)brate, b2, sizeof(b2));
    char eta[32] = "--";
    if (brate > 0 && total > bytes)
        snprintf(eta, sizeof(eta), "%.0fs", (double)(total - bytes) / brate);
    mg_progress_show("%s: %zu/%zu messages  %s  %.0f msg/s  %s/s  ETA %s", p->job->mailbox, done,
                     p->job->msgs->n, b1, rate, b2, eta);
}

enum mg_code mg_pool_run(const struct mg_job *job, struct mg_imap *first, struct mg_job_result *res)
{
    memset(res, 0, sizeof(*res));
    struct pool *p = calloc(1, sizeof(*p));
    unsigned nw = job->workers ? job->workers : 1;
    if (p == NULL)
        return mg_error_set(&res->fatal, MG_E_INTERNAL, "out of memory");
    p->job = job;
    p->res = res;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->w = calloc(nw, sizeof(*p->w));
    if (p->w == NULL || mg_plan_init(&p->plan, job->msgs, nw, MAX_ATTEMPTS) != 0) {
        mg_imap_close(first, false);
        free(p->w);
        free(p);
        return mg_error_set(&res->fatal, MG_E_INTERNAL, "out of memory");
    }
    res->connections = first != NULL ? 1 : 0;

    /* Signals go to this thread only, through sigtimedwait below. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, &old);

    double t0 = now_s();
    unsigned started = 0;
    for (unsigned i = 0; i < nw; i++) {
        struct worker *w = &p->w[i];
        w->pool = p;
        w->id = i;
        w->sess = i == 0 ? first : NULL;
        size_t bm = job->batch_msgs;
        w->idx = calloc(bm, sizeof(*w->idx));
        w->uids = calloc(bm, sizeof(*w->uids));
        w->uid_idx = calloc(bm * 2, sizeof(*w->uid_idx));
        w->got = calloc(bm, sizeof(*w->got));
        if (w->idx == NULL || w->uids == NULL || w->uid_idx == NULL || w->got == NULL ||
            mg_batch_create(job->store, i, &w->batch, &res->fatal) != MG_OK) {
            mg_error_set(&res->fatal, MG_E_INTERNAL, "out of memory");
            break;
        }
        pthread_mutex_lock(&p->mu);
        p->running++;
        pthread_mutex_unlock(&p->mu);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pthread_mutex_lock(&p->mu);
            p->running--;
            pthread_mutex_unlock(&p->mu);
            mg_error_set(&res->fatal, MG_E_INTERNAL, "cannot start worker thread");
            break;
        }
        started++;
    }
    if (started == 0 && first != NULL && p->w[0].sess == first) {
        mg_imap_close(first, false);
        p->w[0].sess = NULL;
    }
    if (res->fatal.code != MG_OK) {
        pthread_mutex_lock(&p->mu);
        p->abort = true;
        for (unsigned i = 0; i < started; i++)
            mg_imap_cancel(p->w[i].sess);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }

    /* Wait for the workers; draw progress; turn a signal into a clean stop. */
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool done = p->running == 0;
        pthread_mutex_unlock(&p->mu);
        if (done)
            break;
        struct timespec tick = {0, 250000000};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig > 0) {
            pthread_mutex_lock(&p->mu);
            if (!res->interrupted) {
                res->interrupted = true;
                struct mg_error e;
                mg_error_set(&e, MG_E_INTERRUPTED,
                             "interrupted by signal %d; messages stored so far are kept", sig);
                set_fatal(p, &e);
            }
            pthread_mutex_unlock(&p->mu);
        }
        show_progress(p, t0);
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(p->w[i].thread, NULL);
    mg_progress_end();
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    /* Whatever was never handed out or never settled did not arrive. */
    res->failed += mg_plan_pending(&p->plan);
    res->seconds = now_s() - t0;
    for (unsigned i = 0; i < nw; i++) {
        mg_batch_destroy(p->w[i].batch);
        free(p->w[i].idx);
        free(p->w[i].uids);
        free(p->w[i].uid_idx);
        free(p->w[i].got);
    }
    mg_plan_finish(&p->plan);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->w);
    free(p);
    if (res->fatal.code != MG_OK)
        return res->fatal.code;
    return res->failed > 0 ? MG_E_PARTIAL : MG_OK;
}
