/*
 * msgrow.h - the per-message table (--messages-csv): one row per message,
 * its wire form between processes, and its CSV form.
 *
 * Columns, in this order (a stable schema: new columns are only ever added at
 * the end):
 *   path             the file, relative to the directory given to `mailgrab
 *                    stats` (during a download: to the account's output
 *                    directory, as in labels.jsonl)
 *   mailbox          the mailbox the file is in (its directory name decoded;
 *                    a Maildir's cur/new and a %uidvalidity= suffix dropped)
 *   date_utc         YYYY-MM-DDTHH:MM:SSZ, from Date, else the file's mtime
 *   from_addr, from_name, from_domain   the first From mailbox (empty: none)
 *   to_count, cc_count                  addresses in To and Cc
 *   size             bytes of the file
 *   attachments, attachment_bytes       see msgparse.h
 *   subject          decoded, at most 998 bytes
 *   message_id, in_reply_to, list_id
 *   labels, thrid    from the backup's labels.jsonl (Gmail backups, `mailgrab
 *                    stats` only): the labels as a JSON array, the thread id
 *   sent             1 when counted as sent mail (From is a --me address)
 *   date_fallback    1 when date_utc is the file's mtime
 *   unparseable      1 when the message could not be read
 * Cells are RFC 4180 and neutralised like the statistics CSV (csv.h); lines
 * end in CRLF.
 *
 * Owns: nothing; a decoded row points into the bytes it was decoded from.
 * Thread-safety: thread-safe (no global state).
 */
#ifndef MAILGRAB_MSGROW_H
#define MAILGRAB_MSGROW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mailgrab/buf.h"

#define MG_MSGROW_MAX (128 * 1024) /* one encoded row, at most */
#define MG_MSGROW_SUBJECT_MAX 998

struct mg_msgrow_str {
    const char *p; /* may be NULL when n is 0 */
    size_t n;
};

struct mg_msgrow {
    struct mg_msgrow_str path, from_addr, from_name, subject, message_id, in_reply_to, list_id;
    int64_t date; /* UTC seconds */
    uint64_t to_count, cc_count, size, attachments, attachment_bytes;
    bool sent, date_fallback, unparseable;
    /* Not on the wire: filled by whoever writes the CSV (labels.h). */
    struct mg_msgrow_str labels, thrid;
};

/* Append the wire form of r to out (every string cut to fit MG_MSGROW_MAX). */
int mg_msgrow_encode(const struct mg_msgrow *r, struct mg_buf *out);
/* 0, or -1 when data is not one well-formed row. */
int mg_msgrow_decode(const char *data, size_t len, struct mg_msgrow *r);

/* The header line. 0, or -1 on a write error. */
int mg_msgrow_csv_header(FILE *f);
/* One CSV line. line is scratch space (max at least 4 * MG_MSGROW_MAX). */
int mg_msgrow_csv_write(FILE *f, const struct mg_msgrow *r, struct mg_buf *line);

/* Where the mailbox directory starts in the path of a message mailgrab
 * stored (OUTPUT/<mailbox>/<uid>.eml or OUTPUT/<mailbox>/cur/<name>): the
 * path from there on is relative to the account's output directory. */
size_t mg_msgrow_account_offset(const char *path, size_t n);

/* The mailbox name of a stored message's path (see above) into out. */
void mg_msgrow_mailbox(const char *path, size_t n, struct mg_buf *out);

#endif
