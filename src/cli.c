/* cli.c - see include/mailgrab/cli.h */
#include "mailgrab/cli.h"

#include "mailgrab/oauth2.h"
#include "mailgrab/store.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_ACCOUNT = 256,
    OPT_ALL_MAILBOXES,
    OPT_AUTH,
    OPT_CAFILE,
    OPT_CONFIG,
    OPT_CSV,
    OPT_FORMAT,
    OPT_OAUTH2_CAFILE,
    OPT_OAUTH2_CLIENT_ID,
    OPT_OAUTH2_CLIENT_SECRET_FILE,
    OPT_OAUTH2_REFRESH_TOKEN_FILE,
    OPT_OAUTH2_TOKEN_COMMAND,
    OPT_OAUTH2_TOKEN_URL,
    OPT_PASSWORD,
    OPT_PASSWORD_COMMAND,
    OPT_PASSWORD_FILE,
    OPT_PROVIDER,
    OPT_STATS,
    OPT_STOPWORDS,
    OPT_SUMMARY_JSON,
    OPT_TOP,
    OPT_TZ,
};

/* Sorted by long name. */
static const struct option options[] = {
    {"account", required_argument, NULL, OPT_ACCOUNT},
    {"all-mailboxes", no_argument, NULL, OPT_ALL_MAILBOXES},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"cafile", required_argument, NULL, OPT_CAFILE},
    {"chunks", required_argument, NULL, 'c'},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"csv", required_argument, NULL, OPT_CSV},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"help", no_argument, NULL, 'h'},
    {"limit", required_argument, NULL, 'l'},
    {"mailbox", required_argument, NULL, 'm'},
    {"oauth2-cafile", required_argument, NULL, OPT_OAUTH2_CAFILE},
    {"oauth2-client-id", required_argument, NULL, OPT_OAUTH2_CLIENT_ID},
    {"oauth2-client-secret-file", required_argument, NULL, OPT_OAUTH2_CLIENT_SECRET_FILE},
    {"oauth2-refresh-token-file", required_argument, NULL, OPT_OAUTH2_REFRESH_TOKEN_FILE},
    {"oauth2-token-command", required_argument, NULL, OPT_OAUTH2_TOKEN_COMMAND},
    {"oauth2-token-url", required_argument, NULL, OPT_OAUTH2_TOKEN_URL},
    {"output", required_argument, NULL, 'o'},
    {"password", required_argument, NULL, OPT_PASSWORD},
    {"password-command", required_argument, NULL, OPT_PASSWORD_COMMAND},
    {"password-file", required_argument, NULL, OPT_PASSWORD_FILE},
    {"port", required_argument, NULL, 'p'},
    {"provider", required_argument, NULL, OPT_PROVIDER},
    {"quiet", no_argument, NULL, 'q'},
    {"server", required_argument, NULL, 's'},
    {"stats", no_argument, NULL, OPT_STATS},
    {"stopwords", required_argument, NULL, OPT_STOPWORDS},
    {"summary-json", required_argument, NULL, OPT_SUMMARY_JSON},
    {"timeout", required_argument, NULL, 't'},
    {"top", required_argument, NULL, OPT_TOP},
    {"tz", required_argument, NULL, OPT_TZ},
    {"user", required_argument, NULL, 'u'},
    {"verbose", no_argument, NULL, 'v'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

void mg_cli_usage(FILE *f)
{
    fputs("usage: mailgrab [--server HOST --user USER] [options]\n"
          "       mailgrab login --provider gmail|outlook --oauth2-client-id ID ...\n"
          "       mailgrab stats DIR [--csv FILE|-] [--top N] [--tz ZONE] [--jobs N]\n"
          "\n"
          "Download IMAP mailboxes over TLS with parallel connections, one file per\n"
          "message, byte-identical to the server. Runs again fetch only what is new.\n"
          "\n"
          "  -s, --server HOST          IMAPS server (e.g. imap.gmail.com)\n"
          "  -p, --port PORT            IMAPS port (default 993)\n"
          "  -u, --user USER            login name\n"
          "  -m, --mailbox NAME         mailbox to download, repeatable (default INBOX)\n"
          "      --all-mailboxes        every mailbox the server lists\n"
          "  -c, --chunks N             parallel connections, 1-64 (default 4)\n"
          "  -o, --output DIR           where to store (default .)\n"
          "      --format eml|maildir   one <uid>.eml per message (default), or Maildir\n"
          "      --cafile FILE          trust the CA certificates in FILE (PEM)\n"
          "                             instead of the system store\n"
          "  -l, --limit N              fetch at most N new messages per mailbox\n"
          "  -t, --timeout SECS         give up on a silent server after SECS (default 60)\n"
          "      --password-file FILE   read the password from FILE (mode 0600)\n"
          "      --password-command CMD run CMD; its first output line is the password\n"
          "      --auth MECH            password (default), xoauth2 or oauthbearer\n"
          "      --provider NAME        gmail or outlook: server, port and token URL\n"
          "      --oauth2-client-id ID  OAuth2 client id\n"
          "      --oauth2-client-secret-file FILE\n"
          "      --oauth2-refresh-token-file FILE  written by mailgrab login\n"
          "      --oauth2-token-url URL the provider's token endpoint\n"
          "      --oauth2-token-command CMD  its first output line is an access token\n"
          "      --config FILE          read accounts from FILE (default\n"
          "                             ~/.config/mailgrab/config if it exists)\n"
          "      --account NAME         run only this account of the config file\n"
          "      --summary-json FILE    write a machine-readable summary of the run\n"
          "      --stats                analyse what was downloaded (in a separate\n"
          "                             process, while downloading) and print tables\n"
          "      --csv FILE|-           write those statistics as CSV\n"
          "      --top N, --tz ZONE, --stopwords FILE   as for mailgrab stats\n"
          "  -q, --quiet                print errors only\n"
          "  -v, --verbose              say what happens (repeat for more)\n"
          "  -h, --help                 this text\n"
          "  -V, --version              print the version\n"
          "\n"
          "The password comes from --password-file, --password-command, MAILGRAB_PASSWORD,\n"
          "or a prompt on the terminal; never from the command line.\n"
          "Exit codes: 0 ok (also when nothing is new), 1 some messages failed or arrived\n"
          "broken (not stored), 2 usage, 3 connect, 4 TLS, 5 authentication, 6 mailbox,\n"
          "7 local I/O, 8 protocol, 9 locked, 10 OAuth2 token, 11 server quota,\n"
          "130 interrupted. See mailgrab(1), mailgrab.conf(5).\n",
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
    o->verbosity = MG_NORMAL;
    mg_account_init(&o->over, "command line");
    struct mg_account *a = &o->over;

    optind = 0; /* full reset, tests parse repeatedly */
    opterr = 0;
    int c;
    unsigned long v;
    while ((c = getopt_long(argc, argv, ":c:hl:m:o:p:qs:t:u:vV", options, NULL)) != -1) {
        switch (c) {
        case 's':
            a->server = optarg;
            break;
        case 'p':
            if (!parse_num(optarg, 1, 65535, &v))
                return mg_error_set(err, MG_E_USAGE, "--port wants a number from 1 to 65535");
            a->port = optarg;
            break;
        case 'u':
            a->user = optarg;
            break;
        case 'm':
            if (optarg[0] == '\0')
                return mg_error_set(err, MG_E_USAGE, "--mailbox wants a name");
            if (a->nmailboxes == MG_MAX_MAILBOXES)
                return mg_error_set(err, MG_E_USAGE, "too many --mailbox options (at most %d)",
                                    MG_MAX_MAILBOXES);
            a->mailboxes[a->nmailboxes++] = optarg;
            break;
        case OPT_ALL_MAILBOXES:
            a->all_mailboxes = 1;
            break;
        case 'c':
            if (!parse_num(optarg, 1, MG_MAX_CHUNKS, &v))
                return mg_error_set(err, MG_E_USAGE, "--chunks wants a number from 1 to %d",
                                    MG_MAX_CHUNKS);
            a->chunks = (unsigned)v;
            break;
        case 'o':
            a->output = optarg;
            break;
        case OPT_FORMAT: {
            enum mg_format f;
            if (mg_format_parse(optarg, &f) != 0)
                return mg_error_set(err, MG_E_USAGE, "--format wants eml or maildir");
            a->format = (int)f;
            break;
        }
        case 'l':
            if (!parse_num(optarg, 1, ULONG_MAX, &v))
                return mg_error_set(err, MG_E_USAGE, "--limit wants a positive number");
            o->limit = v;
            break;
        case 't':
            if (!parse_num(optarg, 1, 3600, &v))
                return mg_error_set(err, MG_E_USAGE, "--timeout wants seconds from 1 to 3600");
            a->timeout = (unsigned)v;
            break;
        case 'q':
            o->verbosity = MG_QUIET;
            break;
        case 'v':
            o->verbosity = o->verbosity < MG_VERBOSE ? MG_VERBOSE : MG_DEBUG;
            break;
        case 'h':
            o->action = MG_HELP;
            return MG_OK;
        case 'V':
            o->action = MG_VERSION;
            return MG_OK;
        case OPT_CAFILE:
            a->cafile = optarg;
            break;
        case OPT_AUTH:
            if (mg_auth_parse(optarg, &a->auth) != 0)
                return mg_error_set(err, MG_E_USAGE,
                                    "--auth wants password, xoauth2 or oauthbearer");
            break;
        case OPT_PROVIDER:
            if (mg_oauth2_provider(optarg) == NULL)
                return mg_error_set(err, MG_E_USAGE, "--provider wants gmail or outlook");
            a->provider = optarg;
            break;
        case OPT_OAUTH2_CAFILE:
            a->oauth2_cafile = optarg;
            break;
        case OPT_OAUTH2_CLIENT_ID:
            a->oauth2_client_id = optarg;
            break;
        case OPT_OAUTH2_CLIENT_SECRET_FILE:
            a->oauth2_client_secret_file = optarg;
            break;
        case OPT_OAUTH2_REFRESH_TOKEN_FILE:
            a->oauth2_refresh_token_file = optarg;
            break;
        case OPT_OAUTH2_TOKEN_COMMAND:
            a->oauth2_token_command = optarg;
            break;
        case OPT_OAUTH2_TOKEN_URL:
            a->oauth2_token_url = optarg;
            break;
        case OPT_CONFIG:
            o->config = optarg;
            break;
        case OPT_ACCOUNT:
            o->account = optarg;
            break;
        case OPT_SUMMARY_JSON:
            o->summary_json = optarg;
            break;
        case OPT_STATS:
            o->stats = true;
            break;
        case OPT_CSV:
            o->csv = optarg;
            break;
        case OPT_TOP:
            if (!parse_num(optarg, 1, 100000, &v))
                return mg_error_set(err, MG_E_USAGE, "--top wants a number from 1 to 100000");
            o->top = v;
            break;
        case OPT_TZ:
            o->tz = optarg;
            break;
        case OPT_STOPWORDS:
            o->stopwords = optarg;
            break;
        case OPT_PASSWORD:
            return mg_error_set(err, MG_E_USAGE,
                                "passwords are not taken on the command line (other users can "
                                "read it); use MAILGRAB_PASSWORD, --password-file or "
                                "--password-command");
        case OPT_PASSWORD_FILE:
            a->password_file = optarg;
            break;
        case OPT_PASSWORD_COMMAND:
            a->password_command = optarg;
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
    if (a->password_file != NULL && a->password_command != NULL)
        return mg_error_set(err, MG_E_USAGE,
                            "give either --password-file or --password-command, not both");
    if (a->all_mailboxes == 1 && a->nmailboxes > 0)
        return mg_error_set(err, MG_E_USAGE, "give either --mailbox or --all-mailboxes, not both");
    return MG_OK;
}
