/*
 * store.h - messages on disk: OUTPUT/<mailbox>/<uid>.eml, written atomically.
 *
 * Owns the output layout, the run lock, and the durability protocol. A worker
 * fills an mg_batch: each message goes to a hidden temp file (O_EXCL,
 * O_NOFOLLOW, 0600) in the mailbox directory, with its mtime set to the
 * server's INTERNALDATE. mg_batch_commit then makes the whole batch durable
 * with one file-system flush, renames every temp file to its final name, and
 * flushes the directory once. A message counts as stored only once its final
 * name exists; a run killed at any moment leaves only temp files, which the
 * next run removes. Directories are 0700, files 0600.
 *
 * Memory: mg_store and mg_batch are created/destroyed by their owner; the
 * store must outlive its batches. Paths passed in are borrowed.
 * Thread-safety: an mg_store may be shared by threads (read-only after open);
 * each mg_batch belongs to one thread.
 */
#ifndef MAILGRAB_STORE_H
#define MAILGRAB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mailgrab/error.h"

#define MG_TMP_PREFIX ".mg-tmp-"

/*
 * Create OUTPUT (0700) if needed and take its run lock: an exclusive flock on
 * OUTPUT/.mailgrab.lock that the kernel drops when the process dies.
 * Returns the lock fd in *fd; MG_E_LOCKED if another run holds it.
 */
enum mg_code mg_store_lock(const char *output, int *fd, struct mg_error *err);

struct mg_store;

/* Open (creating 0700) OUTPUT/<component>, remove stale temp files, and
 * note which UIDs are already stored. component must be one safe path
 * component (see mboxname.h). */
enum mg_code mg_store_open(const char *output, const char *component, struct mg_store **out,
                           struct mg_error *err);
void mg_store_close(struct mg_store *st);

/* Was uid already stored when the store was opened? */
bool mg_store_has(const struct mg_store *st, uint32_t uid);
size_t mg_store_count(const struct mg_store *st);
const char *mg_store_dir(const struct mg_store *st);

struct mg_batch;

enum mg_code mg_batch_create(struct mg_store *st, unsigned worker, struct mg_batch **out,
                             struct mg_error *err);
void mg_batch_destroy(struct mg_batch *b);

/* Start a message's temp file; write its bytes; finish it as uid. */
enum mg_code mg_batch_begin(struct mg_batch *b, struct mg_error *err);
enum mg_code mg_batch_write(struct mg_batch *b, const char *bytes, size_t len,
                            struct mg_error *err);
enum mg_code mg_batch_end(struct mg_batch *b, uint32_t uid, time_t mtime, struct mg_error *err);
/* Throw away the message begun but not ended, if any. */
void mg_batch_drop_current(struct mg_batch *b);
bool mg_batch_in_message(const struct mg_batch *b);

size_t mg_batch_count(const struct mg_batch *b);

/* Make every ended message durable under its final name; on_stored is called
 * for each (may be NULL). Afterwards the batch is empty. */
enum mg_code mg_batch_commit(struct mg_batch *b,
                             void (*on_stored)(void *ctx, uint32_t uid, const char *path),
                             void *ctx, struct mg_error *err);
/* Remove every temp file of the batch (after a failed fetch). */
void mg_batch_discard(struct mg_batch *b);

/* Final file name of a message: "<uid>.eml". */
void mg_store_name(uint32_t uid, char *buf, size_t cap);

#endif
