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

#include "mailgrab/config.h"
#include "mailgrab/error.h"
#include "mailgrab/imap.h"

struct mg_mailbox_report {
    char name[1024]; /* UTF-8 */
    char dir[PATH_MAX];
    uint32_t uidvalidity;
    size_t listed;  /* on the server */
    size_t skipped; /* already stored */
    size_t fetched; /* new this run */
    size_t failed;
    size_t vanished;
    uint64_t bytes;
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
    unsigned connections; /* most sessions open at once */
    enum mg_code code;
    char error[MG_ERROR_MAX];
};

struct mg_backup_hooks {
    void (*on_stored)(void *ctx, uint32_t uid, const char *path);
    void *ctx;
};

/* Returns the account's exit code (also in rep->code). */
enum mg_code mg_backup_account(const struct mg_account *a, const struct mg_creds *cr,
                               unsigned long limit, const struct mg_backup_hooks *hooks,
                               struct mg_report *rep);
void mg_report_finish(struct mg_report *rep);

/* Print an error of account a; a named account's errors say which one. */
void mg_backup_err(const struct mg_account *a, const char *msg);

/* Write the run's reports as JSON to path (atomically, mode 0600). */
enum mg_code mg_summary_write(const char *path, const struct mg_report *reps, size_t n,
                              int exit_code, struct mg_error *err);

#endif
