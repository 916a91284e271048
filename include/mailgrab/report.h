/*
 * report.h - the statistics as one self-contained HTML page (--html).
 *
 * The page needs nothing else: inline CSS and inline SVG charts, no script,
 * no font, image or style from anywhere (a Content-Security-Policy of
 * default-src 'none' says so to the browser too), so it reads the same with
 * JavaScript off and can be mailed or archived as one file. Charts (each an
 * <svg class="chart" id="chart-NAME"> with a <title>): messages per month,
 * hour of day x weekday heat map, top senders, top sender domains, attachment
 * bytes by type; then tables: totals, largest messages, mailing lists,
 * recipients. Text from mail is escaped; invalid UTF-8 becomes U+FFFD.
 *
 * Owns: nothing. Thread-safety: thread-safe for distinct FILE streams.
 */
#ifndef MAILGRAB_REPORT_H
#define MAILGRAB_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "mailgrab/stats.h"

/* top: rows per chart and table (0: 10). 0, or -1 on a write error. */
int mg_report_html_write(FILE *f, const struct mg_stats *s, size_t top, const char *tz);

#endif
