/*
 * gmlist.h - a Gmail mailbox listing: each message's UID and size with
 * Gmail's message id (X-GM-MSGID, the same in every folder), thread id,
 * labels, flags and INTERNALDATE; and its rendering as one line of
 * OUTPUT/labels.jsonl.
 *
 * Pure data, no I/O. Memory: an mg_gmlist owns its array and each entry's
 * labels. Thread-safety: none needed (one owner).
 */
#ifndef MAILGRAB_GMLIST_H
#define MAILGRAB_GMLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* One message of a Gmail listing (mg_source_ops.gmlist). */
struct mg_gmmsg {
    uint32_t uid;
    uint32_t size;
    uint64_t msgid; /* X-GM-MSGID: the same in every folder the message is in */
    uint64_t thrid; /* X-GM-THRID */
    time_t internaldate;
    char flags[8]; /* system flags as Maildir letters, as mg_fetch_sink.done */
    char *labels;  /* X-GM-LABELS in UTF-8, each ended by a NUL; owned */
    size_t nlabels;
};

struct mg_gmlist {
    struct mg_gmmsg *v;
    size_t n;
    size_t cap;
};

int mg_gmlist_push(struct mg_gmlist *l, const struct mg_gmmsg *m); /* takes m->labels */
void mg_gmlist_sort(struct mg_gmlist *l);                          /* by UID, duplicates dropped */
void mg_gmlist_finish(struct mg_gmlist *l);

/* One labels.jsonl line (no newline) for m, stored at path (relative to
 * the account's output): msgid, thrid, labels, path, size, internaldate,
 * flags. Returns a malloc'd string, or NULL when out of memory. */
char *mg_gmmsg_json(const struct mg_gmmsg *m, const char *path);

/* Gmail labels are IMAP flags or mailbox names (modified UTF-7): the label
 * as people read it, in UTF-8, into out. 0, or -1 when it is not valid
 * modified UTF-7 (then it is copied as it is). */
int mg_gmlabel_decode(const char *label, char *out, size_t cap);

#endif
