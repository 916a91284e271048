/*
 * imap.h - one IMAP session over a verified TLS stream (libetpan underneath).
 *
 * Owns: connecting and logging in, opening a mailbox read-only, listing UIDs
 * with sizes, and fetching a set of messages as a stream of body pieces, all
 * in bounded memory whatever the mailbox size; for a restore, creating
 * mailboxes, appending messages streamed from files, and finding them. libetpan result codes become
 * mg_code values here, with a message that says what to do.
 *
 * Memory: mg_imap_open returns a session owned by the caller, released with
 * mg_imap_close. Strings in struct mg_server / mg_creds are borrowed.
 * Thread-safety: a session is used by one thread at a time; mg_imap_cancel
 * may be called from any other thread while the owner is blocked in I/O.
 */
#ifndef MAILGRAB_IMAP_H
#define MAILGRAB_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mailgrab/creds.h"
#include "mailgrab/error.h"
#include "mailgrab/plan.h"
#include "mailgrab/source.h"
#include "mailgrab/tls.h"

struct mg_server {
    const char *host;
    const char *port;
    int timeout_s;          /* inactivity timeout for every network wait */
    struct mg_tls_ctx *tls; /* also says whether COMPRESS=DEFLATE may be used */
};

struct mg_imap;

/* The source interface (source.h) over IMAP: each session an mg_imap
 * opened with *srv and *creds, borrowed for as long as the source is used. */
struct mg_imap_source {
    const struct mg_server *srv;
    const struct mg_creds *creds;
};

struct mg_source mg_imap_source(struct mg_imap_source *is);

/* Connect, log in, and switch to COMPRESS=DEFLATE when the server offers
 * it (unless mg_tls_ctx_no_compress): a server that refuses it is used
 * uncompressed. */
enum mg_code mg_imap_open(const struct mg_server *srv, const struct mg_creds *cr,
                          struct mg_imap **out, struct mg_error *err);

/* A login refused by mg_imap_open with no code that blames the credentials
 * (MG_E_AUTH, retry MG_RETRY_LATER; Gmail's "NO [ALERT] Too many simultaneous
 * connections"): when these credentials logged in before in this run, it is
 * a connection limit (MG_E_CONNECT, retry later); else refused credentials
 * (MG_E_AUTH, no retry). Other errors pass unchanged. Returns err->code. */
enum mg_code mg_imap_judge_login(struct mg_error *err, bool logged_in_before);

/* EXAMINE (read-only): nothing mailgrab does can change the server's flags.
 * A name with 8-bit bytes goes as a literal. A tagged NO or BAD is
 * MG_E_MAILBOX (retry later when its code says the server is busy) and
 * leaves the session usable. */
enum mg_code mg_imap_examine(struct mg_imap *s, const char *mailbox, struct mg_mailbox_info *info,
                             struct mg_error *err);

/* LIST "" "*": call each(name, ctx) for every selectable mailbox, with
 * the name as the server sent it (modified UTF-7); at most 10,000. */
enum mg_code mg_imap_mailboxes(struct mg_imap *s,
                               void (*each)(const char *name, unsigned roles, void *ctx), void *ctx,
                               struct mg_error *err);

/* What the server offers after login (enum mg_cap bits, source.h), asked
 * with CAPABILITY once per session. On Gmail, says who mailgrab is with ID
 * (Google asks clients to). */
unsigned mg_imap_caps(struct mg_imap *s);

/* mg_imap_list with Gmail's X-GM-MSGID, X-GM-THRID and X-GM-LABELS (labels
 * decoded to UTF-8), FLAGS and INTERNALDATE, read and parsed by mailgrab
 * (fetchresp.h): libetpan cannot parse these items. The messages of UID
 * from and above; with changedsince (CONDSTORE) and from > 1, also those
 * below from whose MODSEQ is above changedsince (a second UID FETCH with
 * CHANGEDSINCE). from 1: every message. */
enum mg_code mg_imap_gmlist(struct mg_imap *s, uint32_t from, uint64_t changedsince,
                            struct mg_gmlist *out, struct mg_error *err);

/* Append every message's UID and RFC822.SIZE to out (unsorted): at most
 * EXISTS + 10,000 of them (1,000,000 without EXISTS), else MG_E_PROTOCOL. */
enum mg_code mg_imap_list(struct mg_imap *s, uint32_t from, struct mg_msglist *out,
                          struct mg_error *err);

/* The flags of the open mailbox's messages below UID `below` changed since
 * modseq (CONDSTORE: UID FETCH ... (FLAGS) (CHANGEDSINCE modseq)), each as
 * Maildir letters; read and parsed by mailgrab, as mg_imap_gmlist. modseq
 * 0: the flags of every message below `below`. */
enum mg_code mg_imap_flags_since(struct mg_imap *s, uint32_t below, uint64_t modseq,
                                 void (*each)(uint32_t uid, const char *flags, void *ctx),
                                 void *ctx, struct mg_error *err);

/* STATUS (UIDNEXT UIDVALIDITY MESSAGES, and HIGHESTMODSEQ with CONDSTORE)
 * of mailbox, without opening it. */
enum mg_code mg_imap_status(struct mg_imap *s, const char *mailbox, struct mg_mailbox_info *info,
                            struct mg_error *err);

/*
 * UID FETCH the given UIDs (sorted) with BODY.PEEK[]; each message's bytes
 * go to sink->body in pieces, then sink->done, or sink->bad when it did not
 * arrive whole. Messages the server does not return are simply not
 * reported: the caller compares.
 *
 * *answered says the server completed the command: every message reported
 * done is whole and the session is in step, even when the server refused
 * (a tagged NO: MG_E_LIMIT for a download quota, which retrying today will
 * not cure; else MG_E_PROTOCOL, retry later when the server says it is busy
 * or limiting, now otherwise). Without an answer, the session is out of
 * step and must be closed.
 */
enum mg_code mg_imap_fetch(struct mg_imap *s, const uint32_t *uids, size_t n,
                           const struct mg_fetch_sink *sink, bool *answered, struct mg_error *err);

/*
 * Restoring: CREATE and APPEND (restore.h drives them).
 *
 * mg_imap_append sends n messages to one mailbox, each streamed from its
 * file in 64 KiB pieces (never held in memory), with its flags (Maildir
 * letters) and INTERNALDATE, exactly the bytes of the file. Where the
 * server offers LITERAL+, several APPEND commands are on their way at once
 * (no round trip per message), each carrying a group of messages where the
 * server offers MULTIAPPEND (all or none of a group is taken; a refused
 * group is sent again one message at a time, so that only the message the
 * server refuses is refused); otherwise one message at a time, each after
 * the server's go-ahead. out[i] receives message i's reply (APPENDUID
 * where the server gives it); out[i].settled says it was answered
 * (appended or refused). When the call fails (the session is then broken,
 * or a file could not be read: MG_E_IO) the messages not settled are
 * uncertain: the server may hold them. *answered counts the settled ones;
 * MG_OK: all n.
 */
struct mg_append_msg {
    int fd;              /* read from offset 0 */
    uint64_t size;       /* exactly this many bytes */
    time_t internaldate; /* sent in UTC */
    const char *flags;   /* Maildir letters: D F R S T */
};

struct mg_append_reply {
    bool settled; /* answered: appended (ok) or refused */
    bool ok;
    bool quota;                /* refused for a quota (OVERQUOTA): not today */
    bool busy;                 /* refused for now (UNAVAILABLE, INUSE, THROTTLED) */
    bool trycreate;            /* refused as the mailbox does not exist */
    char said[256];            /* "[CODE] text" when !ok */
    uint32_t uidvalidity, uid; /* APPENDUID, 0 if none */
};

/* The server takes non-synchronizing literals (LITERAL+). */
bool mg_imap_literal_plus(struct mg_imap *s);
/* APPENDLIMIT=N from the capabilities, 0 when none was given. */
uint64_t mg_imap_appendlimit(struct mg_imap *s);

/* CREATE mailbox (modified UTF-7). A mailbox that exists already is fine;
 * another refusal is MG_E_MAILBOX (session still usable). */
enum mg_code mg_imap_create(struct mg_imap *s, const char *mailbox, struct mg_error *err);

/* Gmail: give message uid of mailbox (opened read-write for it) the labels
 * (UTF-8; system labels as \Inbox), UID STORE +X-GM-LABELS. A label
 * that cannot be written is left out with a warning. */
enum mg_code mg_imap_add_labels(struct mg_imap *s, const char *mailbox, uint32_t uid,
                                const char *const *labels, size_t n, struct mg_error *err);

enum mg_code mg_imap_append(struct mg_imap *s, const char *mailbox, const struct mg_append_msg *v,
                            size_t n, struct mg_append_reply *out, size_t *answered,
                            struct mg_error *err);

/* UIDs in mailbox (opened read-only) of messages whose Message-ID header
 * contains message_id (NULL or "": any) and whose size is size: at most cap
 * go to uids, *n is how many were found. */
enum mg_code mg_imap_find(struct mg_imap *s, const char *mailbox, const char *message_id,
                          uint64_t size, uint32_t *uids, size_t cap, size_t *n,
                          struct mg_error *err);

/* True once the session is out of step with the server (the stream broke,
 * or a reply could not be parsed): close it. A refusal (tagged NO or BAD)
 * leaves it in step. Accepts NULL (true). */
bool mg_imap_broken(const struct mg_imap *s);

void mg_imap_cancel(struct mg_imap *s);

/* polite: send LOGOUT first (only on a healthy session). Accepts NULL. */
void mg_imap_close(struct mg_imap *s, bool polite);

#endif
