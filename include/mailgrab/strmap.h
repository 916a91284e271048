/*
 * strmap.h - a hash table from byte-string keys to counters, used for the
 * statistics tables (senders, domains, keywords) and per-message word sets.
 *
 * Owns: a copy of every key, and each entry's optional nested map (sender
 * display names); mg_strmap_finish frees them all and accepts a zeroed map.
 * Pointers returned by mg_strmap_get stay valid until the next insertion.
 * Thread-safety: a map belongs to one thread at a time; no global state.
 */
#ifndef MAILGRAB_STRMAP_H
#define MAILGRAB_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mg_strmap;

struct mg_strmap_entry {
    char *key; /* NUL-terminated copy; NULL marks a free slot */
    size_t keylen;
    uint64_t count;
    uint64_t bytes;
    struct mg_strmap *sub; /* created on demand by the caller */
};

struct mg_strmap {
    struct mg_strmap_entry *slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
};

void mg_strmap_init(struct mg_strmap *m);
void mg_strmap_finish(struct mg_strmap *m);

/* Find key; with create, insert a zeroed entry if absent. NULL if absent or OOM. */
struct mg_strmap_entry *mg_strmap_get(struct mg_strmap *m, const char *key, size_t keylen,
                                      bool create);

/*
 * Entries sorted by count descending, then key ascending (bytewise). The array
 * is heap memory the caller frees; entries point into the map. NULL on OOM or
 * an empty map (*n = 0 then).
 */
struct mg_strmap_entry **mg_strmap_sorted(const struct mg_strmap *m, size_t *n);

#endif
