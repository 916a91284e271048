/*
 * csv.h - the statistics as RFC 4180 CSV, and as aligned terminal tables.
 *
 * CSV: header "stat,key,value"; stat is sender, sender_domain, keyword, hour,
 * weekday or total. Rows of sender, sender_domain and keyword are ordered by
 * value descending, then key (bytewise); all 24 hours (0..23) and all 7
 * weekdays (Mon..Sun) always appear in natural order; totals are messages,
 * bytes, unparseable, date_fallback. Lines end in CRLF. A cell starting with
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

/* top limits sender/domain/keyword rows (0 = all). 0, or -1 on a write error. */
int mg_csv_write(FILE *f, const struct mg_stats *s, size_t top);

/* Human tables: top senders and keywords, hour histogram, weekdays, totals. */
int mg_stats_tables_write(FILE *f, const struct mg_stats *s, size_t top_senders,
                          size_t top_keywords);

#endif
