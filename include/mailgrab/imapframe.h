/*
 * imapframe.h - IMAP response framing: what a server can make mailgrab hold.
 *
 * libetpan keeps a response's text in memory until it is parsed, allocates a
 * literal whole at the size the server announces, and keeps the untagged
 * responses of a command until its end. The TLS driver feeds every byte the
 * server sends to an mg_frame, which follows the framing (lines and {n}
 * literals) and refuses, before libetpan sees them:
 *   - a response longer than MG_FRAME_RESPONSE_MAX outside the BODY[]
 *     literals that stream to a handler (bodies_streamed), and any literal
 *     announced beyond that bound;
 *   - more than MG_FRAME_UNTAGGED_MAX untagged responses, or more than
 *     MG_FRAME_KEPT_MAX bytes of them, for one command; FETCH responses do
 *     not count while a handler consumes them (fetch_consumed).
 * It also recognises a greeting that is a BYE (libetpan 1.9.4 leaks it), and
 * keeps the words of the last BYE, for the message when the stream ends.
 *
 * Pure logic, no I/O. Memory: struct mg_frame is the caller's; nothing is
 * allocated. Thread-safety: one mg_frame per stream, used by one thread.
 */
#ifndef MAILGRAB_IMAPFRAME_H
#define MAILGRAB_IMAPFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MG_FRAME_RESPONSE_MAX (1ull << 20)
#define MG_FRAME_UNTAGGED_MAX 50000ull
#define MG_FRAME_KEPT_MAX (8ull << 20)

enum mg_frame_state {
    MG_FRAME_OK = 0,
    MG_FRAME_REFUSED, /* a bound was exceeded; the stream must end */
    MG_FRAME_BYE,     /* the greeting was a BYE; the stream must end */
};

struct mg_frame {
    /* Set by the caller before the command whose answer they describe. */
    bool fetch_consumed;  /* FETCH responses are handed over and freed */
    bool bodies_streamed; /* BODY[] literals stream to a handler */
    /* Internal. */
    enum mg_frame_state state;
    uint64_t literal_left; /* bytes of the current literal still to pass */
    size_t response_bytes; /* of the current response, literals included */
    size_t kept_bytes;     /* of untagged responses kept for this command */
    size_t kept;           /* untagged responses kept for this command */
    char head[128];        /* the current response's first bytes */
    size_t headlen;
    char last[24]; /* the bytes before a '{', to tell BODY[] literals */
    size_t lastlen;
    int lit; /* 0, or where in "{digits[+]}\r\n" the line is */
    uint64_t lit_n;
    bool lit_body; /* the '{' follows "BODY[] " or "BODY[]<n> " */
    bool greeted;  /* the first response has ended */
    char bye[96];  /* the text of the last "* BYE", "" if none */
};

void mg_frame_init(struct mg_frame *f);

/* The client sent (part of) a command: its answer starts a new count. */
void mg_frame_command(struct mg_frame *f);

/*
 * Follow n bytes the server sent. MG_FRAME_OK, or why the stream must end,
 * with one line in why (the server's words after BYE for MG_FRAME_BYE). Once
 * not OK, it stays so.
 */
enum mg_frame_state mg_frame_feed(struct mg_frame *f, const unsigned char *b, size_t n, char *why,
                                  size_t cap);

#endif
