/* cancel.c - see include/mailgrab/cancel.h */
#include "mailgrab/cancel.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/log.h"

#define MAX_HOOKS 16

struct hook {
    void (*fn)(void *ctx);
    void *ctx;
};

static atomic_int cancel_sig;     /* 0 until cancelled */
static atomic_int cancel_fd = -1; /* eventfd, readable once cancelled */
static pthread_mutex_t hooks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct hook hooks[MAX_HOOKS];

static void signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
}

enum mg_code mg_cancel_init(struct mg_error *err)
{
    sigset_t set;
    signals(&set);
    int r = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (r != 0)
        return mg_error_set(err, MG_E_INTERNAL, "cannot block signals: %s", strerror(r));
    signal(SIGPIPE, SIG_IGN);
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return mg_error_set(err, MG_E_INTERNAL, "eventfd: %s", strerror(errno));
    atomic_store(&cancel_fd, fd);
    return MG_OK;
}

static const char *sig_name(int sig)
{
    switch (sig) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case SIGHUP:
        return "SIGHUP";
    default:
        return "a signal";
    }
}

void mg_cancel_now(int sig)
{
    int none = 0;
    if (!atomic_compare_exchange_strong(&cancel_sig, &none, sig))
        return;
    int fd = atomic_load(&cancel_fd);
    if (fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(fd, &one, sizeof(one));
        (void)w; /* an eventfd write of 1 cannot fail short of overflow */
    }
    pthread_mutex_lock(&hooks_mu);
    for (size_t i = 0; i < MAX_HOOKS; i++)
        if (hooks[i].fn != NULL)
            hooks[i].fn(hooks[i].ctx);
    pthread_mutex_unlock(&hooks_mu);
}

static void *signal_main(void *arg)
{
    (void)arg;
    sigset_t set;
    signals(&set);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (mg_cancelled()) {
            mg_err("%s again: exiting at once (what is stored is complete)", sig_name(sig));
            _exit(MG_E_INTERRUPTED);
        }
        mg_info("%s: stopping; writing what is stored so far", sig_name(sig));
        mg_cancel_now(sig);
    }
    return NULL;
}

enum mg_code mg_cancel_start(struct mg_error *err)
{
    pthread_t t;
    int r = pthread_create(&t, NULL, signal_main, NULL);
    if (r != 0)
        return mg_error_set(err, MG_E_INTERNAL, "cannot start the signal thread: %s", strerror(r));
    pthread_detach(t);
    return MG_OK;
}

bool mg_cancelled(void)
{
    return atomic_load(&cancel_sig) != 0;
}

int mg_cancel_signal(void)
{
    return atomic_load(&cancel_sig);
}

int mg_cancel_fd(void)
{
    return atomic_load(&cancel_fd);
}

enum mg_code mg_cancel_error(struct mg_error *err)
{
    return mg_error_set(err, MG_E_INTERRUPTED,
                        "interrupted by %s; every message stored so far is complete and kept",
                        sig_name(mg_cancel_signal()));
}

enum mg_code mg_cancel_check(enum mg_code rc, struct mg_error *err)
{
    if (rc != MG_OK && rc != MG_E_INTERRUPTED && mg_cancelled())
        return mg_cancel_error(err);
    return rc;
}

int mg_cancel_hook_add(void (*fn)(void *ctx), void *ctx)
{
    int handle = -1;
    pthread_mutex_lock(&hooks_mu);
    for (int i = 0; i < MAX_HOOKS && handle < 0; i++) {
        if (hooks[i].fn == NULL) {
            hooks[i].fn = fn;
            hooks[i].ctx = ctx;
            handle = i;
        }
    }
    pthread_mutex_unlock(&hooks_mu);
    return handle;
}

void mg_cancel_hook_remove(int handle)
{
    if (handle < 0 || handle >= MAX_HOOKS)
        return;
    pthread_mutex_lock(&hooks_mu);
    hooks[handle].fn = NULL;
    hooks[handle].ctx = NULL;
    pthread_mutex_unlock(&hooks_mu);
}

struct timespec mg_deadline(unsigned ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    return until;
}

void mg_cancel_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu, unsigned ms)
{
    struct timespec until = mg_deadline(ms);
    pthread_cond_timedwait(cv, mu, &until);
}

bool mg_cancel_sleep(unsigned ms)
{
    struct pollfd pfd = {.fd = mg_cancel_fd(), .events = POLLIN};
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (mg_cancelled())
            return false;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long done = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (done >= (long)ms)
            return true;
        if (poll(&pfd, 1, (int)((long)ms - done)) < 0 && errno != EINTR)
            return !mg_cancelled();
    }
}

void mg_cancel_child_sigdefault(sigset_t *set)
{
    signals(set);
    sigaddset(set, SIGPIPE);
}
