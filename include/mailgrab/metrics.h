/*
 * metrics.h - the --metrics file: a Prometheus text-format file for
 * node_exporter's textfile collector, rewritten whole (a temp name, then
 * rename) after each account of a run.
 *
 * Owns the metric names (documented in mailgrab(1) under METRICS), one
 * sample each per account, labelled account="NAME": when the last run of
 * the account ended and when it last succeeded, its duration, messages
 * fetched and failed, bytes fetched, and exit code; the figures are the
 * summary JSON's (backup.h), summed over the account's mailboxes. The last
 * success time of an account that failed this run is carried over from the
 * file as it was when the run began.
 *
 * Memory: struct mg_metrics is the caller's (mg_metrics_open/close); other
 * arguments are borrowed for the call. Not thread-safe; called from main's
 * thread.
 */
#ifndef MAILGRAB_METRICS_H
#define MAILGRAB_METRICS_H

#include <stddef.h>

#include "mailgrab/backup.h"
#include "mailgrab/error.h"

/* One account's run: its report, when it started and ended (Unix time). */
struct mg_metrics_run {
    const struct mg_report *rep;
    double started, ended;
};

struct mg_metrics;

/* Remember path, and the last success times in it now. */
enum mg_code mg_metrics_open(const char *path, struct mg_metrics **out, struct mg_error *err);
void mg_metrics_close(struct mg_metrics *m);

/* Replace the file with the metrics of runs[0..n), mode 0644 (the
 * collector reads it as a user of its own; it holds no secret). */
enum mg_code mg_metrics_write(struct mg_metrics *m, const struct mg_metrics_run *runs, size_t n,
                              struct mg_error *err);

#endif
