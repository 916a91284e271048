/* test_isolate.c - crash containment, time limits, framing, and the analyzer process */
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "mailgrab/analyze.h"
#include "mailgrab/analyzer.h"
#include "mailgrab/isolate.h"
#include "mailgrab/ipc.h"
#include "mailgrab/log.h"

static char dir[] = "/tmp/mg-test-batch-XXXXXX";

static const char *const bodies[] = {
    "From: a@example.com\r\nSubject: first\r\n\r\nalpha\r\n",
    "From: b@example.com\r\nSubject: POISON\r\n\r\nbeta\r\n",
    "From: c@example.com\r\nSubject: third\r\n\r\ngamma\r\n",
    "From: d@example.com\r\nSubject: SLOW\r\n\r\ndelta\r\n",
    "From: e@example.com\r\nContent-Type: multipart/mixed; boundary=\"\\\"\"\r\n\r\n--\"\r\n",
    "From: f@example.com\r\nSubject: last\r\n\r\nepsilon\r\n",
};
#define NMSG (sizeof(bodies) / sizeof(bodies[0]))
static char *paths[NMSG];

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    for (size_t i = 0; i < NMSG; i++) {
        if (asprintf(&paths[i], "%s/%zu.eml", dir, i) < 0)
            return -1;
        FILE *f = fopen(paths[i], "wb");
        if (f == NULL)
            return -1;
        fputs(bodies[i], f);
        fclose(f);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < NMSG; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
    rmdir(dir);
    return 0;
}

/* An analysis that crashes or hangs on marked messages, as a parser bug would. */
static int hostile_analyze(const char *msg, size_t len, uint64_t size, time_t fallback,
                           const struct mg_stopwords *sw, struct mg_stats *s)
{
    if (memmem(msg, len, "POISON", 6) != NULL)
        abort();
    if (memmem(msg, len, "SLOW", 4) != NULL)
        for (;;)
            pause();
    return mg_analyze_message(msg, len, size, fallback, sw, s);
}

static void test_crash_contained(void **state)
{
    (void)state;
    struct mg_isolate_opts o = {.timeout_secs = 1, .analyze = hostile_analyze};
    struct mg_stats s;
    mg_stats_init(&s);
    assert_int_equal(mg_isolate_analyze((const char *const *)paths, NULL, NMSG, &o, &s), 0);
    assert_int_equal(s.messages, NMSG);
    /* poison + slow (killed) + the bad boundary */
    assert_int_equal(s.unparseable, 3);
    static const char *const kept[] = {"a@example.com", "c@example.com", "e@example.com",
                                       "f@example.com"};
    for (size_t i = 0; i < 4; i++) {
        struct mg_strmap_entry *e = mg_strmap_get(&s.senders, kept[i], 13, false);
        assert_non_null(e);
        assert_int_equal(e->count, 1);
    }
    struct mg_strmap_entry *none = mg_strmap_get(&s.senders, "(none)", 6, false);
    assert_non_null(none);
    assert_int_equal(none->count, 2);
    assert_non_null(mg_strmap_get(&s.keywords, "epsilon", 7, false));
    assert_null(mg_strmap_get(&s.keywords, "beta", 4, false));
    mg_stats_finish(&s);
}

/* Run a crashing batch with stderr in a file; return what it printed. */
static char *stderr_of_crashing_batch(enum mg_verbosity level)
{
    char tmpl[] = "/tmp/mg-test-stderr-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    unlink(tmpl);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    mg_log_set_level(level);
    const char *const some[] = {paths[0], paths[1], "/nonexistent/mailgrab/x.eml"};
    struct mg_isolate_opts o = {.timeout_secs = 1, .analyze = hostile_analyze};
    struct mg_stats s;
    mg_stats_init(&s);
    assert_int_equal(mg_isolate_analyze(some, NULL, 3, &o, &s), 0);
    assert_int_equal(s.unparseable, 2);
    mg_stats_finish(&s);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    mg_log_set_level(MG_NORMAL);
    static char out[4096];
    ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

/* --quiet holds in the worker processes too: their warnings go through the
 * log level inherited from the parent. */
static void test_quiet_holds_in_workers(void **state)
{
    (void)state;
    assert_string_equal(stderr_of_crashing_batch(MG_QUIET), "");
    const char *said = stderr_of_crashing_batch(MG_NORMAL);
    assert_non_null(strstr(said, "counted as unparseable"));
    assert_non_null(strstr(said, "/nonexistent/mailgrab/x.eml"));
}

static void test_analyzer_process(void **state)
{
    (void)state;
    struct mg_analyzer_opts o = {.tz = "UTC", .rows_fd = -1};
    struct mg_analyzer *a;
    struct mg_error err;
    assert_int_equal(mg_analyzer_start(&o, &a, &err), MG_OK);
    for (size_t i = 0; i < NMSG; i++)
        if (strstr(bodies[i], "SLOW") == NULL)
            assert_int_equal(mg_analyzer_feed(a, paths[i], false, &err), MG_OK);
    assert_int_equal(mg_analyzer_feed(a, "/nonexistent/mailgrab/x.eml", false, &err), MG_OK);
    struct mg_stats s;
    mg_stats_init(&s);
    assert_int_equal(mg_analyzer_finish(a, &s, &err), MG_OK);
    assert_int_equal(s.messages, NMSG); /* NMSG - 1 files + one unreadable */
    assert_int_equal(s.unparseable, 2); /* bad boundary, unreadable */
    assert_non_null(mg_strmap_get(&s.keywords, "poison", 6, false));
    mg_stats_finish(&s);
    mg_analyzer_destroy(a);
    mg_analyzer_destroy(NULL);
}

/* A stopped analyzer: feeding never waits; what does not fit in the queue
 * is left out, the rest is analysed once it runs again. */
static void test_analyzer_stopped_never_blocks(void **state)
{
    (void)state;
    struct mg_analyzer *a;
    struct mg_error err;
    assert_int_equal(mg_analyzer_start(NULL, &a, &err), MG_OK);
    assert_int_equal(kill(mg_analyzer_pid(a), SIGSTOP), 0);
    /* 2000 paths of 4000 bytes: twice what the 4 MB queue holds. */
    char *long_path = malloc(4001);
    assert_non_null(long_path);
    memset(long_path, 'x', 4000);
    memcpy(long_path, "/nonexistent/", 13);
    long_path[4000] = '\0';
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 2000; i++)
        assert_int_equal(mg_analyzer_feed(a, long_path, false, &err), MG_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    free(long_path);
    /* A blocking feed would never have come back: this is no speed test. */
    assert_true(t1.tv_sec - t0.tv_sec < 60);
    assert_int_equal(kill(mg_analyzer_pid(a), SIGCONT), 0);
    struct mg_stats s;
    mg_stats_init(&s);
    assert_int_equal(mg_analyzer_finish(a, &s, &err), MG_OK);
    assert_true(s.messages > 0);
    assert_true(s.messages < 2000);
    assert_int_equal(s.unparseable, s.messages);
    mg_stats_finish(&s);
    mg_analyzer_destroy(a);
}

/* SIGTERM to the analyzer: it analyses the paths in hand, skips the ones
 * after, and still sends its counts. */
static void test_analyzer_sigterm_wraps_up(void **state)
{
    (void)state;
    struct mg_analyzer *a;
    struct mg_error err;
    assert_int_equal(mg_analyzer_start(NULL, &a, &err), MG_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(mg_analyzer_feed(a, paths[0], false, &err), MG_OK);
    struct timespec pause = {0, 300000000};
    nanosleep(&pause, NULL); /* the analyzer has read them */
    assert_int_equal(kill(mg_analyzer_pid(a), SIGTERM), 0);
    nanosleep(&pause, NULL);
    for (int i = 0; i < 5; i++)
        assert_int_equal(mg_analyzer_feed(a, paths[2], false, &err), MG_OK);
    struct mg_stats s;
    mg_stats_init(&s);
    assert_int_equal(mg_analyzer_finish(a, &s, &err), MG_OK);
    assert_int_equal(s.messages, 10);
    assert_non_null(mg_strmap_get(&s.keywords, "alpha", 5, false));
    assert_null(mg_strmap_get(&s.keywords, "gamma", 5, false));
    mg_stats_finish(&s);
    mg_analyzer_destroy(a);
}

static void test_ipc_malformed(void **state)
{
    (void)state;
    static const unsigned char bad[][8] = {
        {0, 0, 0, 0, 2, MG_IPC_PATH, 0, 0},     /* wrong version */
        {0, 0, 0, 0, MG_IPC_VERSION, 99, 0, 0}, /* unknown type */
        {0, 0, 0, 0, MG_IPC_VERSION, 0, 0, 0},
        {0, 0, 0, 0, MG_IPC_VERSION, MG_IPC_PATH, 1, 0},    /* reserved bits */
        {0, 0, 0, 0x7f, MG_IPC_VERSION, MG_IPC_PATH, 0, 0}, /* too long */
        {5, 0, 0, 0, MG_IPC_VERSION, MG_IPC_PATH, 0, 0},    /* truncated payload */
    };
    struct mg_buf b;
    mg_buf_init(&b, MG_IPC_MAX);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        assert_int_equal(write(p[1], bad[i], 8), 8);
        close(p[1]);
        enum mg_ipc_type t;
        if (mg_ipc_recv(p[0], &t, &b) != -1)
            fail_msg("malformed frame %zu accepted", i);
        close(p[0]);
    }
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(mg_ipc_send(p[1], MG_IPC_PATH, "abc", 3), 0);
    close(p[1]);
    enum mg_ipc_type t;
    assert_int_equal(mg_ipc_recv(p[0], &t, &b), 0);
    assert_int_equal(t, MG_IPC_PATH);
    assert_int_equal(b.len, 3);
    assert_int_equal(mg_ipc_recv(p[0], &t, &b), 1); /* clean EOF */
    close(p[0]);
    mg_buf_finish(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_contained),
        cmocka_unit_test(test_quiet_holds_in_workers),
        cmocka_unit_test(test_analyzer_process),
        cmocka_unit_test(test_analyzer_stopped_never_blocks),
        cmocka_unit_test(test_analyzer_sigterm_wraps_up),
        cmocka_unit_test(test_ipc_malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
