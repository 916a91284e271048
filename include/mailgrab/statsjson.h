/*
 * statsjson.h - the statistics as one JSON document (--json).
 *
 *   {"format":"mailgrab-stats","version":1,
 *    "stats":{"sender":[{"key":"a@example.com","value":3},...], ...,
 *             "total":[{"key":"messages","value":N},...]}}
 *
 * Each member of "stats" is one stat of the long CSV (csv.h) with its rows in
 * the same order and with the same numbers, so either form can be checked
 * against the other. Strings are valid UTF-8 (invalid bytes become U+FFFD).
 *
 * Owns: nothing. Thread-safety: thread-safe for distinct FILE streams.
 */
#ifndef MAILGRAB_STATSJSON_H
#define MAILGRAB_STATSJSON_H

#include <stddef.h>
#include <stdio.h>

#include "mailgrab/buf.h"
#include "mailgrab/stats.h"

/* Append s[0..n) as a JSON string (with quotes) to out. */
int mg_json_string(struct mg_buf *out, const char *s, size_t n);

/* top as in mg_csv_write. 0, or -1 on a write error. */
int mg_stats_json_write(FILE *f, const struct mg_stats *s, size_t top);

#endif
