/*
 * imapcode.h - what a server's refusal means, decided by its response code
 * (RFC 5530, RFC 3501 7.1), never by its free text: busy (ask again later),
 * over a quota or limit, credentials refused, this mailbox refused, or
 * messages expunged meanwhile. Also reads the code out of a tagged reply.
 *
 * The one rule that is not a code: a login refused without a code that says
 * the credentials are wrong (Gmail's "NO [ALERT] Too many simultaneous
 * connections") is MG_REFUSED_UNSURE; the caller decides by what it knows
 * (these credentials already opened a session in this run: a connection
 * limit; else refused credentials).
 *
 * Pure functions, no I/O, thread-safe. Callers own the output buffers.
 */
#ifndef MAILGRAB_IMAPCODE_H
#define MAILGRAB_IMAPCODE_H

#include <stdbool.h>
#include <stddef.h>

enum mg_refusal {
    MG_REFUSED,         /* no code mailgrab acts on: this request is refused */
    MG_REFUSED_BUSY,    /* UNAVAILABLE, INUSE, THROTTLED; LIMIT at login */
    MG_REFUSED_LIMIT,   /* OVERQUOTA, LIMIT: a quota; not before it resets */
    MG_REFUSED_AUTH,    /* AUTHENTICATIONFAILED, AUTHORIZATIONFAILED, EXPIRED, ... */
    MG_REFUSED_MAILBOX, /* NONEXISTENT, NOPERM, CANNOT, ...: this mailbox only */
    MG_REFUSED_GONE,    /* EXPUNGEISSUED: some messages were expunged */
    MG_REFUSED_UNSURE,  /* a login refused with no or an ALERT code (see above) */
};

/* Which command was refused: the same code means different things. */
enum mg_imap_cmd { MG_CMD_LOGIN, MG_CMD_EXAMINE, MG_CMD_FETCH, MG_CMD_OTHER };

/* code: the response code's atom ("" for none), any case. */
enum mg_refusal mg_imap_refusal(const char *code, enum mg_imap_cmd cmd);

/*
 * Find the tagged reply to command `tag` in buf (the last line of it that
 * starts with "<tag> "), and copy its state (OK, NO, BAD) and response code
 * atom ("" if none) into state and code, cut to fit. Returns 0, or -1 when
 * buf holds no reply with that tag.
 */
int mg_imap_tagged_reply(const char *buf, size_t len, const char *tag, char *state,
                         size_t state_cap, char *code, size_t code_cap);

/*
 * Does the tagged OK to command `tag` in buf ask the client to slow down?
 * A [THROTTLED] response code after OK, or Gmail's form, where the code
 * ends the text ("OK Success [THROTTLED]"). Either way it is the code, not
 * the words, that counts.
 */
bool mg_imap_ok_throttled(const char *buf, size_t len, const char *tag);

/* The response code atom a BYE's text starts with ("[OVERQUOTA] ..."), or
 * "" when it has none, into code. */
void mg_imap_text_code(const char *text, char *code, size_t code_cap);

#endif
