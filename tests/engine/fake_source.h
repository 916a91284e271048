/*
 * fake_source.h - a scripted message source for the engine tests: a mailbox
 * of generated messages behind the source interface (source.h), and faults
 * a test switches on: sessions cut after so many bytes, refusals, slow or
 * hanging fetches, logins refused or limited, renumbering, lies.
 *
 * Thread-safe: the pool's workers use it at once; every counter and fault
 * is under one lock. Bodies are a function of (uid, offset), so a test
 * checks a stored file without keeping a copy.
 */
#ifndef MAILGRAB_FAKE_SOURCE_H
#define MAILGRAB_FAKE_SOURCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/source.h"

#define FAKE_MAX_MSGS 4096

enum fake_refusal { FAKE_BUSY, FAKE_QUOTA, FAKE_GONE };

struct fake_server {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* the mailbox */
    uint32_t uidvalidity;
    uint32_t uids[FAKE_MAX_MSGS];
    uint32_t sizes[FAKE_MAX_MSGS];
    size_t n;

    /* faults, set by the test before (or while) the pool runs */
    uint64_t cut_after;  /* a session ends after sending this many bytes; 0: never */
    int cuts_left;       /* how many more sessions are cut that way; -1: all */
    uint32_t refuse_uid; /* a FETCH holding it is answered NO without it ... */
    enum fake_refusal refusal;
    int refusals_left;       /* ... this many more times; -1: always */
    uint32_t bad_uid;        /* reported to sink->bad, every time */
    uint32_t extra_uid;      /* sent too, unasked, with every FETCH */
    bool send_twice;         /* every message is sent twice */
    bool drop_unasked_last;  /* the last UID asked for is left out of a complete answer */
    unsigned max_sessions;   /* opens beyond this many at once fail, retry later; 0: no cap */
    enum mg_code open_fails; /* opens fail with this (e.g. MG_E_AUTH); MG_OK: none ... */
    int open_fails_left;     /* ... this many more times; -1: always */
    unsigned delay_ms;       /* each message takes this long to send */
    bool hang_fetch;         /* a FETCH hangs until cancelled */
    uint32_t renumber_after; /* sessions opened after this many see uidvalidity + 1 */
    uint64_t session_worth;  /* the pool's bytes per connection; 0: 1 (every message) */

    /* what happened */
    unsigned opened, open_now, fetches, cut, cancelled, examines, lists;
    uint64_t bytes_sent;
    unsigned asked[FAKE_MAX_MSGS]; /* per message: FETCHes that asked for it */
    size_t largest_fetch;
};

/* n messages, UIDs 1..n (every third UID skipped, as after expunges), sizes
 * from size_min to size_max. */
void fake_init(struct fake_server *f, size_t n, uint32_t size_min, uint32_t size_max);
void fake_finish(struct fake_server *f);

/* The source interface over f. */
struct mg_source fake_source(struct fake_server *f);

/* Byte `off` of message uid's body. */
unsigned char fake_byte(uint32_t uid, uint32_t off);

/* Index of uid in f, or -1. */
long fake_index(const struct fake_server *f, uint32_t uid);

#endif
