/*
 * plan.h - the list of messages to fetch and how it is shared among workers.
 *
 * Pure logic, no I/O. A mailbox listing becomes an mg_msglist (UID + size,
 * sorted by UID). mg_plan splits it into contiguous chunks of about equal
 * bytes, one per worker: a chunk is one connection's share of the mailbox,
 * so --chunks N means N chunks fetched over N connections. It hands out
 * the messages of one FETCH at a time: a worker takes from the front of its
 * own chunk; when that is empty it steals the back half of the chunk
 * with the most bytes left, so no worker idles while another has a long tail.
 * Messages whose fetch failed are re-queued, ahead of new work:
 *
 * - refused (the server answered, without the message): mg_plan_requeue
 *   spends one of max_attempts;
 * - cut (the connection ended before the answer): what arrived whole is the
 *   caller's to keep, the rest comes back free (mg_plan_return). The message
 *   that was arriving when the connection ended is a suspect
 *   (mg_plan_suspect): from then on it is handed out alone, before anything
 *   else, for the caller to fetch first thing on a new session. Cut again
 *   there before it arrived whole is a strike (mg_plan_strike); at
 *   max_strikes the message is given up: the server cannot send it whole
 *   within one session's life.
 *
 * How many messages and bytes a worker asks for at once is an mg_plan_size:
 * doubled after a fetch that succeeded, halved after a cut.
 *
 * Memory: mg_msglist owns its array; mg_plan owns its chunk, retry, order
 * and per-message arrays and borrows the msglist, which must outlive it.
 * Thread-safety: none; the worker pool serialises calls with its own mutex.
 */
#ifndef MAILGRAB_PLAN_H
#define MAILGRAB_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mg_msg {
    uint32_t uid;
    uint32_t size; /* RFC822.SIZE as listed; used for balancing and progress */
};

struct mg_msglist {
    struct mg_msg *v;
    size_t n;
    size_t cap;
};

int mg_msglist_push(struct mg_msglist *l, uint32_t uid, uint32_t size);
/* Sort by UID and drop duplicates (a server may repeat a FETCH response). */
void mg_msglist_sort(struct mg_msglist *l);
/* Keep only the messages for which keep(uid, ctx) is true, in order. */
void mg_msglist_filter(struct mg_msglist *l, bool (*keep)(uint32_t uid, void *ctx), void *ctx);
void mg_msglist_truncate(struct mg_msglist *l, size_t n);
uint64_t mg_msglist_bytes(const struct mg_msglist *l);
void mg_msglist_finish(struct mg_msglist *l);

/*
 * Write UIDs (sorted ascending) as an IMAP sequence set ("1:4,9,12:13") into
 * buf. Returns how many UIDs were written; stops before buf would overflow.
 */
size_t mg_uidset_format(const uint32_t *uids, size_t n, char *buf, size_t cap);

struct mg_chunk {
    size_t lo, hi; /* indices into order, [lo, hi) not yet handed out */
    uint64_t bytes;
};

struct mg_plan {
    const struct mg_msglist *msgs;
    struct mg_chunk *chunks;
    size_t nchunks;
    size_t *retry; /* indices waiting for another attempt */
    size_t nretry;
    uint8_t *attempts; /* per message: refusals */
    uint8_t *strikes;  /* per message: cuts while it arrived alone on a new session */
    bool *suspect;     /* per message: it was arriving when a connection ended */
    size_t *order;     /* chunks are ranges of this permutation of the msglist */
    size_t nsuspect;   /* suspects in retry */
    unsigned max_attempts;
    unsigned max_strikes; /* MG_PLAN_STRIKES unless the caller changes it */
};

#define MG_PLAN_STRIKES 3

/* Split msgs into nchunks byte-balanced contiguous chunks (nchunks >= 1). */
int mg_plan_init(struct mg_plan *p, const struct mg_msglist *msgs, size_t nchunks,
                 unsigned max_attempts);
void mg_plan_finish(struct mg_plan *p);

/*
 * Hand worker w (< nchunks) up to max_n messages and about max_bytes (always
 * at least one message when any is left). Indices go to out; returns count,
 * 0 when nothing is left anywhere. A suspect waiting for another try comes
 * first and alone; then other retries; then new work.
 */
size_t mg_plan_take(struct mg_plan *p, size_t w, size_t max_n, uint64_t max_bytes, size_t *out);

/* Hand worker w, alone, the biggest message of at least min_size bytes
 * still in its own chunk: what a new session should start with, while it
 * has its whole life ahead. Returns 1, or 0 when there is none. */
size_t mg_plan_take_big(struct mg_plan *p, size_t w, uint32_t min_size, size_t *out);

/* Put message idx back for another try. Returns false when it has used all
 * its attempts (the caller counts it as failed). */
bool mg_plan_requeue(struct mg_plan *p, size_t idx);

/* Put message idx back without spending an attempt (it was never sent, or
 * the connection ended before the server answered). */
void mg_plan_return(struct mg_plan *p, size_t idx);

/* Put message idx back as a suspect: it was arriving when the connection
 * ended. It stays one for the rest of the plan. */
void mg_plan_suspect(struct mg_plan *p, size_t idx);
bool mg_plan_is_suspect(const struct mg_plan *p, size_t idx);

/* Message idx, fetched alone first thing on a new session, was cut before
 * it arrived whole. Puts it back as a suspect and returns true, or returns
 * false when this was its max_strikes-th strike (the caller counts it as
 * failed). */
bool mg_plan_strike(struct mg_plan *p, size_t idx);
unsigned mg_plan_strikes(const struct mg_plan *p, size_t idx);

/* Messages not yet handed out. */
size_t mg_plan_pending(const struct mg_plan *p);

/* How much a worker asks for in one fetch: starts at first_*, doubles after
 * a fetch that succeeded, up to max_*; halves after a cut, down to one
 * message and MG_PLAN_MIN_BYTES. */
struct mg_plan_size {
    size_t msgs, max_msgs;
    uint64_t bytes, max_bytes;
};

#define MG_PLAN_MIN_BYTES 65536

void mg_plan_size_init(struct mg_plan_size *s, size_t first_msgs, uint64_t first_bytes,
                       size_t max_msgs, uint64_t max_bytes);
void mg_plan_size_grow(struct mg_plan_size *s);
void mg_plan_size_halve(struct mg_plan_size *s);

#endif
