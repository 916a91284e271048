/*
 * test_engine.c - the fetch engine (pool.c, plan.c, the store) against a
 * scripted fake source: scheduling, work stealing, cuts, refusals, broken
 * and lying answers, logins refused or limited, renumbering, cancellation.
 * No server, no network: each case takes milliseconds. The store is real:
 * messages land in a temporary directory and are checked byte for byte.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake_source.h"
#include "mailgrab/cancel.h"
#include "mailgrab/log.h"
#include "mailgrab/pool.h"
#include "mailgrab/store.h"

struct run {
    char dir[64];
    enum mg_code rc; /* of mg_pool_run, or of the step that failed */
    struct mg_job_result res;
    struct mg_error err;
    size_t listed;
    atomic_uint stored_calls;
    unsigned progress_calls, progress_done; /* from mg_pool_run's thread only */
    size_t progress_last;                   /* stored, as the final report said */
};

static void count_stored(void *ctx, uint32_t uid, const char *path)
{
    (void)uid;
    (void)path;
    struct run *r = ctx;
    atomic_fetch_add(&r->stored_calls, 1); /* workers call it at once */
}

static void count_progress(void *ctx, const struct mg_progress *pr)
{
    struct run *r = ctx;
    r->progress_calls++;
    r->progress_done += pr->done;
    if (pr->done)
        r->progress_last = pr->stored;
}

/* The budget the next run_pool hands its job (NULL: none). */
static struct mg_budget *next_budget;

/* Back up f's INBOX into a new temporary directory with `workers` sessions. */
static void run_pool(struct fake_server *f, unsigned workers, size_t fetch_msgs, struct run *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/mg-engine-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    struct mg_source src = fake_source(f);
    struct mg_pool *pool = NULL;
    struct mg_store *store = NULL;
    struct mg_msglist msgs = {0};
    struct mg_mailbox_info mi;
    mg_error_clear(&r->err);
    r->rc = mg_pool_create(&src, workers, &pool, &r->err);
    if (r->rc == MG_OK) {
        mg_pool_set_pause(pool, 20); /* the pauses' logic, at 1/50 of the time */
        /* Tiny messages stand for big ones: each worth a connection. */
        mg_pool_set_session_worth(pool, f->session_worth ? f->session_worth : 1);
        r->rc = mg_pool_connect(pool, &r->err);
    }
    if (r->rc == MG_OK)
        r->rc = mg_pool_list(pool, "INBOX", 1, &mi, &msgs, &r->err);
    bool newgen;
    if (r->rc == MG_OK)
        r->rc =
            mg_store_open(r->dir, "INBOX", MG_FORMAT_EML, mi.uidvalidity, &store, &newgen, &r->err);
    if (r->rc == MG_OK) {
        mg_msglist_sort(&msgs);
        r->listed = msgs.n;
        struct mg_job job = {
            .mailbox = "INBOX",
            .uidvalidity = mi.uidvalidity,
            .store = store,
            .msgs = &msgs,
            .fetch_msgs = fetch_msgs,
            .fetch_bytes = 8u << 20,
            .on_stored = count_stored,
            .ctx = r,
            .on_progress = count_progress,
            .progress_ctx = r,
            .budget = next_budget,
        };
        r->rc = mg_pool_run(pool, &job, &r->res);
        if (r->rc != MG_OK)
            r->err = r->res.fatal;
    }
    mg_store_close(store);
    mg_pool_destroy(pool);
    mg_msglist_finish(&msgs);
}

/* The stored file of uid, or NULL. */
static FILE *stored(const struct run *r, uint32_t uid)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/INBOX/%u.eml", r->dir, uid);
    return fopen(path, "rb");
}

/* uid is stored whole, byte for byte. */
static bool stored_whole(const struct run *r, const struct fake_server *f, uint32_t uid)
{
    FILE *in = stored(r, uid);
    if (in == NULL)
        return false;
    long k = fake_index(f, uid);
    uint32_t off = 0;
    int c;
    bool same = k >= 0;
    while (same && (c = getc(in)) != EOF)
        same = off < f->sizes[k] && (unsigned char)c == fake_byte(uid, off++);
    fclose(in);
    return same && off == f->sizes[k];
}

/* What the output holds besides whole messages: 0 when nothing. */
static size_t strays(const struct run *r, const struct fake_server *f)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/INBOX", r->dir);
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    size_t bad = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* the store's own files (state, manifest) */
        unsigned uid;
        char tail[8];
        if (sscanf(e->d_name, "%u.%7s", &uid, tail) != 2 || strcmp(tail, "eml") != 0 ||
            fake_index(f, uid) < 0)
            bad++;
    }
    closedir(d);
    return bad;
}

static size_t count_whole(const struct run *r, const struct fake_server *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++)
        n += stored_whole(r, f, f->uids[i]);
    return n;
}

static void cleanup(struct run *r)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
    assert_int_equal(system(cmd), 0);
}

/* Everything stored whole, once, and nothing else. */
static void assert_exact(const struct run *r, const struct fake_server *f)
{
    if (r->rc != MG_OK)
        fail_msg("run: code %d: %s", r->rc, r->err.msg);
    assert_int_equal(r->res.stored, f->n);
    assert_int_equal(r->res.failed, 0);
    assert_int_equal(count_whole(r, f), f->n);
    assert_int_equal(strays(r, f), 0);
    assert_int_equal(atomic_load(&r->stored_calls), f->n);
}

static void test_one_session_stores_everything(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 100, 10, 5000);
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_exact(&r, &f);
    assert_int_equal(f.opened, 1);
    assert_int_equal(r.res.connections, 1);
    /* Progress goes to the caller, ending with one final report. */
    assert_true(r.progress_calls >= 1);
    assert_int_equal(r.progress_done, 1);
    assert_int_equal(r.progress_last, f.n);
    cleanup(&r);
    fake_finish(&f);
}

static void test_many_sessions_share_the_work(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 400, 10, 20000);
    struct run r;
    run_pool(&f, 4, 256, &r);
    assert_exact(&r, &f);
    assert_true(f.opened <= 4);
    for (size_t i = 0; i < f.n; i++)
        assert_int_equal(f.asked[i], 1); /* nothing asked for twice */
    cleanup(&r);
    fake_finish(&f);
}

/* Batches start small and grow: the first FETCH is small, later ones larger. */
static void test_batches_grow(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 600, 10, 100);
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_exact(&r, &f);
    assert_true(f.largest_fetch > 16);
    assert_true(f.largest_fetch <= 256);
    assert_true(f.fetches < 20);
    cleanup(&r);
    fake_finish(&f);
}

/* Every session is cut after 64 kB: what arrived whole is kept, the rest is
 * fetched again on new sessions, and the run converges with little waste. */
static void test_cuts_converge(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 300, 1000, 9000);
    f.cut_after = 64 * 1024;
    f.cuts_left = -1;
    uint64_t total = 0;
    for (size_t i = 0; i < f.n; i++)
        total += f.sizes[i];
    struct run r;
    run_pool(&f, 3, 256, &r);
    assert_exact(&r, &f);
    assert_true(f.cut > 10);
    if (f.bytes_sent > total * 13 / 10)
        fail_msg("sent %llu bytes for %llu stored", (unsigned long long)f.bytes_sent,
                 (unsigned long long)total);
    cleanup(&r);
    fake_finish(&f);
}

/* One cut in the middle of a big batch costs only the message arriving. */
static void test_one_cut_keeps_what_arrived(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 50, 4000, 4000);
    f.cut_after = 30 * 4000 + 100;
    f.cuts_left = 1;
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_exact(&r, &f);
    assert_int_equal(f.cut, 1);
    size_t again = 0;
    for (size_t i = 0; i < f.n; i++)
        again += f.asked[i] > 1;
    assert_true(again <= 20); /* the 30 whole ones before the cut were not asked again */
    cleanup(&r);
    fake_finish(&f);
}

/* A message longer than any session's life is given up, named, and its
 * neighbours are stored. */
static void test_message_longer_than_a_session(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 20, 1000, 1000);
    f.sizes[7] = 200000;
    f.cut_after = 100000;
    f.cuts_left = -1;
    struct run r;
    run_pool(&f, 2, 256, &r);
    assert_int_equal(r.rc, MG_E_PARTIAL);
    assert_int_equal(r.res.failed, 1);
    assert_int_equal(r.res.stored, f.n - 1);
    assert_false(stored_whole(&r, &f, f.uids[7]));
    assert_null(stored(&r, f.uids[7]));
    assert_int_equal(count_whole(&r, &f), f.n - 1);
    assert_int_equal(strays(&r, &f), 0);
    cleanup(&r);
    fake_finish(&f);
}

/* A busy refusal is asked again after a pause; the run completes. */
static void test_busy_refusal_is_retried(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 30, 100, 500);
    f.refuse_uid = f.uids[4];
    f.refusal = FAKE_BUSY;
    f.refusals_left = 1;
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_exact(&r, &f);
    assert_int_equal(f.asked[4], 2);
    cleanup(&r);
    fake_finish(&f);
}

/* A small job does not open a connection per message: one connection per
 * 256 KiB of it (the default), however many workers the pool has. */
static void test_small_job_few_connections(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 40, 1000, 5000); /* about 120 KB */
    f.session_worth = 256 << 10;
    struct run r;
    run_pool(&f, 8, 4, &r);
    assert_exact(&r, &f);
    assert_int_equal(r.res.connections, 1);
    assert_int_equal(f.opened, 1);
    cleanup(&r);
    fake_finish(&f);
    fake_init(&f, 40, 30000, 40000); /* about 1.4 MB: six connections */
    f.session_worth = 256 << 10;
    run_pool(&f, 8, 4, &r);
    assert_exact(&r, &f);
    assert_true(r.res.connections >= 2 && r.res.connections <= 6);
    cleanup(&r);
    fake_finish(&f);
}

/* A message refused every time fails alone (exit 1); the others are stored. */
static void test_message_always_refused(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 30, 100, 500);
    f.refuse_uid = f.uids[10];
    f.refusal = FAKE_BUSY;
    f.refusals_left = -1;
    struct run r;
    run_pool(&f, 2, 256, &r);
    assert_int_equal(r.rc, MG_E_PARTIAL);
    assert_int_equal(r.res.failed, 1);
    assert_int_equal(r.res.stored, f.n - 1);
    assert_int_equal(count_whole(&r, &f), f.n - 1);
    assert_true(f.asked[10] >= 2 && f.asked[10] <= 5);
    cleanup(&r);
    fake_finish(&f);
}

/* A download quota stops the run (exit 11) and keeps what was stored. */
static void test_quota_stops_and_keeps(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 200, 100, 500);
    f.refuse_uid = f.uids[150];
    f.refusal = FAKE_QUOTA;
    f.refusals_left = -1;
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_int_equal(r.rc, MG_E_LIMIT);
    size_t whole = count_whole(&r, &f);
    assert_true(whole >= 100 && whole < f.n);
    assert_int_equal(whole, r.res.stored);
    assert_int_equal(strays(&r, &f), 0);
    cleanup(&r);
    fake_finish(&f);
}

/* A message the server could not send whole is not stored; its neighbours
 * in the same FETCH are. */
static void test_broken_message_isolated(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 40, 100, 900);
    f.bad_uid = f.uids[13];
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_int_equal(r.rc, MG_E_PARTIAL);
    assert_int_equal(r.res.failed, 1);
    assert_null(stored(&r, f.uids[13]));
    assert_int_equal(count_whole(&r, &f), f.n - 1);
    assert_int_equal(strays(&r, &f), 0);
    cleanup(&r);
    fake_finish(&f);
}

/* UIDs never asked for, and messages sent twice, store nothing extra. */
static void test_lies_store_nothing_extra(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 40, 100, 900);
    f.extra_uid = 99999;
    f.send_twice = true;
    struct run r;
    run_pool(&f, 2, 256, &r);
    assert_exact(&r, &f);
    assert_null(stored(&r, 99999));
    cleanup(&r);
    fake_finish(&f);
}

/* A message left out of complete answers is not claimed as stored. */
static void test_message_never_returned(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 10, 100, 900);
    f.drop_unasked_last = true;
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_int_not_equal(r.rc, MG_OK);
    assert_true(r.res.stored < f.n);
    assert_int_equal(count_whole(&r, &f), r.res.stored);
    assert_int_equal(r.res.stored + r.res.failed + r.res.vanished, f.n);
    cleanup(&r);
    fake_finish(&f);
}

/* Refused credentials stop at once: no retries, nothing stored. */
static void test_refused_login_stops(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 10, 100, 900);
    f.open_fails = MG_E_AUTH;
    f.open_fails_left = -1;
    struct run r;
    run_pool(&f, 4, 256, &r);
    assert_int_equal(r.rc, MG_E_AUTH);
    assert_int_equal(f.opened, 0);
    assert_int_equal(count_whole(&r, &f), 0);
    cleanup(&r);
    fake_finish(&f);
}

/* A server that allows two sessions: the run goes on with two. */
static void test_connection_limit(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 200, 100, 3000);
    f.max_sessions = 2;
    struct run r;
    run_pool(&f, 6, 256, &r);
    assert_exact(&r, &f);
    cleanup(&r);
    fake_finish(&f);
}

/* A passing refusal of the first login is tried again. */
static void test_first_login_busy(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 20, 100, 900);
    f.open_fails = MG_E_CONNECT;
    f.open_fails_left = 1;
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_exact(&r, &f);
    cleanup(&r);
    fake_finish(&f);
}

/* A budget: no message is asked for beyond it, the run stops with
 * MG_E_LIMIT, and what was not fetched is not counted as failed. */
static void test_budget_stops_the_run(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 300, 100, 5000);
    uint64_t total = 0;
    for (size_t i = 0; i < f.n; i++)
        total += f.sizes[i];
    struct mg_run_limits run;
    mg_run_limits_init(&run, total / 3, 0);
    struct mg_error err;
    assert_int_equal(mg_budget_create("/tmp", 0, &run, &next_budget, &err), MG_OK);
    struct run r;
    run_pool(&f, 4, 256, &r);
    mg_budget_destroy(next_budget);
    next_budget = NULL;
    assert_int_equal(r.rc, MG_E_LIMIT);
    assert_non_null(strstr(r.err.msg, "--max-bytes"));
    uint64_t asked = 0;
    size_t whole = 0;
    for (size_t i = 0; i < f.n; i++) {
        asked += (uint64_t)f.asked[i] * f.sizes[i];
        assert_true(f.asked[i] <= 1);
        whole += stored_whole(&r, &f, f.uids[i]);
    }
    if (asked > total / 3)
        fail_msg("asked for %llu bytes of a budget of %llu", (unsigned long long)asked,
                 (unsigned long long)(total / 3));
    assert_true(asked + 5000 > total / 3); /* it stopped at the limit, not before */
    assert_int_equal(whole, r.res.stored);
    assert_true(whole > 0 && whole < f.n);
    assert_int_equal(r.res.failed, 0);
    cleanup(&r);
    fake_finish(&f);
}

/* A slow session does not hold the others up: they steal its work. */
static void test_work_stealing(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 120, 100, 200);
    f.delay_ms = 2;
    struct run r;
    run_pool(&f, 4, 8, &r);
    assert_exact(&r, &f);
    assert_true(f.fetches >= 8);
    cleanup(&r);
    fake_finish(&f);
}

/* Sessions opened later see another UIDVALIDITY: the run stops rather than
 * store messages of another numbering. */
static void test_renumbered_during_run(void **state)
{
    (void)state;
    struct fake_server f;
    fake_init(&f, 200, 100, 900);
    f.renumber_after = 1;
    f.cut_after = 20000;
    f.cuts_left = 1;
    struct run r;
    run_pool(&f, 1, 256, &r);
    assert_int_not_equal(r.rc, MG_OK);
    assert_true(count_whole(&r, &f) < f.n);
    assert_int_equal(count_whole(&r, &f), r.res.stored);
    cleanup(&r);
    fake_finish(&f);
}

/* Cancellation is process-wide and for good: each case runs in a child. */
static int in_child(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        fn();
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void *cancel_later(void *arg)
{
    struct timespec ts = {0, (long)(intptr_t)arg * 1000000L};
    nanosleep(&ts, NULL);
    mg_cancel_now(15);
    return NULL;
}

static void cancel_during_fetch(void)
{
    struct mg_error err;
    if (mg_cancel_init(&err) != MG_OK)
        _exit(10);
    struct fake_server f;
    fake_init(&f, 50, 100, 900);
    f.hang_fetch = true;
    pthread_t t;
    pthread_create(&t, NULL, cancel_later, (void *)(intptr_t)100);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct run r;
    run_pool(&f, 3, 256, &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(t, NULL);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cleanup(&r);
    if (r.rc != MG_E_INTERRUPTED)
        _exit(11);
    if (!r.res.interrupted)
        _exit(12);
    if (f.cancelled == 0)
        _exit(13);
    if (secs > 2.0)
        _exit(14);
    _exit(0);
}

static void test_cancel_during_fetch(void **state)
{
    (void)state;
    assert_int_equal(in_child(cancel_during_fetch), 0);
}

static void cancel_before_connect(void)
{
    struct mg_error err;
    if (mg_cancel_init(&err) != MG_OK)
        _exit(10);
    mg_cancel_now(2);
    struct fake_server f;
    fake_init(&f, 50, 100, 900);
    struct run r;
    run_pool(&f, 3, 256, &r);
    cleanup(&r);
    if (r.rc != MG_E_INTERRUPTED)
        _exit(11);
    if (count_whole(&r, &f) != 0)
        _exit(12);
    _exit(0);
}

static void test_cancel_before_connect(void **state)
{
    (void)state;
    assert_int_equal(in_child(cancel_before_connect), 0);
}

int main(int argc, char **argv)
{
    mg_log_set_level(MG_QUIET);
    if (argc > 1) /* one case by name, e.g. test_cuts_converge, or a glob */
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_session_stores_everything),
        cmocka_unit_test(test_many_sessions_share_the_work),
        cmocka_unit_test(test_batches_grow),
        cmocka_unit_test(test_cuts_converge),
        cmocka_unit_test(test_one_cut_keeps_what_arrived),
        cmocka_unit_test(test_message_longer_than_a_session),
        cmocka_unit_test(test_busy_refusal_is_retried),
        cmocka_unit_test(test_message_always_refused),
        cmocka_unit_test(test_small_job_few_connections),
        cmocka_unit_test(test_quota_stops_and_keeps),
        cmocka_unit_test(test_broken_message_isolated),
        cmocka_unit_test(test_lies_store_nothing_extra),
        cmocka_unit_test(test_message_never_returned),
        cmocka_unit_test(test_refused_login_stops),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_budget_stops_the_run),
        cmocka_unit_test(test_first_login_busy),
        cmocka_unit_test(test_work_stealing),
        cmocka_unit_test(test_renumbered_during_run),
        cmocka_unit_test(test_cancel_during_fetch),
        cmocka_unit_test(test_cancel_before_connect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
