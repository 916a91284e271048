/*
 * fetchresp.h - one untagged FETCH response of a message listing, parsed by
 * mailgrab itself: libetpan 1.9.4 cannot parse Gmail's X-GM-MSGID and
 * X-GM-THRID in a FETCH response, and reading a listing ourselves costs no
 * more than one line at a time.
 *
 * Understands UID, RFC822.SIZE, FLAGS, INTERNALDATE, MODSEQ, X-GM-MSGID,
 * X-GM-THRID and X-GM-LABELS; any other item is skipped if it is a plain
 * value (atom, number, string, literal, NIL or parenthesised list).
 * Literals are given inline, as they arrive: {n} CRLF then n bytes.
 *
 * Pure logic, no I/O, nothing allocated: labels go to the caller's buffer.
 * Thread-safety: none needed.
 */
#ifndef MAILGRAB_FETCHRESP_H
#define MAILGRAB_FETCHRESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MG_FETCHRESP_LABELS_MAX 16384

struct mg_fetchresp {
    uint32_t seq;
    uint32_t uid, size;
    uint64_t modseq, msgid, thrid;
    time_t internaldate;
    char flags[8]; /* system flags as Maildir letters ("FS") */
    /* X-GM-LABELS as sent (astrings, modified UTF-7 or \System), each ended
     * by a NUL, in the caller's buffer */
    char *labels;
    size_t nlabels, labels_len;
    bool has_uid, has_size, has_modseq, has_msgid, has_thrid, has_date, has_flags, has_labels;
};

enum mg_fetchresp_result {
    MG_FETCHRESP_OK = 0,
    MG_FETCHRESP_OTHER = 1,      /* a well-formed response, not a FETCH */
    MG_FETCHRESP_MALFORMED = -1, /* not IMAP, or beyond a bound */
};

/* Parse one response (without its final CRLF) beginning "* ". labels is
 * the caller's buffer of cap bytes for X-GM-LABELS. */
enum mg_fetchresp_result mg_fetchresp_parse(const char *p, size_t len, struct mg_fetchresp *out,
                                            char *labels, size_t cap);

/* An IMAP date-time ("17-Jul-1996 02:44:25 -0700") as a time_t; -1 if it is
 * not one. */
time_t mg_imap_datetime(const char *s, size_t len);

#endif
