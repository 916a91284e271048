/*
 * session.h - the sessions of one account's run: slots that each hold at
 * most one open session of a source (source.h), the control session (slot
 * 0) and the operations run on it with retries (connect, list mailboxes,
 * examine, list a mailbox), and sessions readied ahead (warm-up).
 *
 * Sessions outlive a mailbox: the next one reuses them (a new EXAMINE, no
 * new login), so a multi-folder backup never holds more sessions than
 * slots. While aborted (mg_sessions_abort), every open session is cancelled
 * and any session opened meanwhile is cancelled at once.
 *
 * Memory: mg_sessions is the caller's (init/finish); it copies *src, whose
 * ctx stays borrowed. Slots live as long as the set.
 * Thread-safety: a slot is used by one thread at a time (its worker, or its
 * warm-up thread until joined); slot->sess is written under mu, so that
 * mg_sessions_abort may cancel from another thread. The control operations
 * are for one thread (the caller of the pool).
 */
#ifndef MAILGRAB_SESSION_H
#define MAILGRAB_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mailgrab/error.h"
#include "mailgrab/plan.h"
#include "mailgrab/source.h"

#define MG_MAILBOX_MAX 1024

struct mg_sessions;

struct mg_slot {
    struct mg_sessions *set;
    unsigned id;
    struct mg_session *sess;       /* written under set->mu */
    unsigned fetches;              /* FETCH commands sent on sess */
    uint64_t carried;              /* message bytes received on sess */
    char examined[MG_MAILBOX_MAX]; /* mailbox open on sess, "" if none */
    struct mg_mailbox_info info;   /* what EXAMINE said of it */
    /* A thread readying the slot ahead of the next run. Until it is joined
     * (mg_slot_join_warm), nobody else touches the slot. */
    pthread_t warm;
    bool warming;
    char warm_mailbox[MG_MAILBOX_MAX];
};

struct mg_sessions {
    struct mg_source src;
    unsigned pause_ms; /* the unit of retry pauses */
    unsigned n;
    struct mg_slot *slots;
    pthread_mutex_t mu;
    bool abort;            /* under mu */
    atomic_bool logged_in; /* the credentials opened a session in this run */
};

/* n >= 1 slots, no session open yet. */
enum mg_code mg_sessions_init(struct mg_sessions *s, const struct mg_source *src, unsigned n,
                              struct mg_error *err);
/* Join warm-ups; log out of every session, all at once. */
void mg_sessions_finish(struct mg_sessions *s);

/* How long to wait before try n + 1: a server that is busy or limiting gets
 * doubling pauses, a lost connection short growing ones (pause_ms units). */
unsigned mg_sessions_backoff(const struct mg_sessions *s, enum mg_retry retry, unsigned n);

/* Cancel every open session and any opened from now on (on), or stop doing
 * so (off). */
void mg_sessions_abort(struct mg_sessions *s, bool on);

/* Give slot a logged-in session unless it has one. */
enum mg_code mg_slot_open(struct mg_slot *slot, struct mg_error *err);
/* ... with mailbox open too. */
enum mg_code mg_slot_ready(struct mg_slot *slot, const char *mailbox, struct mg_error *err);
/* Close the slot's session (not politely: it may be out of step). */
void mg_slot_drop(struct mg_slot *slot);
void mg_slot_join_warm(struct mg_slot *slot);

/* The control operations, on slot 0, with a new session and a pause after
 * a passing failure (MAX tries), not after a refusal. */
enum mg_code mg_sessions_connect(struct mg_sessions *s, struct mg_error *err);
enum mg_code mg_sessions_mailboxes(struct mg_sessions *s,
                                   void (*each)(const char *name, unsigned roles, void *ctx),
                                   void *ctx, struct mg_error *err);
enum mg_code mg_sessions_examine(struct mg_sessions *s, const char *mailbox,
                                 struct mg_mailbox_info *mi, struct mg_error *err);
enum mg_code mg_sessions_list(struct mg_sessions *s, const char *mailbox, uint32_t from,
                              struct mg_mailbox_info *mi, struct mg_msglist *out,
                              struct mg_error *err);
enum mg_code mg_sessions_flags_since(struct mg_sessions *s, const char *mailbox, uint32_t below,
                                     uint64_t modseq,
                                     void (*each)(uint32_t uid, const char *flags, void *ctx),
                                     void *ctx, struct mg_error *err);
enum mg_code mg_sessions_status(struct mg_sessions *s, const char *mailbox,
                                struct mg_mailbox_info *mi, struct mg_error *err);

/* Log in and EXAMINE mailbox on slots 1 .. n - 1 in the background. */
/* mg_sessions_list with Gmail's ids and labels (source.h gmlist). */
enum mg_code mg_sessions_gmlist(struct mg_sessions *s, const char *mailbox, uint32_t from,
                                uint64_t changedsince, struct mg_mailbox_info *mi,
                                struct mg_gmlist *out, struct mg_error *err);
/* What the server offers after login (enum mg_cap bits). */
enum mg_code mg_sessions_caps(struct mg_sessions *s, unsigned *caps, struct mg_error *err);
void mg_sessions_warm(struct mg_sessions *s, const char *mailbox, unsigned n);

#endif
