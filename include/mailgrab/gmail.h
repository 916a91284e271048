/*
 * gmail.h - what a Gmail backup knows across its folders: which message
 * (by X-GM-MSGID) is stored where, and OUTPUT/labels.jsonl.
 *
 * Gmail shows each label as a folder, and a message once per label plus
 * once in All Mail. A Gmail backup (backup.c) downloads each message once,
 * into the first folder that lists it (All Mail comes first), and gives
 * every other folder that lists it a hard link to that file. This index
 * maps a message id to the stored file (path relative to the account's
 * output) and to its labels.jsonl line.
 *
 * labels.jsonl (one per account output, rewritten atomically at the end of
 * each run): one JSON object per stored message, see mg_gmmsg_json. A
 * message no longer on the server keeps its last line, as the backup keeps
 * its file. The file of the previous run is read at the start: the paths it
 * names let a message stored by an earlier run be linked, never fetched
 * again, whichever folder it shows up in. A run that lists only what
 * changed in All Mail (backup.c, CONDSTORE) rewrites the lines of those
 * messages and keeps the others as read.
 *
 * Memory: the index owns its entries' strings. Thread-safety: none; the
 * backup's main thread alone uses it.
 */
#ifndef MAILGRAB_GMAIL_H
#define MAILGRAB_GMAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/error.h"
#include "mailgrab/gmlist.h"

#define MG_LABELS_FILE "labels.jsonl"

struct mg_gmail_entry {
    uint64_t msgid;
    char *path; /* relative to the account's output; NULL: not stored */
    char *line; /* its labels.jsonl line, without newline; NULL: none */
    bool seen;  /* listed by the server in this run */
};

struct mg_gmail_index {
    struct mg_gmail_entry *v; /* open addressing; msgid 0 is a free slot */
    size_t n, cap;
};

void mg_gmail_index_init(struct mg_gmail_index *ix);
void mg_gmail_index_finish(struct mg_gmail_index *ix);

/* The entry of msgid, added (empty) if absent and add is set; NULL when
 * absent (or out of memory). */
struct mg_gmail_entry *mg_gmail_index_get(struct mg_gmail_index *ix, uint64_t msgid, bool add);

/* Read the labels.jsonl of a previous run in dirfd (the account's output):
 * each line's msgid, path and the line itself. A missing file is no error;
 * lines that are not such objects are skipped (counted in *bad). */
enum mg_code mg_gmail_index_load(struct mg_gmail_index *ix, int dirfd, size_t *bad,
                                 struct mg_error *err);

/* Write every entry with a line to dirfd/labels.jsonl (dir names it in
 * messages), sorted by msgid, via a temp file renamed into place. */
enum mg_code mg_gmail_index_save(const struct mg_gmail_index *ix, int dirfd, const char *dir,
                                 struct mg_error *err);

/* The labels of a labels.jsonl line, copied into buf (cap bytes) with
 * out[i] pointing at each (at most max; those that do not fit are left
 * out). Returns how many; 0 for a line that is not such an object. */
size_t mg_gmail_line_labels(const char *line, char *buf, size_t cap, const char **out, size_t max);

#endif
