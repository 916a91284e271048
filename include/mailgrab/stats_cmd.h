/*
 * stats_cmd.h - the `mailgrab stats` subcommand: statistics over a directory
 * of .eml files or a Maildir, without any network.
 *
 *   mailgrab stats DIR [--csv FILE|-] [--top N] [--tz ZONE] [--jobs N]
 *                      [--stopwords FILE]
 *
 * Files are found recursively (names starting with '.' are skipped, as are
 * symlinks and a Maildir's tmp/): every *.eml, and every file in a cur/ or
 * new/ directory. They are split across --jobs forked processes (default: the
 * number of CPUs) and the counts merged.
 *
 * Owns: nothing beyond the call. Thread-safety: forks and sets TZ; call from
 * main() before any thread exists.
 */
#ifndef MAILGRAB_STATS_CMD_H
#define MAILGRAB_STATS_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "mailgrab/error.h"
#include "mailgrab/settings.h"
#include "mailgrab/stats.h"

/* argv[0] is "stats". Returns a process exit code (enum mg_code). */
/* What --csv, --top, --tz and --stopwords say, for the statistics of a
 * download and for mailgrab stats alike (NULL / 0: unset). */
struct mg_stats_settings {
    const char *csv;       /* FILE, or "-" for standard output */
    unsigned long top;     /* rows per table */
    const char *tz;        /* hours and weekdays in this zone */
    const char *stopwords; /* FILE instead of the built-in list */
};

/* Take setting s into st when it is one of those four; false otherwise. */
bool mg_stats_setting(struct mg_stats_settings *st, const struct mg_setting *s,
                      const struct mg_value *v);

int mg_stats_main(int argc, char **argv);

/*
 * Show statistics the way the user asked: with csv NULL, the terminal tables
 * on stdout; with csv a path (or "-" for stdout), the CSV, plus the tables too
 * when tables is true. top 0 means the defaults (10 senders and 20 keywords in
 * the tables, every row in the CSV). Used by `stats` and after a download.
 */
enum mg_code mg_stats_output(const struct mg_stats *s, const char *csv, bool tables, size_t top,
                             struct mg_error *err);

#endif
