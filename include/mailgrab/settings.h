/*
 * settings.h - every option of every command and every config file key, in
 * one table.
 *
 * Owns, per setting: the long and short option names, the config key, the
 * value's type and range (or its choices), the argument name and help line
 * shown by --help, and which commands take it. From the table come getopt's
 * option arrays (so --name=value works everywhere), the --help listings, the
 * config file's key checks, and every range error, worded once.
 *
 * What a setting does is the caller's: parsing checks each value and hands
 * (setting, value) to the caller's apply function. A setting with a config
 * key is an account setting (config.h): the command line overrides the file.
 *
 * Memory: the table is static; mg_value strings borrow from argv or from
 * the parser's line. Thread-safety: mg_settings_parse uses getopt (global
 * state): call it from one thread.
 */
#ifndef MAILGRAB_SETTINGS_H
#define MAILGRAB_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mailgrab/error.h"
#include "mailgrab/log.h"

/* Commands, as a bit set of the ones that take a setting. */
enum mg_command {
    MG_CMD_BACKUP = 1u << 0,   /* mailgrab [options] */
    MG_CMD_LOGIN = 1u << 1,    /* mailgrab login */
    MG_CMD_STATS = 1u << 2,    /* mailgrab stats DIR */
    MG_CMD_VERIFY = 1u << 3,   /* mailgrab verify [options] */
    MG_CMD_ESTIMATE = 1u << 4, /* mailgrab estimate [options] */
    MG_CMD_RESTORE = 1u << 5,  /* mailgrab restore [options] DIR */
};

enum mg_setting_id {
    MG_SET_ACCOUNT,
    MG_SET_ALL_MAILBOXES,
    MG_SET_AUTH,
    MG_SET_CAFILE,
    MG_SET_CHUNKS,
    MG_SET_COMPRESS,
    MG_SET_CONFIG,
    MG_SET_CSV,
    MG_SET_DAILY_LIMIT,
    MG_SET_FORMAT,
    MG_SET_HELP,
    MG_SET_JOBS,
    MG_SET_ESTIMATE_JSON,
    MG_SET_LIMIT,
    MG_SET_LOGIN_TIMEOUT,
    MG_SET_MAILBOX,
    MG_SET_NO_COMPRESS,
    MG_SET_MAX_BYTES,
    MG_SET_MAX_TIME,
    MG_SET_OAUTH2_AUTH_URL,
    MG_SET_OAUTH2_CAFILE,
    MG_SET_OAUTH2_CLIENT_ID,
    MG_SET_OAUTH2_CLIENT_SECRET_FILE,
    MG_SET_OAUTH2_REFRESH_TOKEN_FILE,
    MG_SET_OAUTH2_SCOPE,
    MG_SET_OAUTH2_TOKEN_COMMAND,
    MG_SET_OAUTH2_TOKEN_URL,
    MG_SET_OFFLINE,
    MG_SET_OUTPUT,
    MG_SET_PASSWORD,
    MG_SET_PASSWORD_COMMAND,
    MG_SET_PASSWORD_FILE,
    MG_SET_PORT,
    MG_SET_PROVIDER,
    MG_SET_QUIET,
    MG_SET_SERVER,
    MG_SET_SPAM_TRASH,
    MG_SET_STATS,
    MG_SET_STOPWORDS,
    MG_SET_SUMMARY_JSON,
    MG_SET_TIMEOUT,
    MG_SET_TOP,
    MG_SET_TZ,
    MG_SET_USER,
    MG_SET_VERBOSE,
    MG_SET_VERSION,
    MG_SET_EVENTS,
    MG_SET_METRICS,
    MG_SET_SHARD,
    MG_SET_HTML,
    MG_SET_JSON,
    MG_SET_ME,
    MG_SET_MESSAGES_CSV,
};

enum mg_setting_type {
    MG_TYPE_FLAG,    /* option without a value; in a config file: yes/no */
    MG_TYPE_STRING,  /* any non-empty text */
    MG_TYPE_NUMBER,  /* decimal from min to max */
    MG_TYPE_CHOICE,  /* one of choices[]; the value's index is the enum value */
    MG_TYPE_TZ,      /* a time zone name the system knows, or a POSIX TZ rule */
    MG_TYPE_REFUSED, /* never accepted; `help` says why and what instead */
    /* bytes: digits with K, M or G (powers of 1000); "none" is 0 */
    MG_TYPE_SIZE,
    /* seconds: digits with s, m, h or d */
    MG_TYPE_DURATION,
};

#define MG_CHOICES_MAX 4

struct mg_setting {
    enum mg_setting_id id;
    const char *name; /* long option, NULL: config file only */
    char short_name;  /* '\0': none */
    const char *key;  /* config file key, NULL: command line only */
    enum mg_setting_type type;
    const char *arg; /* the value's name in --help ("HOST") */
    unsigned long min, max;
    const char *choices[MG_CHOICES_MAX]; /* MG_TYPE_CHOICE, NULL-terminated */
    bool repeat;                         /* may be given several times (each value applied) */
    const char *help;                    /* one line; "" keeps it out of --help (e.g. --password) */
    unsigned commands;                   /* enum mg_command bits */
};

struct mg_value {
    const char *text;  /* as given; NULL for a flag on the command line */
    unsigned long num; /* MG_TYPE_NUMBER, or the choice's index */
    bool yes;          /* MG_TYPE_FLAG */
    /* num also holds MG_TYPE_SIZE's bytes and MG_TYPE_DURATION's seconds */
};

/* The whole table, sorted by long name (config-only keys by key). */
const struct mg_setting *mg_settings(size_t *n);

/* The setting with config key `key`, or NULL. */
const struct mg_setting *mg_setting_by_key(const char *key);

/* Check text against s (text may be NULL for a flag given as an option).
 * On failure, why holds "<what> must be ..., not 'text'" without the name. */
bool mg_setting_check(const struct mg_setting *s, const char *text, struct mg_value *v, char *why,
                      size_t cap);

/* Called for each option given, in order. A non-MG_OK return stops the
 * parse with err set. */
typedef enum mg_code (*mg_setting_apply)(void *ctx, const struct mg_setting *s,
                                         const struct mg_value *v, struct mg_error *err);

/*
 * Parse argv[1..] for `command` with getopt_long: short and long options,
 * --name=value and --name value. Operands (arguments that are not options)
 * are collected into operands (at most max_operands; more is a usage error),
 * *noperands set. --help and --version are applied like any setting.
 */
enum mg_code mg_settings_parse(unsigned command, int argc, char **argv, mg_setting_apply apply,
                               void *ctx, const char **operands, size_t max_operands,
                               size_t *noperands, struct mg_error *err);

/* The option list of --help for command, one line per setting (wrapped). */
void mg_settings_help(unsigned command, FILE *f);

/* -q and -v, taken into *level when s is one of them; false otherwise. */
bool mg_verbosity_setting(enum mg_verbosity *level, const struct mg_setting *s);

/* A time zone mailgrab can use for --tz / tz: "UTC", a POSIX rule with a
 * digit (EST5EDT), or a zoneinfo name that exists. */
bool mg_tz_known(const char *tz);

/* Does command take setting s? (restore takes its options by rule, not by
 * the table's bits: see settings.c.) */
bool mg_setting_for(const struct mg_setting *s, unsigned command);

#endif
