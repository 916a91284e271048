/*
 * cli.h - the command line: one sorted option table, parsed into mg_options.
 *
 * Owns option syntax, range checks and the --help text. Account settings
 * given here override the config file (see config.h), so unset ones stay
 * unset. No I/O beyond printing help. Strings in mg_options point into argv.
 * Not thread-safe (getopt); called once from main.
 */
#ifndef MAILGRAB_CLI_H
#define MAILGRAB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "mailgrab/config.h"
#include "mailgrab/error.h"
#include "mailgrab/log.h"

#define MG_MAX_CHUNKS 64

enum mg_action { MG_RUN, MG_HELP, MG_VERSION };

struct mg_options {
    enum mg_action action;
    struct mg_account over; /* what the command line sets, over any config */
    const char *config;     /* --config, NULL: the default path if it exists */
    const char *account;    /* --account, NULL: every account */
    const char *summary_json;
    unsigned long limit; /* 0: no limit */
    enum mg_verbosity verbosity;
};

enum mg_code mg_cli_parse(int argc, char **argv, struct mg_options *o, struct mg_error *err);
void mg_cli_usage(FILE *f);

#endif
