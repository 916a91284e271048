/*
 * verify.h - `mailgrab verify`: is a backup whole?
 *
 *   mailgrab verify [connection and config options] [--output DIR] [--offline]
 *
 * Checks each mailbox directory's files against its manifest (manifest.h)
 * and, unless --offline, the current UIDVALIDITY generation against the
 * server's listing (UIDs and RFC822.SIZE). One line on stdout per problem:
 *
 *   missing MBOX uid N        the server lists N, nothing is stored for it
 *   deleted MBOX/NAME         recorded in the manifest, the file is gone
 *   altered MBOX/NAME         size or SHA-256 differ from the manifest
 *   size MBOX/NAME ...        the stored size differs from the server's
 *   unexpected MBOX/NAME      a file mailgrab did not write (or a second file
 *                             for one UID, or one that is not a plain file)
 *   unrecorded MBOX/NAME      a stored message without a manifest entry (a
 *                             run killed before recording it, or a backup made
 *                             before manifests): the next backup records it
 *   damaged MBOX/.mailgrab-manifest line N   a line that is no entry
 *
 * MBOX is the mailbox directory relative to OUTPUT ("<account>/<mailbox>"
 * when accounts of the config file share OUTPUT). Files are found by the
 * UID in their name, so a Maildir file renamed for its flags is the same
 * message (a Maildir's tmp/ is not looked at). Names are printed with
 * control bytes as %XX.
 *
 * Owns nothing past a call. Not thread-safe (one verify per process).
 */
#ifndef MAILGRAB_VERIFY_H
#define MAILGRAB_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mailgrab/config.h"
#include "mailgrab/error.h"
#include "mailgrab/imap.h"
#include "mailgrab/plan.h"

struct mg_verify_tally {
    size_t mailboxes;
    size_t checked; /* stored messages found (one file per UID) */
    size_t missing, deleted, altered, size, unexpected, unrecorded, damaged;
};

/* Problems counted in t. */
size_t mg_verify_problems(const struct mg_verify_tally *t);

/*
 * Check the mailbox directory dir (label: how lines name it), writing one
 * line per problem to out. server: the mailbox's listing for the generation
 * stored in dir, sorted by UID, or NULL to check the files only. Returns
 * MG_OK when it could look (whatever it found), or MG_E_IO.
 */
enum mg_code mg_verify_dir(const char *dir, const char *label, const struct mg_msglist *server,
                           FILE *out, struct mg_verify_tally *t, struct mg_error *err);

/*
 * Verify one account's backup in a->output: against the server (cr: its
 * credentials) or, with offline, every mailbox directory found under the
 * output (or those a->mailboxes names, each with its older generations).
 * Errors that stop the account are printed; returns MG_OK or that error's
 * code (problems found are only counted in t).
 */
enum mg_code mg_verify_account(const struct mg_account *a, const struct mg_creds *cr, bool offline,
                               struct mg_verify_tally *t);

/* The one-line summary on stderr (unless quiet), and the exit code of a
 * verify run whose worst error was rc. */
int mg_verify_finish(const struct mg_verify_tally *t, enum mg_code rc);

#endif
