/*
 * source.h - where messages come from: the narrow interface the fetch engine
 * (pool.h) drives, and the vocabulary they share.
 *
 * A source opens sessions; a session opens a mailbox, lists it, and fetches
 * messages into a sink as they stream. The IMAP module implements it over
 * TLS (mg_imap_source, imap.h); the engine tests implement it with a
 * scripted fake, so scheduling, retries and cancellation are tested without
 * a server.
 *
 * Contract of every implementation:
 * - Errors are mg_code values with a retry class (error.h): MG_RETRY_NONE
 *   for refusals that another try will not cure (credentials, certificate),
 *   MG_RETRY_LATER for a server that is busy or limiting, MG_RETRY_NOW for
 *   a connection lost.
 * - fetch reports each message to the sink once it is whole (done), or as
 *   not storable (bad); *answered says the server completed the command, so
 *   the session is in step; otherwise the session is broken.
 * - cancel may be called from any thread while the session's owner is
 *   blocked in it; the blocked call then fails at once.
 *
 * Memory: a source borrows what its ctx points to; sessions belong to the
 * caller of open until close. Thread-safety: one session is used by one
 * thread at a time (cancel excepted); open may be called from several
 * threads at once.
 */
#ifndef MAILGRAB_SOURCE_H
#define MAILGRAB_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mailgrab/error.h"
#include "mailgrab/plan.h"

struct mg_mailbox_info {
    uint32_t uidvalidity; /* never 0: a source refuses a mailbox without one */
    uint32_t exists;
    bool counted; /* the server said how many messages it holds (EXISTS) */
    uint32_t uidnext;
};

/* Receives a fetch as it streams: body pieces of one message, then done()
 * for it, or bad() when it did not arrive whole. A callback returning false
 * aborts the fetch (its own error). */
struct mg_fetch_sink {
    void *ctx;
    bool (*body)(void *ctx, const char *bytes, size_t len);
    /* flags: the server's system flags as Maildir letters, e.g. "FS"; only
     * the five system flags become letters, never the server's keywords */
    bool (*done)(void *ctx, uint32_t uid, time_t internaldate, const char *flags);
    /* The message uid is not to be stored, for the reason in why (one line):
     * its body was NIL or not RFC822.SIZE bytes, or its response could not
     * be parsed or broke off (then the fetch fails too). The bytes streamed
     * for it are to be dropped. */
    void (*bad)(void *ctx, uint32_t uid, const char *why);
};

struct mg_session; /* one implementation's session */

struct mg_source_ops {
    /* A new logged-in session. */
    enum mg_code (*open)(void *ctx, struct mg_session **out, struct mg_error *err);
    /* Open mailbox read-only. MG_E_MAILBOX: it cannot be opened (the
     * session stays usable unless broken says otherwise). */
    enum mg_code (*examine)(struct mg_session *s, const char *mailbox, struct mg_mailbox_info *info,
                            struct mg_error *err);
    /* Every selectable mailbox, as the server names it. */
    enum mg_code (*mailboxes)(struct mg_session *s, void (*each)(const char *name, void *ctx),
                              void *ctx, struct mg_error *err);
    /* Append the open mailbox's UIDs and sizes to out (unsorted). */
    enum mg_code (*list)(struct mg_session *s, struct mg_msglist *out, struct mg_error *err);
    /* Fetch uids (sorted) into sink; see the contract above. */
    enum mg_code (*fetch)(struct mg_session *s, const uint32_t *uids, size_t n,
                          const struct mg_fetch_sink *sink, bool *answered, struct mg_error *err);
    /* The session is out of step and must be closed. */
    bool (*broken)(const struct mg_session *s);
    void (*cancel)(struct mg_session *s);
    /* polite: say goodbye first (only on a healthy session). Accepts NULL. */
    void (*close)(struct mg_session *s, bool polite);
    /* A failed open (err), when these credentials did (logged_in_before)
     * or did not log in before in this run: the source may reclassify it,
     * e.g. a refusal without a reason as a connection limit. May be NULL.
     * Returns err->code. */
    enum mg_code (*judge_login)(struct mg_error *err, bool logged_in_before);
    /* The last fetch was answered OK but with a request to slow down
     * (Gmail's [THROTTLED]). May be NULL. */
    bool (*throttled)(const struct mg_session *s);
};

struct mg_source {
    const struct mg_source_ops *ops;
    void *ctx;
};

#endif
