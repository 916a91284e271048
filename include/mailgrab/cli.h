/*
 * cli.h - the command line: one sorted option table, parsed into mg_options.
 *
 * Owns option syntax, defaults, range checks and the --help text. No I/O
 * beyond printing help/version. Strings in mg_options point into argv.
 * Not thread-safe (getopt); called once from main.
 */
#ifndef MAILGRAB_CLI_H
#define MAILGRAB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "mailgrab/error.h"
#include "mailgrab/log.h"

#define MG_MAX_CHUNKS 64

enum mg_action { MG_RUN, MG_HELP, MG_VERSION };

struct mg_options {
    enum mg_action action;
    const char *server;
    const char *port;
    const char *user;
    const char *mailbox;
    const char *output;
    const char *cafile;
    const char *password_file;
    const char *password_command;
    unsigned chunks;
    unsigned long limit; /* 0: no limit */
    unsigned timeout;    /* seconds */
    enum mg_verbosity verbosity;
};

enum mg_code mg_cli_parse(int argc, char **argv, struct mg_options *o, struct mg_error *err);
void mg_cli_usage(FILE *f);

#endif
