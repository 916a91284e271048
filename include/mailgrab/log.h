/*
 * log.h - what mailgrab says on stderr.
 *
 * Owns the verbosity level and the single progress line. Messages are one line
 * each, prefixed "mailgrab: ". Nothing that reaches this module may contain a
 * secret: callers pass user names and host names, never passwords or tokens.
 *
 * Thread-safety: all functions may be called from any thread; lines from
 * different threads never interleave.
 */
#ifndef MAILGRAB_LOG_H
#define MAILGRAB_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mg_verbosity {
    MG_QUIET = 0,   /* errors only */
    MG_NORMAL = 1,  /* errors and warnings */
    MG_VERBOSE = 2, /* also what happens, step by step */
    MG_DEBUG = 3,   /* also per-batch detail */
};

void mg_log_set_level(enum mg_verbosity level);
enum mg_verbosity mg_log_level(void);

/* Every warning, shown or not, is also handed (one line, without the
 * "mailgrab: warning: " prefix) to fn, e.g. for --events. fn may be called
 * from any thread, at once; set it before threads start, NULL to stop. */
typedef void (*mg_log_sink)(void *ctx, const char *line);
void mg_log_set_warn_sink(mg_log_sink fn, void *ctx);

void mg_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mg_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mg_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mg_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Progress line: drawn only when enabled (stderr is a terminal and not quiet).
 * mg_progress_show redraws it in place; mg_progress_end clears it. */
/* bytes for people, in decimal units as every figure mailgrab prints:
 * "512 B", "12.3 kB", "4.5 MB", "1.25 GB". */
void mg_human_bytes(uint64_t b, char *buf, size_t cap);

void mg_progress_enable(bool on);
bool mg_progress_enabled(void);
void mg_progress_show(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mg_progress_end(void);

#endif
