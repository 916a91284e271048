/*
 * cli.h - the backup command's command line, parsed into mg_options.
 *
 * Owns what the options of a backup run mean; their names, ranges and help
 * lines are settings.h's. Account settings given here override the config
 * file (see config.h), so unset ones stay unset. No I/O beyond printing
 * help. Strings in mg_options point into argv. Not thread-safe (getopt);
 * called once from main.
 */
#ifndef MAILGRAB_CLI_H
#define MAILGRAB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "mailgrab/config.h"
#include "mailgrab/error.h"
#include "mailgrab/log.h"
#include "mailgrab/stats_cmd.h"

enum mg_action { MG_RUN, MG_HELP, MG_VERSION };

struct mg_options {
    enum mg_action action;
    struct mg_account over; /* what the command line sets, over any config */
    const char *config;     /* --config, NULL: the default path if it exists */
    const char *account;    /* --account, NULL: every account */
    const char *summary_json;
    const char *events;                /* --events FILE or "-" (events.h) */
    const char *metrics;               /* --metrics FILE (metrics.h) */
    const char *shard;                 /* --shard I/N, auto or auto/N, checked (shard.h) */
    bool stats;                        /* --stats: print statistics tables at the end */
    struct mg_stats_settings analysis; /* --csv, --top, --tz, --stopwords */
    unsigned long limit;               /* 0: no limit */
    unsigned long max_bytes;           /* --max-bytes, 0: none */
    unsigned long max_time;            /* --max-time in seconds, 0: none */
    enum mg_verbosity verbosity;
    bool verify;             /* mailgrab verify (verify.h) */
    bool offline;            /* verify --offline: the files against their manifests only */
    bool estimate;           /* mailgrab estimate (estimate.h) */
    bool json;               /* estimate --json */
    bool restore;            /* mailgrab restore (restore.h) */
    const char *restore_dir; /* its DIR operand */
};

/* argv[1] "verify" parses `mailgrab verify`, which takes the account options
 * and --offline (o->verify set); "estimate" `mailgrab estimate`, which takes
 * them and --json (o->estimate set); "restore" parses `mailgrab restore ...
 * DIR` (o->restore set, DIR in o->restore_dir). */
enum mg_code mg_cli_parse(int argc, char **argv, struct mg_options *o, struct mg_error *err);
void mg_cli_usage(FILE *f);
void mg_cli_verify_usage(FILE *f);
void mg_cli_estimate_usage(FILE *f);
void mg_cli_restore_usage(FILE *f);

#endif
