/*
 * budget.h - how much a run may fetch before it stops and says "come back
 * later" (exit 11): an account's daily limit, counted in a ledger file in
 * its output directory, and the run's --max-bytes and --max-time.
 *
 * The ledger (OUTPUT/.mailgrab-ledger) holds one line per grant, "f TIME
 * BYTES" (UTC seconds, bytes granted), and at most one "w TIME BYTES"
 * (a run stopped at TIME wanting a message of BYTES). Bytes are granted
 * from RFC822.SIZE before they are fetched, and the grant is appended and
 * flushed to disk first: a run killed at any point cannot forget bytes the
 * server may have sent (it may count some that were not: conservative).
 * What counts is the sum of grants in the last 24 hours (rolling). A line
 * that does not parse (a torn last line after a crash) is skipped; a time
 * in the future (the clock went back) counts as now, so it stays in the
 * window for 24 hours at most. The file is rewritten atomically with only
 * the lines still in the window when a budget is opened.
 *
 * Grants go in fetch order; the first message that does not fit stops the
 * budget (nothing after it is granted, even if smaller: the next run starts
 * there). A message bigger than the whole limit is granted alone when the
 * window (or the run, for --max-bytes) has spent nothing yet, so it never
 * blocks the queue forever.
 *
 * Pure part: mg_ledger_* (no I/O). I/O part: mg_budget (one per account
 * run). Memory: the ledger owns its array; mg_budget is the caller's
 * (create/destroy); mg_run_limits is the caller's and borrowed by budgets.
 * Thread-safety: mg_budget_take and mg_budget_stopped may be called from
 * several workers at once (an internal mutex guards the budget and the run
 * limits it charges); the rest from one thread.
 */
#ifndef MAILGRAB_BUDGET_H
#define MAILGRAB_BUDGET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/error.h"

#define MG_LEDGER_NAME ".mailgrab-ledger"
#define MG_LEDGER_WINDOW 86400   /* seconds: the rolling day */
#define MG_LEDGER_MAX (1u << 20) /* bytes of ledger read at most */

struct mg_ledger_entry {
    int64_t t;
    uint64_t bytes;
};

struct mg_ledger {
    struct mg_ledger_entry *v; /* sorted by time */
    size_t n, cap;
    int64_t wait_t; /* a run stopped then (0: none recorded) */
    uint64_t wait;  /* wanting this many bytes */
};

/* Read len bytes of ledger text into l (empty first), as of now: entries
 * older than the window dropped, future ones moved to now. *bad counts the
 * lines skipped. Returns 0, or -1 when out of memory. */
int mg_ledger_parse(const char *buf, size_t len, int64_t now, struct mg_ledger *l, size_t *bad);
int mg_ledger_add(struct mg_ledger *l, int64_t t, uint64_t bytes);
/* Bytes granted in the window ending at now. */
uint64_t mg_ledger_used(const struct mg_ledger *l, int64_t now);
/* The earliest time (>= now) at which `need` more bytes fit under limit
 * (need over the limit: when the window is empty). */
int64_t mg_ledger_free_at(const struct mg_ledger *l, uint64_t limit, uint64_t need, int64_t now);
/* The ledger as text (the lines in l, then the wait line if any) into buf;
 * returns the length, or cap when it does not fit. */
size_t mg_ledger_format(const struct mg_ledger *l, char *buf, size_t cap);
void mg_ledger_finish(struct mg_ledger *l);

/* Parse a size: digits with an optional K, M or G (powers of 1024, any
 * case, an optional B after it); "none" is 0. Returns 0 or -1. */
int mg_size_parse(const char *s, uint64_t *out);
/* Parse a duration: digits with s, m, h or d (seconds without). */
int mg_duration_parse(const char *s, uint64_t *secs);

/* The run's limits, shared by every account of the run. */
struct mg_run_limits {
    uint64_t max_bytes; /* 0: none */
    double deadline;    /* CLOCK_MONOTONIC seconds; 0: none */
    uint64_t max_time;  /* seconds, for messages */
    uint64_t spent;     /* granted so far in this run, under a budget's mutex */
};

/* Start the run's clock: max_time seconds from now (0: no deadline). */
void mg_run_limits_init(struct mg_run_limits *r, uint64_t max_bytes, uint64_t max_time);

struct mg_budget;

/* An account's budget: daily_limit bytes per rolling day (0: none; then no
 * ledger is read or written) in dir's ledger, and the run's limits (may be
 * NULL). MG_E_IO when the ledger cannot be read or rewritten. */
enum mg_code mg_budget_create(const char *dir, uint64_t daily_limit, struct mg_run_limits *run,
                              struct mg_budget **out, struct mg_error *err);
/* Accepts NULL. Records what a stopped daily budget waits for. */
void mg_budget_destroy(struct mg_budget *b);

/* Before anything is fetched: MG_E_LIMIT (with the one line to show) when
 * this run cannot fetch anything (the day's bytes are spent, or the message
 * a run stopped at does not fit yet, or the run's limits are reached). */
enum mg_code mg_budget_check(struct mg_budget *b, struct mg_error *err);

/* Grant the longest prefix of sizes[0..n) that fits, recording it in the
 * ledger (flushed) before returning; *granted says how many. When fewer
 * than n, the budget is stopped. MG_E_IO if the ledger cannot be written
 * (nothing granted). A NULL budget grants everything. */
enum mg_code mg_budget_take(struct mg_budget *b, const uint32_t *sizes, size_t n, size_t *granted,
                            struct mg_error *err);
bool mg_budget_stopped(struct mg_budget *b);
/* Why it stopped, one line a user can act on (MG_E_LIMIT in err). */
enum mg_code mg_budget_error(struct mg_budget *b, struct mg_error *err);

#endif
