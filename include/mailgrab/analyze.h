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

#include <stddef.h>
#include <stdint.h>
#include <time.h>

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

#endif
