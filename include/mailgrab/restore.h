/*
 * restore.h - mailgrab restore: put a backup (eml or Maildir, as the store
 * wrote it) back on a server, each message exactly once.
 *
 * Owns reading a backup directory back (every mailbox directory, its older
 * UIDVALIDITY generations NAME%uidvalidity=N merged into NAME), creating the
 * mailboxes on the server, appending with several sessions, and the restore
 * journal.
 *
 * Faithful: the file's bytes as they are; INTERNALDATE from the file's
 * mtime (the store sets it to the server's INTERNALDATE in both formats);
 * flags from the Maildir name's info (:2,DFRST; eml keeps none). A Gmail
 * backup (labels.jsonl) into a server with Gmail's extensions: All Mail into
 * the server's \All mailbox, each message once, labelled from labels.jsonl
 * before it counts as done; the label folders' hard links are left out.
 *
 * Exactly once: the journal DIR/.mailgrab-restore-<user@server:port> records
 * each message as attempted (A) before its APPEND is sent and as done (D,
 * with the APPENDUID where the server gives one) once the server has taken
 * it. A rerun skips what is done; a message attempted but not done (the
 * run was killed or the connection lost in between) is looked for on the
 * server (UID SEARCH by Message-ID and exact size, excluding UIDs the
 * journal already gave to other messages) and appended only if it is not
 * there. Lines are written with write(2) before the server is told
 * anything: a killed process loses none (a crash of the machine may).
 *
 * Memory: message bytes are streamed from their files (imap.h); one entry
 * per message (its path and a few numbers) is held for the run.
 * Thread-safety: one call at a time; it runs its own worker threads.
 */
#ifndef MAILGRAB_RESTORE_H
#define MAILGRAB_RESTORE_H

#include <stddef.h>

#include "mailgrab/backup.h"
#include "mailgrab/config.h"
#include "mailgrab/creds.h"
#include "mailgrab/error.h"

struct mg_restore_opts {
    const char *dir;              /* the backup: OUTPUT, or OUTPUT/<account> */
    const char *const *mailboxes; /* UTF-8 names to restore; none: all of them */
    size_t nmailboxes;
};

/* Restore o->dir into account a (its server, credentials, chunks and
 * timeout). rep gets one entry per mailbox: listed = messages in the backup,
 * skipped = restored before, fetched = appended now, failed = refused or
 * given up. Returns the exit code (also rep->code): MG_E_PARTIAL when a
 * message was refused (each one named in a warning), MG_E_LIMIT over a
 * quota (a rerun continues), MG_E_INTERRUPTED on a signal. */
enum mg_code mg_restore_account(const struct mg_account *a, const struct mg_creds *cr,
                                const struct mg_restore_opts *o, struct mg_report *rep);

/* The mailbox (UTF-8) a backup directory name restores into: the name
 * decoded from its path form (%XX), any %uidvalidity=N suffix dropped.
 * Returns 0, or -1 when it does not fit in cap. Pure. */
int mg_restore_box_name(const char *dir, char *out, size_t cap);

#endif
