/*
 * analyzer.h - the analyzer process used during a download.
 *
 * mg_analyzer_start forks a child process; call it early, before any thread,
 * TLS context or credential exists, so the child inherits nothing secret. The
 * child opens no sockets: it reads message paths from a socketpair (framed, see
 * ipc.h), analyses them in batches through disposable workers (batch.h), and
 * on FINISH sends the merged statistics back. A malformed frame is fatal for
 * the child; a crash on one message costs only that message.
 *
 * Owns: struct mg_analyzer (opaque) owns the socket and the child; destroy
 * kills and reaps a child that is still running and accepts NULL. Statistics
 * returned by finish belong to the caller (mg_stats_finish).
 * Thread-safety: mg_analyzer_feed may be called from several threads at once
 * (it serialises writes); start, finish and destroy from one thread only.
 */
#ifndef MAILGRAB_ANALYZER_H
#define MAILGRAB_ANALYZER_H

#include "mailgrab/error.h"
#include "mailgrab/stats.h"

struct mg_analyzer;

struct mg_analyzer_opts {
    const char *stopwords_path; /* NULL: the built-in list */
    const char *tz;             /* NULL: the TZ environment variable */
    unsigned timeout_secs;      /* per message; 0: MG_BATCH_TIMEOUT */
};

enum mg_code mg_analyzer_start(const struct mg_analyzer_opts *o, struct mg_analyzer **out,
                               struct mg_error *err);

/* Queue one committed message file (absolute or relative to the cwd at start). */
enum mg_code mg_analyzer_feed(struct mg_analyzer *a, const char *path, struct mg_error *err);

/* No more paths: wait for the child and merge its counts into *stats (initialised by caller). */
enum mg_code mg_analyzer_finish(struct mg_analyzer *a, struct mg_stats *stats,
                                struct mg_error *err);

void mg_analyzer_destroy(struct mg_analyzer *a);

#endif
