/*
 * backup.h - one account's backup: log in once, then for each mailbox it
 * names (or every mailbox the server lists) open it read-only, list it,
 * skip what is already stored, and fetch the rest through one worker pool.
 *
 * Owns mailbox selection and naming on disk (case-insensitive collisions get
 * a suffix), where an account's backup goes (its output, or output/<account>
 * when other accounts of the config file share the output; see store.h),
 * the per-mailbox report, and the order of a run. A mailbox that
 * cannot be opened is reported and the others go on; credentials,
 * certificates, local I/O and signals stop the account.
 *
 * Memory: the report's arrays belong to the report (mg_report_finish).
 * Not thread-safe; called from main's thread.
 */
#ifndef MAILGRAB_BACKUP_H
#define MAILGRAB_BACKUP_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/budget.h"
#include "mailgrab/config.h"
#include "mailgrab/error.h"
#include "mailgrab/imap.h"
#include "mailgrab/mboxname.h"

struct mg_mailbox_report {
    char name[1024]; /* UTF-8 */
    char dir[PATH_MAX];
    uint32_t uidvalidity;
    size_t listed;    /* on the server */
    size_t skipped;   /* already stored */
    size_t fetched;   /* new this run */
    size_t linked;    /* Gmail: stored as a link to the copy in another folder */
    size_t unlinked;  /* Gmail: links removed (the label was taken off) */
    size_t reflagged; /* Maildir files renamed for flags changed on the server */
    size_t failed;
    size_t vanished;
    uint64_t bytes;      /* of the messages stored */
    uint64_t wire_bytes; /* received from the server for this mailbox, as sent
                          * (compressed when COMPRESS=DEFLATE is on) */
    double seconds;
    enum mg_code code;
    char error[MG_ERROR_MAX];
};

struct mg_report {
    const char *account;
    const char *server;
    const char *user;
    struct mg_mailbox_report *boxes;
    size_t nboxes;
    unsigned connections;  /* most sessions open at once */
    uint64_t wire_bytes;   /* received from the server in all, logins and listings too */
    uint64_t stored_bytes; /* of the messages stored, in all mailboxes */
    unsigned compressed;   /* sessions that ran with COMPRESS=DEFLATE */
    enum mg_code code;
    char error[MG_ERROR_MAX];
};

struct mg_progress;
/* What a run is told as the backup goes; any of them may be NULL. All but
 * on_stored are called from the caller's thread. */
struct mg_backup_hooks {
    /* sent: the message is sent mail by its mailbox's \Sent role or, on
     * Gmail, by its \Sent label. */
    void (*on_stored)(void *ctx, uint32_t uid, const char *path, bool sent);
    void *ctx;
    void (*on_mailbox_start)(void *ctx, const char *mailbox); /* UTF-8 */
    void (*on_mailbox_end)(void *ctx, const struct mg_mailbox_report *r);
    /* About four times a second while a mailbox downloads, once with done
     * set; pr->mailbox is the UTF-8 name. */
    void (*on_progress)(void *ctx, const struct mg_progress *pr);
    /* The run's --max-bytes and --max-time (may be NULL); each account
     * adds its daily limit (budget.h). Set by the backup: the budget. */
    struct mg_run_limits *run;
    struct mg_budget *budget;
};

/* Returns the account's exit code (also in rep->code). */
enum mg_code mg_backup_account(const struct mg_account *a, const struct mg_creds *cr,
                               unsigned long limit, const struct mg_backup_hooks *hooks,
                               struct mg_report *rep);
void mg_report_finish(struct mg_report *rep);

/* The mailboxes a backup of account a covers, named as the backup names
 * them (mailgrab verify looks where the backup stored). *out is the
 * caller's to free. */
struct mg_backup_box {
    char utf8[1024];                  /* as the user reads it */
    char imap[1024];                  /* as sent to the server */
    char path[MG_MBOX_PATH_MAX + 16]; /* its directory under the output */
    unsigned roles;                   /* enum mg_role (source.h) */
};
struct mg_pool;
/* Where account a's backup is (its output, or output/<account> when the
 * accounts of the config file share it), without creating or claiming it.
 * Returns 0, or -1 if the path does not fit in cap. */
int mg_backup_dir(const struct mg_account *a, char *dir, size_t cap);
/* One session to account a's server, logged in, for the commands that only
 * read (verify, estimate). The struct holds what the pool borrows; close it
 * with mg_backup_disconnect (also after a failure). */
struct mg_backup_conn {
    struct mg_tls_ctx *tls;
    struct mg_server srv;
    struct mg_imap_source is;
    struct mg_pool *pool;
};
enum mg_code mg_backup_connect(const struct mg_account *a, const struct mg_creds *cr,
                               struct mg_backup_conn *c, struct mg_error *err);
void mg_backup_disconnect(struct mg_backup_conn *c);

/* *gmail: the server has Gmail's extensions and these are several
 * mailboxes, so a backup stores each message once (All Mail first, Spam and
 * Trash left out of --all-mailboxes without spam_trash; gmail.h). */
enum mg_code mg_backup_mailboxes(const struct mg_account *a, struct mg_pool *pool,
                                 struct mg_backup_box **out, size_t *n, bool *gmail,
                                 struct mg_error *err);

/* Print an error of account a; a named account's errors say which one. */
void mg_backup_err(const struct mg_account *a, const char *msg);

/* The summary as json-c objects, new references for the caller to put:
 * one mailbox, one account, the whole run (what mg_summary_write writes;
 * the events of events.h carry the same objects). */
struct json_object;
struct json_object *mg_summary_box_json(const struct mg_mailbox_report *r);
struct json_object *mg_summary_account_json(const struct mg_report *rep);
struct json_object *mg_summary_json(const struct mg_report *reps, size_t n, int exit_code);

/* Write the run's reports as JSON to path (atomically, mode 0600). */
enum mg_code mg_summary_write(const char *path, const struct mg_report *reps, size_t n,
                              int exit_code, struct mg_error *err);

#endif
