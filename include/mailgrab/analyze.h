/*
 * analyze.h - the message-analysis entry point: one message's bytes in, its
 * contribution to the statistics out. Pure: no I/O, no global state besides
 * the process time zone read by localtime_r.
 *
 * A message counts as unparseable when its header block cannot be read, is
 * larger than the limit, or declares an invalid multipart boundary. Its sender
 * is then "(none)" and its time the fallback (the file's mtime).
 *
 * Owns: nothing; the caller owns the stats and stopwords.
 * Thread-safety: thread-safe for distinct stats objects.
 */
#ifndef MAILGRAB_ANALYZE_H
#define MAILGRAB_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mailgrab/buf.h"
#include "mailgrab/stats.h"
#include "mailgrab/wordcount.h"

/*
 * Count msg[0..len) into s. size is the message's size on disk (counted as its
 * bytes; it may exceed len when a huge file was read only in part); fallback is
 * the time used when the Date header is missing or unparseable. sw may be NULL.
 * Returns 0, or -1 when memory ran out (s may then hold part of the message).
 */
int mg_analyze_message(const char *msg, size_t len, uint64_t size, time_t fallback,
                       const struct mg_stopwords *sw, struct mg_stats *s);

/* Count a message that could not be analysed at all (crash, timeout, unreadable). */
int mg_analyze_count_failed(struct mg_stats *s, uint64_t size, time_t fallback);

/* What the per-message table and the sent-mail aggregates need beyond the bytes. */
struct mg_analyze_opts {
    const struct mg_stopwords *stopwords; /* NULL: none */
    const char *const *me;                /* sent mail: From is one of these (lowercase) */
    size_t nme;
};

struct mg_analyze_msg {
    const char *path; /* as named in the table and the largest list (NULL: neither) */
    uint64_t size;
    time_t fallback;
    bool sent; /* stored in a mailbox with the \Sent role: sent mail, whoever From is */
};

/*
 * mg_analyze_message with the rest: recipients of sent mail, attachments,
 * List-Id, the largest list, and, when row is not NULL, the message's row
 * (msgrow.h wire form) appended to row.
 */
int mg_analyze_full(const char *msg, size_t len, const struct mg_analyze_msg *m,
                    const struct mg_analyze_opts *o, struct mg_stats *s, struct mg_buf *row);
/* mg_analyze_count_failed, with the largest list and the row. */
int mg_analyze_failed_full(const struct mg_analyze_msg *m, struct mg_stats *s, struct mg_buf *row);

#endif
