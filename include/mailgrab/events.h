/*
 * events.h - the --events stream: what a run does, as JSON Lines, for
 * schedulers and dashboards rather than people.
 *
 * Owns the event schema (version MG_EVENTS_SCHEMA, documented in mailgrab(1)
 * under EVENTS): one JSON object per line, each with "schema", "seq" (from
 * 1, one more per line), "time" (RFC 3339, UTC) and "event": run_start,
 * account_start, mailbox_start, progress (at most every
 * MG_EVENTS_PROGRESS_SECS, and once when a mailbox's download ends),
 * mailbox_end, account_end, warning, error, run_end. The end events carry
 * the very objects of the summary JSON (backup.h), so run_end's "summary"
 * equals the --summary-json document.
 *
 * A stream that cannot be written (a closed pipe, a full disk) is given up
 * with one warning on stderr; the run goes on. Memory: the stream and its
 * FILE are the caller's through mg_events_open/mg_events_close; every other
 * argument is borrowed for the call. Thread-safety: every function may be
 * called from any thread; lines never interleave and seq follows the lines.
 * A NULL stream does nothing, so callers need not check for --events.
 */
#ifndef MAILGRAB_EVENTS_H
#define MAILGRAB_EVENTS_H

#include <stddef.h>

#include "mailgrab/backup.h"
#include "mailgrab/error.h"
#include "mailgrab/pool.h"

#define MG_EVENTS_SCHEMA 1
#define MG_EVENTS_PROGRESS_SECS 2.0

struct mg_events;

/* path "-" is standard output; a file is created or truncated, mode 0600. */
enum mg_code mg_events_open(const char *path, struct mg_events **out, struct mg_error *err);
void mg_events_close(struct mg_events *ev);

/* shard: "I/N" or NULL when every account runs. */
void mg_events_run_start(struct mg_events *ev, const char *version, size_t accounts,
                         const char *shard);
void mg_events_account_start(struct mg_events *ev, const char *account, const char *server,
                             const char *user);
void mg_events_mailbox_start(struct mg_events *ev, const char *account, const char *mailbox);
/* pr->mailbox is the mailbox's UTF-8 name. Throttled unless pr->done. */
void mg_events_progress(struct mg_events *ev, const char *account, const struct mg_progress *pr);
void mg_events_mailbox_end(struct mg_events *ev, const char *account,
                           const struct mg_mailbox_report *r);
void mg_events_account_end(struct mg_events *ev, const struct mg_report *rep);
void mg_events_warning(struct mg_events *ev, const char *message);
/* account and mailbox may be NULL (a failure of the whole run). */
void mg_events_error(struct mg_events *ev, const char *account, const char *mailbox, int code,
                     const char *message);
void mg_events_run_end(struct mg_events *ev, const struct mg_report *reps, size_t n, int exit_code);

#endif
