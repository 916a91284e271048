/*
 * store.h - messages on disk, written atomically, in one of two layouts:
 *   eml:     OUTPUT/<mailbox>/<uid>.eml
 *   maildir: OUTPUT/<mailbox>/{cur,new,tmp}/, names carrying ,U=<uid> and the
 *            server's flags as :2,FLAGS
 *
 * Owns the output layout, the run lock, UIDVALIDITY generations and the
 * durability protocol. Each mailbox directory records the UIDVALIDITY its
 * UIDs belong to (.mailgrab-state, written before any message). When the
 * server's UIDVALIDITY changes, nothing stored is touched: a new generation
 * starts beside it, OUTPUT/<mailbox>%uidvalidity=<N>.
 *
 * A worker fills an mg_batch: each message goes to an unnamed file
 * (O_TMPFILE, 0600; in tmp/ for Maildir) or, where the file system cannot
 * do that, a hidden temp file (O_EXCL, O_NOFOLLOW), with its mtime set to the
 * server's INTERNALDATE. mg_batch_commit then makes the whole batch durable
 * with one file-system flush, names every file (linkat, or rename), and
 * flushes the directory once. A message counts as stored only once its final
 * name exists; a run killed at any moment leaves only unnamed files, which
 * vanish, or temp files, which the next run removes. Directories are 0700,
 * files 0600.
 *
 * Whose backup a directory holds is recorded in it (.mailgrab-account:
 * account, server, user), and an account other than the one recorded is
 * refused (MG_E_OWNER) rather than mixed in. Several accounts sharing one
 * output each get a directory below it, OUTPUT/<account>, and OUTPUT is
 * marked shared; a backup kept directly in OUTPUT before is moved into its
 * account's directory by renames, never fetched again.
 *
 * Nothing below OUTPUT is reached through a symbolic link, and no existing
 * file is ever opened for writing: state and owner records are written to a
 * fresh temp file and renamed into place; the lock file is opened read-only.
 * A file or link where a mailbox directory belongs costs that mailbox only
 * (MG_E_PARTIAL, the path named).
 *
 * Each message's SHA-256 is computed in mg_batch_write as its bytes go by
 * (no second read) and appended to the mailbox's manifest (manifest.h) once
 * the batch's names are durable. Opening a store records, by reading each
 * once, the stored messages the manifest lacks (a run killed between naming
 * and recording, or a backup older than manifests). A manifest that cannot
 * be written costs a warning, never a message: the next run records what is
 * missing. The manifest is the one file appended to in place, and only when
 * it is a plain file with no other name (else it is replaced, manifest.h).
 * Naming never replaces an existing file: RENAME_NOREPLACE, or
 * where the file system lacks it, a hard link and unlink of the temp name.
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
#include "mailgrab/fsutil.h"

/*
 * Create OUTPUT (0700, and any missing directory above it) and take its run lock: an exclusive
 * flock on OUTPUT/.mailgrab.lock that the kernel drops when the process dies. Returns the lock fd
 * in *fd; MG_E_LOCKED if another run holds it.
 */
enum mg_code mg_store_lock(const char *output, int *fd, struct mg_error *err);

/* Who an account is, as recorded in the directory holding its backup.
 * Strings are borrowed. */
struct mg_store_owner {
    const char *account; /* its config section, or "command line" */
    const char *server;
    const char *user;
};

/*
 * OUTPUT (created, locked) is to hold who's backup alone: records who if
 * nothing is recorded yet (a backup already there is adopted). MG_E_OWNER if
 * another account is recorded, or OUTPUT is shared by several.
 */
enum mg_code mg_store_claim(const char *output, const struct mg_store_owner *who,
                            struct mg_error *err);

/*
 * OUTPUT (created, locked) is shared by several accounts, each in
 * OUTPUT/<component>: marks it so, creates and claims OUTPUT/<component>
 * for who. A backup kept directly in OUTPUT is moved into
 * OUTPUT/<component> when it is who's, or when it records no account and
 * adopt_unowned is set (the first account sharing the output); otherwise
 * MG_E_OWNER says which account to run first. A move cut short by a killed
 * run is finished by the next.
 */
enum mg_code mg_store_claim_shared(const char *output, const char *component,
                                   const struct mg_store_owner *who, bool adopt_unowned,
                                   struct mg_error *err);

struct mg_store;

/* In the order of settings.c's choices for --format. */
enum mg_format { MG_FORMAT_UNSET = -1, MG_FORMAT_EML, MG_FORMAT_MAILDIR };

/*
 * Open (creating 0700) the directory of OUTPUT/<component> for uidvalidity,
 * remove stale temp files, and note which UIDs are already stored.
 * component must be one safe path component (see mboxname.h). *new_generation
 * is set when the server's UIDVALIDITY differs from what was stored before.
 * uidvalidity 0 (the server gave none) means unknown: no generations, UIDs
 * are matched in the base directory, and a warning says so.
 * MG_E_PARTIAL: something not ours is in the way (named in err); this
 * mailbox only cannot be stored.
 */
enum mg_code mg_store_open(const char *output, const char *component, enum mg_format format,
                           uint32_t uidvalidity, struct mg_store **out, bool *new_generation,
                           struct mg_error *err);
void mg_store_close(struct mg_store *st);

/* The mailbox directories (those with a state file) already in output, for
 * mg_mbox_dir_names; none when output does not exist yet. Free the list
 * with mg_store_free_names. */
enum mg_code mg_store_mailbox_dirs(const char *output, char ***names, size_t *n,
                                   struct mg_error *err);
void mg_store_free_names(char **names, size_t n);

/* Was uid already stored when the store was opened? */
bool mg_store_has(const struct mg_store *st, uint32_t uid);
size_t mg_store_count(const struct mg_store *st);
const char *mg_store_dir(const struct mg_store *st);

struct mg_batch;

/* max_open: how many finished messages the batch may keep as open unnamed
 * files until commit; past that it uses named temp files, which need no
 * descriptor once written. */
enum mg_code mg_batch_create(struct mg_store *st, unsigned worker, size_t max_open,
                             struct mg_batch **out, struct mg_error *err);
void mg_batch_destroy(struct mg_batch *b);

/* Start a message's temp file; write its bytes; finish it as uid. */
enum mg_code mg_batch_begin(struct mg_batch *b, struct mg_error *err);
enum mg_code mg_batch_write(struct mg_batch *b, const char *bytes, size_t len,
                            struct mg_error *err);
/* flags: Maildir info letters (e.g. "FS"), sorted; ignored for eml. */
enum mg_code mg_batch_end(struct mg_batch *b, uint32_t uid, time_t mtime, const char *flags,
                          struct mg_error *err);
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

/*
 * Another name for a message stored elsewhere in the same output: how a
 * Gmail label folder holds the one copy of each message (gmail.h).
 * mg_store_name_of gives the name, relative to the mailbox directory, of a
 * message stored in st when the store was opened or linked since (the names
 * are read once, on first use; not thread-safe, unlike the rest of a store).
 * mg_store_link hard-links each src (relative to srcfd, a regular file, not
 * followed if a symlink) into st as uid with flags (Maildir), names made
 * durable with one flush, sums recorded in the manifest (read back, 'r');
 * a name taken already is left alone. mg_store_unlink_copies removes uids
 * whose file has another name (st_nlink > 1), manifest entries first: the
 * last copy of a message is never removed.
 */
struct mg_store_link {
    uint32_t uid;
    int srcfd;
    const char *src;
    const char *flags;
};
int mg_store_name_of(struct mg_store *st, uint32_t uid, char *out, size_t cap);
enum mg_code mg_store_link(struct mg_store *st, const struct mg_store_link *v, size_t n,
                           size_t *linked, struct mg_error *err);
enum mg_code mg_store_unlink_copies(struct mg_store *st, const uint32_t *uids, size_t n,
                                    size_t *removed, struct mg_error *err);
/* A Maildir message's flags changed on the server: rename its file to carry
 * flags (Maildir letters, sorted) in its ":2," part, into cur/. 1 renamed,
 * 0 nothing to do (eml, not stored, the same flags), -1 failed (errno).
 * mg_store_flush_names makes the renames durable (one flush). */
int mg_store_set_flags(struct mg_store *st, uint32_t uid, const char *flags);
enum mg_code mg_store_flush_names(struct mg_store *st, struct mg_error *err);
/* The UIDs stored now (from the names); *uids is the caller's to free. */
size_t mg_store_stored(struct mg_store *st, uint32_t **uids);
/* The mailbox directory, open (borrowed). */
int mg_store_dirfd(const struct mg_store *st);

/*
 * What the last complete run saw, kept in the state file with the
 * UIDVALIDITY: every message with a UID below uidnext was stored, stored
 * messages in all. A run that finds the same UIDNEXT and no fewer files has
 * nothing to list; one that finds a higher UIDNEXT lists only from the
 * mark. Absent (zero) for a new directory, a state file from an older
 * mailgrab or one that cannot be read: the run lists everything. With
 * CONDSTORE, modseq lets a Maildir backup ask only which flags changed;
 * without it, flags_at keeps the full flag listing to once a day.
 * A Gmail backup (gmail.h) marks All Mail with gmail set when every folder
 * was backed up whole: modseq is All Mail's HIGHESTMODSEQ and flags_at the
 * time every folder was last listed in full.
 * mg_store_marked peeks at OUTPUT/<component> without opening a store;
 * mg_store_peek reads the UIDVALIDITY and mark recorded there (1), or says
 * there is no state file (0) or it cannot be read (-1).
 */
struct mg_store_mark {
    uint32_t uidnext;
    uint64_t stored;
    uint64_t modseq; /* the server's HIGHESTMODSEQ then (CONDSTORE); 0: unknown */
    time_t flags_at; /* without CONDSTORE: when every flag was last asked for */
    bool gmail;      /* written by a complete Gmail backup of every folder */
};
void mg_store_get_mark(const struct mg_store *st, struct mg_store_mark *m);
enum mg_code mg_store_set_mark(struct mg_store *st, const struct mg_store_mark *m,
                               struct mg_error *err);
bool mg_store_marked(const char *output, const char *component);
int mg_store_peek(const char *output, const char *component, uint32_t *uidvalidity,
                  struct mg_store_mark *m);

/* The layout this store writes. */
enum mg_format mg_store_format(const struct mg_store *st);

/* The UID a stored file's name carries in layout format; 0 if the name is
 * none of mailgrab's messages. */
uint32_t mg_store_name_uid(enum mg_format format, const char *name);

/*
 * Without creating or changing anything: the directory that holds
 * OUTPUT/<component>'s messages of generation uidvalidity, into dir.
 * Returns 1 if it exists, 0 if nothing was stored for that generation,
 * -1 if a state file cannot be read or the path is too long.
 */
int mg_store_locate(const char *output, const char *component, uint32_t uidvalidity, char *dir,
                    size_t cap);

#endif
