/* test_cancel.c - the cancellation model: a real signal taken by the signal
 * thread, hooks, the eventfd, sleeps and waits that end at once. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "mailgrab/cancel.h"

static int hook_runs;
static int removed_runs;

static void count_hook(void *ctx)
{
    (*(int *)ctx)++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One test: the state is process-wide and a cancel cannot be undone. */
static void test_signal_cancels_once(void **state)
{
    (void)state;
    struct mg_error err;
    assert_false(mg_cancelled());
    assert_int_equal(mg_cancel_signal(), 0);
    /* Before init nothing is cancelled and the fd is one poll ignores. */
    assert_int_equal(mg_cancel_fd(), -1);
    assert_true(mg_cancel_sleep(10));

    assert_int_equal(mg_cancel_init(&err), MG_OK);
    assert_int_equal(mg_cancel_start(&err), MG_OK);
    int fd = mg_cancel_fd();
    assert_true(fd >= 0);
    int h1 = mg_cancel_hook_add(count_hook, &hook_runs);
    int h2 = mg_cancel_hook_add(count_hook, &removed_runs);
    assert_true(h1 >= 0 && h2 >= 0 && h1 != h2);
    mg_cancel_hook_remove(h2);

    /* Not cancelled yet: a wait runs its time. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    assert_int_equal(mg_cancel_check(MG_E_PROTOCOL, &err), MG_E_PROTOCOL);

    /* A real SIGTERM, blocked in this thread, is taken by the signal thread. */
    assert_int_equal(kill(getpid(), SIGTERM), 0);
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    for (int i = 0; i < 500 && hook_runs == 0; i++)
        usleep(1000); /* the hooks run just after the eventfd is written */
    assert_true(mg_cancelled());
    assert_int_equal(mg_cancel_signal(), SIGTERM);
    assert_int_equal(hook_runs, 1);
    assert_int_equal(removed_runs, 0);

    /* Everything that waits now ends at once. */
    double t0 = now_s();
    assert_false(mg_cancel_sleep(10000));
    assert_true(now_s() - t0 < 5);
    assert_int_equal(mg_cancel_check(MG_E_PROTOCOL, &err), MG_E_INTERRUPTED);
    assert_non_null(strstr(err.msg, "interrupted by SIGTERM"));
    assert_int_equal(mg_cancel_check(MG_OK, &err), MG_OK);

    /* Cancelling again changes nothing. */
    mg_cancel_now(SIGINT);
    assert_int_equal(mg_cancel_signal(), SIGTERM);
    assert_int_equal(hook_runs, 1);
    mg_cancel_hook_remove(h1);
}

static void test_child_defaults(void **state)
{
    (void)state;
    sigset_t set;
    mg_cancel_child_sigdefault(&set);
    assert_true(sigismember(&set, SIGINT));
    assert_true(sigismember(&set, SIGTERM));
    assert_true(sigismember(&set, SIGHUP));
    assert_true(sigismember(&set, SIGPIPE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_defaults),
        cmocka_unit_test(test_signal_cancels_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
