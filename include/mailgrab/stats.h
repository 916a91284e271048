/*
 * stats.h - the statistics tables of an analysis run, and their wire form.
 *
 * Tables: senders (count, bytes, display names seen with their counts), sender
 * domains, keywords (messages containing the word), 24 hours, 7 weekdays
 * (index 0 = Monday), hour x weekday, months (YYYY-MM), recipients of sent
 * mail, attachment MIME types (count, bytes), mailing lists (List-Id), the
 * largest messages (the MG_STATS_LARGEST biggest, by path) and totals. Every
 * counter is a sum, and the largest list keeps the biggest of any union, so
 * tables from any split of the messages merge exactly (worker processes,
 * --jobs).
 *
 * The wire form is a sequence of self-contained entries, so an encoding can be
 * cut into chunks at entry boundaries and each chunk decoded (merged) alone.
 * Decoding is bounded and rejects malformed input without partial damage to
 * memory safety (counts already merged stay merged).
 *
 * Owns: struct mg_stats owns its tables; init/finish (finish accepts zeroed).
 * Thread-safety: a struct mg_stats belongs to one thread at a time.
 */
#ifndef MAILGRAB_STATS_H
#define MAILGRAB_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mailgrab/strmap.h"

#define MG_STATS_NONE "(none)"
#define MG_STATS_NAME_MAX 256 /* display names are cut to this many bytes */
#define MG_STATS_KEY_MAX 4096
#define MG_STATS_LARGEST 100 /* largest messages kept */

struct mg_stats_large {
    uint64_t size;
    char *path; /* heap */
};

struct mg_stats {
    struct mg_strmap senders; /* entry: count, bytes, sub = display name -> count */
    struct mg_strmap domains;
    struct mg_strmap keywords;
    uint64_t hours[24];
    uint64_t weekdays[7];
    uint64_t messages;
    uint64_t bytes;
    uint64_t unparseable;
    uint64_t date_fallback;
    struct mg_strmap months;     /* "YYYY-MM" -> count */
    struct mg_strmap recipients; /* addr -> messages sent to it (sent mail only) */
    struct mg_strmap att_types;  /* MIME type -> count, bytes */
    struct mg_strmap lists;      /* List-Id -> count */
    uint64_t hour_wday[7][24];
    uint64_t attachments, attachment_bytes;
    uint64_t sent;                                   /* messages counted as sent mail */
    struct mg_stats_large largest[MG_STATS_LARGEST]; /* size descending, then path */
    size_t nlargest;
};

void mg_stats_init(struct mg_stats *s);
void mg_stats_finish(struct mg_stats *s);

/* Count one message sent by addr (NULL = none) with an optional display name. */
int mg_stats_add_sender(struct mg_stats *s, const char *addr, size_t addrlen, const char *name,
                        size_t namelen, uint64_t bytes);
int mg_stats_add_domain(struct mg_stats *s, const char *dom, size_t n);
int mg_stats_add_keyword(struct mg_stats *s, const char *w, size_t n, uint64_t count);
/* Hour, weekday and month of t in the process time zone (TZ). */
void mg_stats_add_time(struct mg_stats *s, time_t t);
/* Count key in m (months, recipients, att_types, lists) with bytes. */
int mg_stats_add_key(struct mg_strmap *m, const char *key, size_t n, uint64_t count,
                     uint64_t bytes);
/* Offer one message to the largest list. */
int mg_stats_add_largest(struct mg_stats *s, const char *path, size_t n, uint64_t size);

int mg_stats_merge(struct mg_stats *dst, const struct mg_stats *src);

/* The totals, named as in the CSV: messages, bytes, unparseable,
 * date_fallback, attachments, attachment_bytes, sent. */
#define MG_STATS_TOTALS 7
extern const char *const mg_stats_total_names[MG_STATS_TOTALS];
void mg_stats_totals(const struct mg_stats *s, uint64_t v[MG_STATS_TOTALS]);

/* The display name seen most often for a sender entry (ties: smallest), or NULL. */
const char *mg_stats_top_name(const struct mg_strmap_entry *sender);

typedef int (*mg_emit_fn)(void *ctx, const char *data, size_t len);
/* Encode s, handing chunks of at most about chunk bytes to emit. */
int mg_stats_encode(const struct mg_stats *s, size_t chunk, mg_emit_fn emit, void *ctx);
/* Merge an encoded chunk into s. -1 on malformed input or OOM. */
int mg_stats_decode(struct mg_stats *s, const char *data, size_t len);
/* Check an encoded chunk without adding it anywhere: 0 when mg_stats_decode
 * would take all of it (memory permitting), with the messages it counts. */
int mg_stats_check(const char *data, size_t len, uint64_t *messages);

#endif
