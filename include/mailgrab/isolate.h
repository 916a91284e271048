/*
 * isolate.h - analysing a list of message files so that no message can take
 * the run down with it.
 *
 * The messages are analysed in a disposable worker process (fork, no exec)
 * that reports one framed result per message. If the worker dies - a crash,
 * an exceeded per-message time limit (alarm), the memory limit - the message it
 * was on is counted as unparseable, named in a warning, and a new worker
 * carries on with the next one. Counts already reported are never lost.
 *
 * Owns: nothing; the caller owns the paths, stopwords and stats.
 * Thread-safety: forks; call only from a single-threaded process (the analyzer
 * child or the stats command).
 */
#ifndef MAILGRAB_ISOLATE_H
#define MAILGRAB_ISOLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mailgrab/stats.h"
#include "mailgrab/wordcount.h"

#define MG_ISOLATE_MAX_READ (64 * 1024 * 1024) /* bytes of one message analysed */
#define MG_ISOLATE_TIMEOUT 10                  /* seconds per message */

typedef int (*mg_analyze_fn)(const char *msg, size_t len, uint64_t size, time_t fallback,
                             const struct mg_stopwords *sw, struct mg_stats *s);

/* One message's row (msgrow.h wire form), handed over once the message is
 * counted. Non-zero stops the analysis (as running out of memory does). */
typedef int (*mg_row_fn)(void *ctx, const char *row, size_t len);

struct mg_isolate_opts {
    const struct mg_stopwords *stopwords; /* NULL: no stopwords */
    unsigned timeout_secs;                /* 0: MG_ISOLATE_TIMEOUT */
    mg_analyze_fn analyze;                /* NULL: mg_analyze_full (tests substitute) */
    const char *const *me;                /* sent mail, see analyze.h */
    size_t nme;
    size_t strip;       /* bytes dropped from the front of each path in rows and the largest list */
    bool account_paths; /* instead: paths relative to the account (msgrow.h) */
    mg_row_fn row;      /* NULL: no per-message table */
    void *row_ctx;
};

/*
 * Count every file of paths[0..n) into out; sent[i] (sent may be NULL)
 * says paths[i] is in a mailbox with the \Sent role (analyze.h). Returns 0; -1 only when the worker
 * cannot be started at all (fork/pipe failure) or memory runs out, in which
 * case out holds the messages counted so far.
 */
int mg_isolate_analyze(const char *const *paths, const bool *sent, size_t n,
                       const struct mg_isolate_opts *o, struct mg_stats *out);

#endif
