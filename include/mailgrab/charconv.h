/*
 * charconv.h - charset converters to UTF-8 (iconv descriptors), opened once
 * per process and reused.
 *
 * glibc loads the shared object behind a converter on iconv_open and unloads
 * it again on the last iconv_close, so opening one per message costs a
 * dlopen/dlclose pair (mapping and unmapping pages, TLB flushes) each time.
 * This cache keeps up to MG_CHARCONV_MAX converters open, keyed by the
 * charset name in upper case, the least recently used one evicted when a new
 * name needs a slot. Names iconv does not know are remembered too (as a
 * slot without a descriptor), so a run of unknown labels costs one lookup.
 * UTF-16, UTF-32 and their kin are never cached: glibc keeps the byte order
 * a byte-order mark announced across a reset.
 *
 * Owns: every cached descriptor. A descriptor handed out by
 * mg_charconv_acquire belongs to the caller until mg_charconv_release, which
 * puts it back in its initial shift state (or closes it when it was not
 * cached). mg_charconv_clear closes every idle descriptor; it runs at exit.
 *
 * Thread-safety: all functions are thread-safe (one mutex around the table;
 * a descriptor in use is never handed to a second caller, who gets a fresh
 * one instead). The cache is per process: a forked child (the analyzer
 * workers) starts with a copy of the parent's converters and keeps its own.
 */
#ifndef MAILGRAB_CHARCONV_H
#define MAILGRAB_CHARCONV_H

#include <iconv.h>
#include <stddef.h>

#define MG_CHARCONV_MAX 16      /* converters kept open */
#define MG_CHARCONV_NAME_MAX 64 /* longer names are not cached */

/* A converter in use. */
struct mg_charconv {
    iconv_t cd;
    int slot; /* its cache slot, or -1: closed on release */
};

/*
 * A converter from charset name[0..n) to UTF-8, in its initial state.
 * Returns 0, or -1 when iconv does not know the charset (nothing to
 * release then).
 */
int mg_charconv_acquire(const char *name, size_t n, struct mg_charconv *c);
void mg_charconv_release(struct mg_charconv *c);

/* Close every converter not in use and forget unknown names. */
void mg_charconv_clear(void);

/* Counters since the process started (or since mg_charconv_clear). */
struct mg_charconv_counts {
    unsigned long opens;     /* iconv_open calls, known or not */
    unsigned long hits;      /* acquires served from the cache */
    unsigned long evictions; /* converters closed to make room */
    size_t cached;           /* slots in use */
};
void mg_charconv_counts(struct mg_charconv_counts *out);

#endif
