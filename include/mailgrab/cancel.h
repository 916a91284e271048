/*
 * cancel.h - the process's one signal and cancellation model.
 *
 * SIGINT, SIGTERM and SIGHUP are blocked in main before the first fork or
 * thread (mg_cancel_init), so every thread and child inherits them blocked,
 * and are taken by one signal thread (mg_cancel_start) with sigwait. The first
 * of them cancels the run: it is recorded, an eventfd becomes readable for
 * good, and the registered hooks run (the pool stops its sessions). Whatever
 * waits checks it: network waits poll mg_cancel_fd, sleeps and condition
 * waits test mg_cancelled, helper commands are killed with their process
 * group. Then the run writes its summary and statistics and exits 130. A
 * second signal ends the process at once (exit 130, nothing more written):
 * stored messages are committed atomically, so that loses nothing.
 *
 * Before mg_cancel_init (mailgrab login, mailgrab stats, unit tests) nothing
 * is ever cancelled and mg_cancel_fd is -1, which poll(2) ignores.
 *
 * Owns: the signal thread, the eventfd and the hook table (process-wide).
 * Thread-safety: every function may be called from any thread, except init
 * and start (main's thread, once). Hooks run on the signal thread with the
 * hook table locked: a hook must be quick, must not block on I/O and must not
 * add or remove hooks; do not add or remove hooks while holding a lock that
 * a hook takes.
 */
#ifndef MAILGRAB_CANCEL_H
#define MAILGRAB_CANCEL_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "mailgrab/error.h"

/* Block the cancelling signals in the calling thread, ignore SIGPIPE (a
 * server closing first must not kill us) and create the eventfd. */
enum mg_code mg_cancel_init(struct mg_error *err);

/* Start the signal thread. Call after forking the analyzer. */
enum mg_code mg_cancel_start(struct mg_error *err);

/* Has the run been cancelled? */
bool mg_cancelled(void);

/* The signal that cancelled the run, 0 if none. */
int mg_cancel_signal(void);

/* Readable once the run is cancelled (never drained); -1 before init. */
int mg_cancel_fd(void);

/* Cancel as if sig had arrived (tests, and a caller that must stop all). */
void mg_cancel_now(int sig);

/* Fill err with the interruption ("interrupted by SIGTERM; ..."), return
 * MG_E_INTERRUPTED. */
enum mg_code mg_cancel_error(struct mg_error *err);

/* rc unchanged unless the run was cancelled: then mg_cancel_error. For a
 * failure that may only be the cancel showing through (a dead stream). */
enum mg_code mg_cancel_check(enum mg_code rc, struct mg_error *err);

/* Run fn(ctx) when the run is cancelled. A hook added after the cancel does
 * not run: check mg_cancelled after adding. Returns a handle >= 0 for
 * mg_cancel_hook_remove, or -1 when the table is full. */
int mg_cancel_hook_add(void (*fn)(void *ctx), void *ctx);

/* Forget a hook; once this returns it is not running and never will. */
void mg_cancel_hook_remove(int handle);

/* ms from now on the clock pthread_cond_timedwait uses (CLOCK_REALTIME). */
struct timespec mg_deadline(unsigned ms);

/* pthread_cond_timedwait for at most ms milliseconds (the condition uses
 * CLOCK_REALTIME, the default): a waiter that must notice a cancel looks
 * at mg_cancelled each time this returns. */
void mg_cancel_timedwait(pthread_cond_t *cv, pthread_mutex_t *mu, unsigned ms);

/* Sleep ms milliseconds unless cancelled first. false when cancelled. */
bool mg_cancel_sleep(unsigned ms);

/* Signals a child process must get back as defaults: the set blocked or
 * ignored here (for posix_spawnattr_setsigdefault). */
void mg_cancel_child_sigdefault(sigset_t *set);

#endif
