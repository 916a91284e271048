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

/* argv[0] is "stats". Returns a process exit code (enum mg_code). */
int mg_stats_main(int argc, char **argv);

#endif
