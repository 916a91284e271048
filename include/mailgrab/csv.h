/*
 * csv.h - the statistics as RFC 4180 CSV, and as aligned terminal tables.
 *
 * CSV: header "stat,key,value"; stat is, in this order: sender,
 * sender_domain, keyword, hour, weekday, hour_weekday ("Mon 09"), month
 * ("YYYY-MM", every month with mail, in order), recipient (addresses written
 * to from sent mail), attachment_type (count), attachment_type_bytes,
 * list (List-Id), largest (path, bytes) and total. Rows of the keyed tables
 * are ordered by value descending, then key (bytewise); all 24 hours (0..23),
 * all 7 weekdays (Mon..Sun) and all 168 hour_weekday cells always appear in
 * natural order; totals are messages, bytes, unparseable, date_fallback,
 * attachments, attachment_bytes, sent. Lines end in CRLF. A cell starting with
 * '=', '+', '-' or '@' gets a leading "'" so spreadsheets do not run it as a
 * formula; cells with a comma, quote, CR or LF are quoted.
 *
 * Owns: nothing. Thread-safety: thread-safe for distinct FILE streams.
 */
#ifndef MAILGRAB_CSV_H
#define MAILGRAB_CSV_H

#include <stddef.h>
#include <stdio.h>

#include "mailgrab/buf.h"
#include "mailgrab/stats.h"

extern const char *const mg_weekday_names[7];

/* Append one CSV cell (quoted and neutralised as needed) to out. */
int mg_csv_cell(struct mg_buf *out, const char *s, size_t n);

/* Every row of the CSV, in order, to fn (the JSON and CSV share it). top
 * limits the keyed tables except month (0 = all). Stops at fn's first
 * non-zero return and returns it. */
typedef int (*mg_stats_row_fn)(void *ctx, const char *stat, const char *key, size_t keylen,
                               uint64_t value);
int mg_stats_rows(const struct mg_stats *s, size_t top, mg_stats_row_fn fn, void *ctx);

/* top limits the keyed tables (0 = all). 0, or -1 on a write error. */
int mg_csv_write(FILE *f, const struct mg_stats *s, size_t top);

/* Human tables: top senders and keywords, hour histogram, weekdays, totals. */
int mg_stats_tables_write(FILE *f, const struct mg_stats *s, size_t top_senders,
                          size_t top_keywords);

#endif
