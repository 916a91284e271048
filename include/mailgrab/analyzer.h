/*
 * analyzer.h - the analyzer process used during a download.
 *
 * mg_analyzer_start forks a child process; call it early, before any thread,
 * TLS context or credential exists, so the child inherits nothing secret. The
 * child opens no sockets: it reads message paths from a socketpair (framed, see
 * ipc.h), analyses them in groups through disposable workers (isolate.h), and
 * on FINISH sends the merged statistics back. A malformed frame is fatal for
 * the child; a crash on one message costs only that message.
 *
 * Signals: the child dies with mailgrab (parent-death signal SIGKILL), ignores
 * SIGINT and SIGHUP (mailgrab decides when the run ends) and takes SIGTERM as
 * "wrap up": it analyses the paths in hand, skips the ones after, and sends
 * its counts on FINISH, saying how many it skipped.
 *
 * The analyzer never slows or freezes a backup: mg_analyzer_feed queues the
 * path (bounded, 4 MB) and writes what the socket takes without waiting; a
 * path that does not fit is dropped and counted. mg_analyzer_finish waits for
 * the counts as long as it takes, but once the run is cancelled (cancel.h) it
 * sends the child SIGTERM and gives it 2 s. Paths left out are reported in one
 * warning.
 *
 * Owns: struct mg_analyzer (opaque) owns the socket, the queue and the child;
 * destroy kills and reaps a child that is still running and accepts NULL.
 * Statistics returned by finish belong to the caller (mg_stats_finish).
 * Thread-safety: mg_analyzer_feed may be called from several threads at once
 * (a short lock, no blocking I/O); start, finish and destroy from one thread
 * only.
 */
#ifndef MAILGRAB_ANALYZER_H
#define MAILGRAB_ANALYZER_H

#include <sys/types.h>

#include "mailgrab/error.h"
#include "mailgrab/stats.h"

struct mg_analyzer;

struct mg_analyzer_opts {
    const char *stopwords_path; /* NULL: the built-in list */
    const char *tz;             /* NULL: the TZ environment variable */
    unsigned timeout_secs;      /* per message; 0: MG_BATCH_TIMEOUT */
    const char *const *me;      /* sent mail: From is one of these (lowercase) */
    size_t nme;
    /* The per-message table (msgrow.h), already open with its header written
     * (stdout for standard output), or -1: the child writes each row as its
     * message is analysed. Paths in it and in the largest list are relative to
     * the account's output directory (msgrow.h). */
    int rows_fd;
};

enum mg_code mg_analyzer_start(const struct mg_analyzer_opts *o, struct mg_analyzer **out,
                               struct mg_error *err);

/* Queue one committed message file (absolute or relative to the cwd at
 * start); sent: it is in a mailbox with the \Sent role (analyze.h). Never
 * waits for the analyzer; fails only once it is gone. */
enum mg_code mg_analyzer_feed(struct mg_analyzer *a, const char *path, bool sent,
                              struct mg_error *err);

/* No more paths: wait for the child and merge its counts into *stats
 * (initialised by caller). The per-message table is complete once this
 * returns MG_OK. */
enum mg_code mg_analyzer_finish(struct mg_analyzer *a, struct mg_stats *stats,
                                struct mg_error *err);

void mg_analyzer_destroy(struct mg_analyzer *a);

/* The child's process id (tests stop or signal it). */
pid_t mg_analyzer_pid(const struct mg_analyzer *a);

#endif
