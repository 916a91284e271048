/*
 * labels.h - the Gmail labels and thread ids of a backup (labels.jsonl in the
 * account's output directory), for the labels and thrid columns of the
 * per-message table.
 *
 * labels.jsonl has one JSON object per line; what is read of it is "path"
 * (relative to the account directory), "thrid" (a decimal string) and
 * "labels" (an array of strings). A line that is not such an object, or
 * longer than MG_LABELS_LINE_MAX, is skipped and counted; a later line for
 * the same path wins. Lookups are by the row's path.
 *
 * Memory grows with the backup's messages (about 100 bytes each), which
 * only Gmail backups with labels.jsonl pay.
 *
 * Owns: struct mg_labels owns every string; init/finish (finish accepts
 * zeroed). Thread-safety: one thread at a time.
 */
#ifndef MAILGRAB_LABELS_H
#define MAILGRAB_LABELS_H

#include <stddef.h>

#define MG_LABELS_LINE_MAX (64 * 1024)

struct mg_label_entry {
    char *path;
    char *labels; /* the labels as a JSON array, e.g. ["\\Inbox","Work/x"] */
    char *thrid;
    size_t seq; /* line order: the later line for a path wins */
};

struct mg_labels {
    struct mg_label_entry *v;
    size_t n, cap;
    size_t skipped; /* lines that were not usable */
};

void mg_labels_init(struct mg_labels *l);
void mg_labels_finish(struct mg_labels *l);

/* Read a labels.jsonl file (a missing file is not an error: nothing is read).
 * 0, or -1 on a read error or when memory ran out (errno set). */
int mg_labels_load(struct mg_labels *l, const char *file);
/* Add one line of labels.jsonl (bytes, no line break). 0, or -1 on OOM. */
int mg_labels_add_line(struct mg_labels *l, const char *line, size_t n);
/* Sort for lookups; call after the last add. */
void mg_labels_index(struct mg_labels *l);
/* The entry for path (path[0..n)), or NULL. */
const struct mg_label_entry *mg_labels_find(const struct mg_labels *l, const char *path, size_t n);

#endif
