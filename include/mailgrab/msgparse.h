/*
 * msgparse.h - reading one RFC 5322 message: headers, the sender, the date, the
 * subject, and the visible text of its text/plain and text/html parts.
 *
 * This is our own bounded scanner; libetpan's MIME parser is never given mail
 * (it overflows on some boundaries). Limits: header block size, MIME nesting
 * depth, part count and decoded text size; going past one stops the walk and
 * sets a flag rather than failing. Bytes are handled by length throughout, so
 * NULs inside headers or bodies are harmless.
 *
 * Owns: every pointer in struct mg_msginfo is heap memory owned by the struct
 * and freed by mg_msginfo_finish (which accepts a zeroed struct).
 * Thread-safety: thread-safe (no global state).
 */
#ifndef MAILGRAB_MSGPARSE_H
#define MAILGRAB_MSGPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define MG_MSG_MAX_HEADER (256 * 1024)
#define MG_MSG_MAX_DEPTH 16
#define MG_MSG_MAX_PARTS 256
#define MG_MSG_MAX_TEXT (4 * 1024 * 1024)
#define MG_MSG_MAX_FIELD (64 * 1024)
#define MG_MSG_MAX_ID 998    /* Message-ID, In-Reply-To and List-Id are cut to this */
#define MG_MSG_MAX_RCPT 4096 /* bytes of recipient addresses kept per message */
#define MG_MSG_TYPE_MAX 96   /* an attachment's MIME type, cut to this */

enum mg_msg_flags {
    MG_MSG_HEADERS_BAD = 1u << 0,  /* no header block could be read at all */
    MG_MSG_HEADER_LIMIT = 1u << 1, /* header block larger than the limit */
    MG_MSG_DEPTH_LIMIT = 1u << 2,
    MG_MSG_PART_LIMIT = 1u << 3,
    MG_MSG_TEXT_LIMIT = 1u << 4,
    MG_MSG_BAD_BOUNDARY = 1u << 5, /* a multipart boundary failed validation */
};

struct mg_msginfo {
    char *from_addr; /* lowercased addr-spec, or NULL when none parses */
    size_t from_addr_len;
    char *from_name; /* decoded display name (UTF-8), or NULL */
    size_t from_name_len;
    char *subject; /* decoded subject (UTF-8), or NULL */
    size_t subject_len;
    bool has_date;
    time_t date; /* UTC, valid when has_date */
    char *text;  /* visible body text (UTF-8), parts separated by '\n' */
    size_t text_len;
    unsigned flags; /* enum mg_msg_flags */
    /* Addresses (lowercased addr-specs) in To and Cc; an empty group counts none. */
    size_t to_count, cc_count;
    char *rcpt; /* those of To, Cc and Bcc, each followed by a NUL (first
                 * MG_MSG_MAX_RCPT bytes), or NULL */
    size_t rcpt_len;
    /* Header values, unfolded and trimmed (List-Id: what is inside <>), or NULL. */
    char *message_id, *in_reply_to, *list_id;
    size_t message_id_len, in_reply_to_len, list_id_len;
    /* Attachments: parts with Content-Disposition: attachment, and leaf parts
     * that are not text/plain or text/html. Bytes are decoded sizes (base64
     * and quoted-printable are counted, not decoded). */
    size_t attachments;
    unsigned long long attachment_bytes;
    struct mg_msg_attachment {
        char type[MG_MSG_TYPE_MAX]; /* "application/pdf", lowercase */
        unsigned long long bytes;
    } * att; /* attachments entries (at most MG_MSG_MAX_PARTS) */
};

/* 0 on success (including partial parses, see flags); -1 only when out of memory. */
int mg_msg_parse(const char *msg, size_t len, struct mg_msginfo *out);
void mg_msginfo_finish(struct mg_msginfo *info);

/* The domain part of from_addr (after the last '@'), or NULL. Points into info. */
const char *mg_msginfo_domain(const struct mg_msginfo *info, size_t *len);

/*
 * Pieces exposed for tests and reuse. A header value is returned raw (folded,
 * undecoded) and points into msg.
 */
int mg_header_find(const char *hdr, size_t hdrlen, const char *name, const char **val,
                   size_t *vallen);
/* Parse the first mailbox of an address-list header value. */
int mg_address_parse(const char *val, size_t n, char **addr, size_t *addrlen, char **name,
                     size_t *namelen);
/*
 * Call fn for each mailbox of an address-list header value (groups are
 * opened: their members count, an empty group gives none). fn gets the
 * lowercased addr-spec. Returns the number of mailboxes, or -1 on OOM or when
 * fn fails.
 */
typedef int (*mg_address_fn)(void *ctx, const char *addr, size_t len);
long mg_address_list(const char *val, size_t n, mg_address_fn fn, void *ctx);
/* RFC 2046 boundary syntax: 1..70 bchars, not ending in a space. */
bool mg_boundary_valid(const char *b, size_t n);

#endif
