/* cli.c - see include/mailgrab/cli.h */
#include "mailgrab/cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_CAFILE = 256,
    OPT_PASSWORD,
    OPT_PASSWORD_COMMAND,
    OPT_PASSWORD_FILE,
};

/* Sorted by long name. */
static const struct option options[] = {
    {"cafile", required_argument, NULL, OPT_CAFILE},
    {"chunks", required_argument, NULL, 'c'},
    {"help", no_argument, NULL, 'h'},
    {"limit", required_argument, NULL, 'l'},
    {"mailbox", required_argument, NULL, 'm'},
    {"output", required_argument, NULL, 'o'},
    {"password", required_argument, NULL, OPT_PASSWORD},
    {"password-command", required_argument, NULL, OPT_PASSWORD_COMMAND},
    {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
    {"port", required_argument, NULL, 'p'},
    {"quiet", no_argument, NULL, 'q'},
    {"server", required_argument, NULL, 's'},
    {"timeout", required_argument, NULL, 't'},
    {"user", required_argument, NULL, 'u'},
    {"verbose", no_argument, NULL, 'v'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

void mg_cli_usage(FILE *f)
{
    fputs("usage: mailgrab --server HOST --user USER [options]\n"
          "       mailgrab stats DIR [--csv FILE|-] [--top N] [--tz ZONE] [--jobs N]\n"
          "\n"
          "Download an IMAP mailbox over TLS with parallel connections, one .eml\n"
          "file per message: OUTPUT/<mailbox>/<uid>.eml, byte-identical to the server.\n"
          "\n"
          "  -s, --server HOST          IMAPS server (e.g. imap.gmail.com)\n"
          "  -p, --port PORT            IMAPS port (default 993)\n"
          "  -u, --user USER            login name\n"
          "  -m, --mailbox NAME         mailbox to download (default INBOX)\n"
          "  -c, --chunks N             parallel connections, 1-64 (default 4)\n"
          "  -o, --output DIR           where to store (default .)\n"
          "      --cafile FILE          trust the CA certificates in FILE (PEM)\n"
          "                             instead of the system store\n"
          "  -l, --limit N              fetch at most N messages (lowest UIDs first)\n"
          "  -t, --timeout SECS         give up on a silent server after SECS (default 60)\n"
          "      --password-file FILE   read the password from FILE (mode 0600)\n"
          "      --password-command CMD run CMD; its first output line is the password\n"
          "  -q, --quiet                print errors only\n"
          "  -v, --verbose              say what happens (repeat for more)\n"
          "  -h, --help                 this text\n"
          "  -V, --version              print the version\n"
          "\n"
          "The password comes from MAILGRAB_PASSWORD, --password-file, --password-command,\n"
          "or a prompt on the terminal; never from the command line.\n"
          "Exit codes: 0 ok, 1 some messages failed, 2 usage, 3 connect, 4 TLS,\n"
          "5 authentication, 6 mailbox, 7 local I/O, 8 protocol, 9 locked, 130 interrupted.\n"
          "See mailgrab(1).\n",
          f);
}

static bool parse_num(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    if (s[0] == '-' || s[0] == '+' || s[0] == '\0')
        return false;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

enum mg_code mg_cli_parse(int argc, char **argv, struct mg_options *o, struct mg_error *err)
{
    memset(o, 0, sizeof(*o));
    o->action = MG_RUN;
    o->port = "993";
    o->mailbox = "INBOX";
    o->output = ".";
    o->chunks = 4;
    o->timeout = 60;
    o->verbosity = MG_NORMAL;

    optind = 0; /* full reset, tests parse repeatedly */
    opterr = 0;
    int c;
    unsigned long v;
    while ((c = getopt_long(argc, argv, ":c:hl:m:o:p:qs:t:u:vV", options, NULL)) != -1) {
        switch (c) {
        case 's':
            o->server = optarg;
            break;
        case 'p':
            if (!parse_num(optarg, 1, 65535, &v))
                return mg_error_set(err, MG_E_USAGE, "--port wants a number from 1 to 65535");
            o->port = optarg;
            break;
        case 'u':
            o->user = optarg;
            break;
        case 'm':
            if (optarg[0] == '\0')
                return mg_error_set(err, MG_E_USAGE, "--mailbox wants a name");
            o->mailbox = optarg;
            break;
        case 'c':
            if (!parse_num(optarg, 1, MG_MAX_CHUNKS, &v))
                return mg_error_set(err, MG_E_USAGE, "--chunks wants a number from 1 to %d",
                                    MG_MAX_CHUNKS);
            o->chunks = (unsigned)v;
            break;
        case 'o':
            o->output = optarg;
            break;
        case 'l':
            if (!parse_num(optarg, 1, ULONG_MAX, &v))
                return mg_error_set(err, MG_E_USAGE, "--limit wants a positive number");
            o->limit = v;
            break;
        case 't':
            if (!parse_num(optarg, 1, 3600, &v))
                return mg_error_set(err, MG_E_USAGE, "--timeout wants seconds from 1 to 3600");
            o->timeout = (unsigned)v;
            break;
        case 'q':
            o->verbosity = MG_QUIET;
            break;
        case 'v':
            if (o->verbosity < MG_DEBUG)
                o->verbosity = o->verbosity < MG_VERBOSE ? MG_VERBOSE : MG_DEBUG;
            break;
        case 'h':
            o->action = MG_HELP;
            return MG_OK;
        case 'V':
            o->action = MG_VERSION;
            return MG_OK;
        case OPT_CAFILE:
            o->cafile = optarg;
            break;
        case OPT_PASSWORD:
            return mg_error_set(err, MG_E_USAGE,
                                "passwords are not taken on the command line (other users can "
                                "read it); use MAILGRAB_PASSWORD, --password-file or "
                                "--password-command");
        case OPT_PASSWORD_FILE:
            o->password_file = optarg;
            break;
        case OPT_PASSWORD_COMMAND:
            o->password_command = optarg;
            break;
        case ':':
            return mg_error_set(err, MG_E_USAGE, "option %s needs a value", argv[optind - 1]);
        default:
            return mg_error_set(err, MG_E_USAGE, "unknown option %s (see --help)",
                                argv[optind - 1]);
        }
    }
    if (optind < argc)
        return mg_error_set(err, MG_E_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    if (o->server == NULL)
        return mg_error_set(
            err, MG_E_USAGE,
            "no server given: use --server HOST (try scripts/demo for a local one)");
    if (o->user == NULL)
        return mg_error_set(err, MG_E_USAGE, "no user given: use --user NAME");
    if (o->password_file != NULL && o->password_command != NULL)
        return mg_error_set(err, MG_E_USAGE,
                            "give either --password-file or --password-command, not both");
    return MG_OK;
}
