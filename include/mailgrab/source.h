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
#include "mailgrab/gmlist.h"
#include "mailgrab/plan.h"

struct mg_mailbox_info {
    uint32_t uidvalidity; /* never 0: a source refuses a mailbox without one */
    uint32_t exists;
    bool counted; /* the server said how many messages it holds (EXISTS) */
    uint32_t uidnext;
    uint64_t highestmodseq; /* CONDSTORE; 0: unknown */
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

/* What a listed mailbox is for (RFC 6154 SPECIAL-USE attributes; Gmail's
 * \Important too): how a Gmail account's folders are found, whatever name
 * the server gives them in the user's language. */
enum mg_role {
    MG_ROLE_ALL = 1u << 0,       /* \All: every message (Gmail's All Mail) */
    MG_ROLE_JUNK = 1u << 1,      /* \Junk */
    MG_ROLE_TRASH = 1u << 2,     /* \Trash */
    MG_ROLE_SENT = 1u << 3,      /* \Sent */
    MG_ROLE_DRAFTS = 1u << 4,    /* \Drafts */
    MG_ROLE_FLAGGED = 1u << 5,   /* \Flagged (Gmail's Starred) */
    MG_ROLE_IMPORTANT = 1u << 6, /* \Important */
    MG_ROLE_ARCHIVE = 1u << 7,   /* \Archive */
};

/* What a server offers, after login. */
enum mg_cap {
    MG_CAP_GMAIL = 1u << 0,     /* X-GM-EXT-1: X-GM-MSGID, X-GM-THRID, X-GM-LABELS */
    MG_CAP_CONDSTORE = 1u << 1, /* RFC 7162 */
    MG_CAP_SPECIAL_USE = 1u << 2,
};

struct mg_session; /* one implementation's session */

struct mg_source_ops {
    /* A new logged-in session. */
    enum mg_code (*open)(void *ctx, struct mg_session **out, struct mg_error *err);
    /* Open mailbox read-only. MG_E_MAILBOX: it cannot be opened (the
     * session stays usable unless broken says otherwise). */
    enum mg_code (*examine)(struct mg_session *s, const char *mailbox, struct mg_mailbox_info *info,
                            struct mg_error *err);
    /* Every selectable mailbox, as the server names it, with its roles
     * (enum mg_role bits). */
    enum mg_code (*mailboxes)(struct mg_session *s,
                              void (*each)(const char *name, unsigned roles, void *ctx), void *ctx,
                              struct mg_error *err);
    /* What the server offers after login (enum mg_cap bits). */
    unsigned (*caps)(struct mg_session *s);
    /* Like list, with Gmail's message id, thread id, labels, flags and
     * INTERNALDATE (only on a server with MG_CAP_GMAIL), appended to out:
     * the messages of UID from and above, and with changedsince (CONDSTORE,
     * from > 1) those below from changed since that MODSEQ. May be NULL. */
    enum mg_code (*gmlist)(struct mg_session *s, uint32_t from, uint64_t changedsince,
                           struct mg_gmlist *out, struct mg_error *err);
    /* The flags (Maildir letters) of the open mailbox's messages below UID
     * `below` that changed since modseq (CONDSTORE). May be NULL. */
    enum mg_code (*flags_since)(struct mg_session *s, uint32_t below, uint64_t modseq,
                                void (*each)(uint32_t uid, const char *flags, void *ctx), void *ctx,
                                struct mg_error *err);
    /* Append the open mailbox's UIDs of at least from, and their sizes, to
     * out (unsorted). from 1: every message. */
    enum mg_code (*list)(struct mg_session *s, uint32_t from, struct mg_msglist *out,
                         struct mg_error *err);
    /* UIDVALIDITY, UIDNEXT and the number of messages of mailbox without
     * opening it (STATUS). May be NULL; any failure means: open it. */
    enum mg_code (*status)(struct mg_session *s, const char *mailbox, struct mg_mailbox_info *info,
                           struct mg_error *err);
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
