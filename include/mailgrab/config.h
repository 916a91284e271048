/*
 * config.h - accounts: from the config file, the command line, and defaults.
 *
 * Owns the config file's meaning (its syntax is ini.h's): [defaults] and
 * [account NAME] sections, their keys, value checks, and errors that name
 * file:line. An mg_account holds what one backup needs; unset fields are
 * NULL / 0 / *_UNSET so that layers merge in order: built-in defaults <
 * [defaults] < [account NAME] < command line. Which keys exist, their types
 * and ranges are settings.h's.
 *
 * Memory: mg_config owns every string its accounts point to; an account
 * built by merging borrows from its sources. Not thread-safe.
 */
#ifndef MAILGRAB_CONFIG_H
#define MAILGRAB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/creds.h"
#include "mailgrab/error.h"
#include "mailgrab/settings.h"
#include "mailgrab/store.h"

#define MG_MAX_MAILBOXES 256

/* A yes/no setting that a layer may leave to the one below it. */
enum mg_yesno { MG_YESNO_UNSET = -1, MG_NO, MG_YES };

struct mg_account {
    const char *name; /* section name, or "command line" */
    const char *server;
    const char *port;
    const char *user;
    const char *password_file;
    const char *password_command;
    const char *output;
    const char *cafile;
    const char *mailboxes[MG_MAX_MAILBOXES];
    size_t nmailboxes;
    enum mg_yesno all_mailboxes;
    enum mg_yesno spam_trash; /* Gmail: Spam and Trash too */
    enum mg_format format;
    unsigned chunks;  /* 0 unset */
    unsigned timeout; /* 0 unset */
    enum mg_auth auth;
    const char *provider; /* "gmail", "outlook": fills server, port, token URL */
    const char *oauth2_token_url;
    const char *oauth2_client_id;
    const char *oauth2_client_secret_file;
    const char *oauth2_refresh_token_file;
    const char *oauth2_token_command;
    const char *oauth2_cafile; /* CA bundle for the token endpoint */
    enum mg_yesno compress;    /* COMPRESS=DEFLATE when offered (default yes) */
    /* Bytes per rolling 24 h (budget.h); set says it was given (0: none),
     * unset means the provider's default (Gmail's, or none). */
    uint64_t daily_limit;
    bool daily_limit_set;
    /* Set by mg_config_share_outputs: another account of the config file
     * has the same output, so this one keeps its mail in output/<name>;
     * the first of them in the file takes over a backup with no record of
     * its account kept directly in output. */
    bool output_shared;
    bool output_first;
};

struct mg_config {
    char path[4096];
    struct mg_account defaults;
    struct mg_account *accounts;
    size_t naccounts;
    char **strings; /* owned copies */
    size_t nstrings, capstrings;
};

/* Set the account field of setting s (one with a config key) to v. Strings
 * are borrowed: they must outlive the account. */
enum mg_code mg_account_set(struct mg_account *a, const struct mg_setting *s,
                            const struct mg_value *v, struct mg_error *err);

/* An account with every field unset. */
void mg_account_init(struct mg_account *a, const char *name);

/*
 * Load path into cfg. A missing file is an error only when required (given
 * with --config); otherwise cfg is left empty. A file readable by group or
 * others is refused. Errors name file:line.
 */
enum mg_code mg_config_load(const char *path, bool required, struct mg_config *cfg,
                            struct mg_error *err);
void mg_config_finish(struct mg_config *cfg);

/* $XDG_CONFIG_HOME/mailgrab/config, or ~/.config/mailgrab/config. */
void mg_config_default_path(char *buf, size_t cap);

/* Fields set in src override dst. Mailboxes are replaced as a whole. */
void mg_account_merge(struct mg_account *dst, const struct mg_account *src);

/*
 * Mark the accounts of this run (run[0..n), merged) whose output another
 * account of cfg also has: as it is in this run if it runs, else as the
 * file gives it. Outputs are compared as written, less "." components and
 * repeated or trailing slashes.
 */
void mg_config_share_outputs(const struct mg_config *cfg, struct mg_account *run, size_t n);

/* Fill what is still unset with built-in defaults; check what is required. */
enum mg_code mg_account_finish(struct mg_account *a, struct mg_error *err);

/* The account's daily download limit in bytes (0: none): the one given,
 * else its provider's default, by host name, or Gmail's when the server
 * showed Gmail's extensions (gmail). */
uint64_t mg_account_daily_limit(const struct mg_account *a, bool gmail);

#endif
