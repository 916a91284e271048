/*
 * estimate.h - `mailgrab estimate`: what a backup would download, without
 * downloading it.
 *
 *   mailgrab estimate [connection and config options] [--output DIR] [--json]
 *
 * Lists each mailbox a backup of the account covers (the same selection:
 * --mailbox, --all-mailboxes, Gmail's All Mail first and Spam/Trash only
 * with --spam-trash) and counts the messages and RFC822.SIZE bytes not yet
 * stored in the output. On Gmail each message counts once, by X-GM-MSGID,
 * and not at all when labels.jsonl says it is stored already: exactly what
 * the next backup fetches (it links the rest). Nothing is created or
 * changed, locally or on the server (EXAMINE, read-only).
 *
 * Memory: an mg_estimate owns its mailbox rows. Not thread-safe.
 */
#ifndef MAILGRAB_ESTIMATE_H
#define MAILGRAB_ESTIMATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mailgrab/config.h"
#include "mailgrab/creds.h"
#include "mailgrab/error.h"

struct mg_estimate_box {
    char name[1024]; /* UTF-8 */
    size_t listed;   /* on the server */
    size_t stored;   /* already in the backup, or to be linked (Gmail) */
    size_t messages; /* to download */
    uint64_t bytes;
};

struct mg_estimate {
    const char *account;
    bool gmail;
    struct mg_estimate_box *boxes;
    size_t nboxes;
    size_t messages;
    uint64_t bytes;
    uint64_t daily_limit; /* bytes a day the account may download; 0: none */
};

/* Estimate account a's next backup into *e (zeroed first). */
enum mg_code mg_estimate_account(const struct mg_account *a, const struct mg_creds *cr,
                                 struct mg_estimate *e, struct mg_error *err);
void mg_estimate_finish(struct mg_estimate *e);

/* Days account e's downloads take at its daily limit (0 when nothing is to
 * be downloaded; 1 without a limit). */
uint64_t mg_estimate_days(const struct mg_estimate *e);

/* Print the estimates of n accounts: a table, or with json one JSON object
 * {"messages","bytes","days","accounts":[{"account","gmail","messages",
 * "bytes","days","daily_limit","mailboxes":[...]}]}; days at the top is
 * the most any account takes (accounts have quotas of their own). Returns
 * 0, or -1 when f could not be written. */
int mg_estimate_print(FILE *f, const struct mg_estimate *v, size_t n, bool json);

#endif
