/*
 * datetime.h - parsing the Date header of real-world mail into a UTC time_t.
 *
 * Accepts RFC 5322 dates and their obsolete and broken relatives: optional or
 * misplaced day names, 2- and 3-digit years, missing seconds, named zones
 * (UT, GMT, UTC, EST/EDT, CST/CDT, MST/MDT, PST/PDT, military letters), a
 * missing zone, comments, folding whitespace, and asctime order. Ranges are
 * validated (no 25:61, no 31 Feb).
 *
 * Owns: nothing; pure functions on pointer + length.
 * Thread-safety: thread-safe.
 */
#ifndef MAILGRAB_DATETIME_H
#define MAILGRAB_DATETIME_H

#include <stddef.h>
#include <time.h>

/* 0 and *out set on success, -1 if no valid date could be read. */
int mg_date_parse(const char *s, size_t n, time_t *out);

/* Days since 1970-01-01 for a proleptic Gregorian date (month 1..12). */
long long mg_days_from_civil(long long y, unsigned m, unsigned d);

#endif
