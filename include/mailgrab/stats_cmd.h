/*
 * stats_cmd.h - the `mailgrab stats` subcommand: statistics over a directory
 * of .eml files or a Maildir, without any network.
 *
 *   mailgrab stats DIR [--csv FILE|-] [--messages-csv FILE|-] [--json FILE|-]
 *                      [--html FILE|-] [--me ADDRESS]... [--top N] [--tz ZONE]
 *                      [--jobs N] [--stopwords FILE]
 *
 * Files are found recursively (names starting with '.' are skipped, as are
 * symlinks and a Maildir's tmp/): every *.eml, and every file in a cur/ or
 * new/ directory; a file linked under several names (a Gmail backup links a
 * message into each label's folder) counts once, under the first name in
 * byte order. They are split across --jobs forked processes (default: the
 * number of CPUs) and the counts merged; the jobs' per-message rows are
 * written as they arrive (their order is not defined: sort by path).
 *
 * Owns: nothing beyond the call. Thread-safety: forks and sets TZ; call from
 * main() before any thread exists.
 */
#ifndef MAILGRAB_STATS_CMD_H
#define MAILGRAB_STATS_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mailgrab/error.h"
#include "mailgrab/settings.h"
#include "mailgrab/stats.h"

#define MG_STATS_ME_MAX 16

/* What --csv, --messages-csv, --json, --html, --me, --top, --tz and
 * --stopwords say, for the statistics of a download and for mailgrab stats
 * alike (NULL / 0: unset). Strings borrow from argv. */
struct mg_stats_settings {
    const char *csv;       /* FILE, or "-" for standard output */
    unsigned long top;     /* rows per table */
    const char *tz;        /* hours and weekdays in this zone */
    const char *stopwords; /* FILE instead of the built-in list */
    const char *messages_csv;
    const char *json;
    const char *html;
    const char *me[MG_STATS_ME_MAX]; /* as given; compared lowercased */
    size_t nme;
};

/* Take setting s into st when it is one of those; false otherwise. */
bool mg_stats_setting(struct mg_stats_settings *st, const struct mg_setting *s,
                      const struct mg_value *v);

/* Whether st asks for any statistics output file. */
bool mg_stats_wanted(const struct mg_stats_settings *st);

/* Usage errors in st (two outputs on standard output, too many --me): MG_E_USAGE. */
enum mg_code mg_stats_settings_check(const struct mg_stats_settings *st, struct mg_error *err);

/* argv[0] is "stats". Returns a process exit code (enum mg_code). */
int mg_stats_main(int argc, char **argv);

/*
 * Show statistics the way the user asked: with no output file (--csv, --json,
 * --html, --messages-csv) set, the terminal tables on stdout; else each file
 * asked for (a path, or "-" for stdout), plus the tables too when tables is
 * true (on stderr when an output goes to stdout). top 0 means the defaults
 * (10 senders and 20 keywords in the tables, every row in the CSV and JSON).
 * Used by `stats` and after a download; --messages-csv is written by whoever
 * gathers the rows, not here.
 */
enum mg_code mg_stats_output(const struct mg_stats *s, const struct mg_stats_settings *st,
                             bool tables, struct mg_error *err);

/* st's --me addresses, lowercased, into out[0..st->nme) (the caller frees
 * each). 0, or -1 when memory ran out. */
int mg_stats_me_lower(const struct mg_stats_settings *st, char **out);

/* Open path ("-": stdout) for the per-message table and write its header. */
enum mg_code mg_stats_rows_open(const char *path, FILE **f, struct mg_error *err);

#endif
