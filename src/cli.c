/* cli.c - see include/mailgrab/cli.h */
#include "mailgrab/cli.h"

#include <string.h>

#include "mailgrab/settings.h"

void mg_cli_usage(FILE *f)
{
    fputs("usage: mailgrab [--server HOST --user USER] [options]\n"
          "       mailgrab login --provider gmail|outlook --oauth2-client-id ID ...\n"
          "       mailgrab stats DIR [options]\n"
          "       mailgrab verify [--server HOST --user USER] [options] [--offline]\n"
          "\n"
          "Download IMAP mailboxes over TLS with parallel connections, one file per\n"
          "message, byte-identical to the server. Runs again fetch only what is new.\n"
          "\n",
          f);
    mg_settings_help(MG_CMD_BACKUP, f);
    fputs("\n"
          "Settings with a config file key (mailgrab.conf(5)) may also come from\n"
          "--config; the command line wins. The password comes from --password-file,\n"
          "--password-command, MAILGRAB_PASSWORD, or a prompt on the terminal; never\n"
          "from the command line. Commands get 30 s (MAILGRAB_HELPER_TIMEOUT=SECS to\n"
          "change). SIGINT, SIGTERM or SIGHUP stop a run at any stage: what is stored is\n"
          "complete, the summary and statistics are written, the exit code is 130.\n"
          "A message that arrives broken (NIL, or not its RFC822.SIZE bytes) is not\n"
          "stored and counts as failed.\n"
          "Exit codes: 0 ok (also when nothing is new), 1 some messages or listed mailboxes\n"
          "failed, 2 usage, 3 connect, 4 TLS, 5 authentication, 6 named mailbox, 7 local\n"
          "I/O, 8 protocol, 9 locked, 10 OAuth2 token, 11 come back later (server quota,\n"
          "throttling, --daily-limit, --max-bytes, --max-time), 12 verify found\n"
          "problems, 13 output holds another account's backup, 130 interrupted. Accounts\n"
          "of the config file sharing an output each get DIR/<account>. See mailgrab(1),\n"
          "mailgrab-verify(1), mailgrab.conf(5).\n",
          f);
}

void mg_cli_verify_usage(FILE *f)
{
    fputs("usage: mailgrab verify [--server HOST --user USER] [options] [--offline]\n"
          "\n"
          "Check the backup in --output: every message the server lists is stored with\n"
          "its size, and every stored file still has the SHA-256 recorded when it was\n"
          "stored. One line per problem on stdout (missing, deleted, altered, size,\n"
          "unexpected, unrecorded, damaged); nothing when the backup is whole.\n"
          "\n",
          f);
    mg_settings_help(MG_CMD_VERIFY, f);
    fputs("\n"
          "Exit codes: 0 whole, 12 problems found; 2-10 as for a backup. See\n"
          "mailgrab-verify(1).\n",
          f);
}

static enum mg_code apply(void *ctx, const struct mg_setting *s, const struct mg_value *v,
                          struct mg_error *err)
{
    struct mg_options *o = ctx;
    if (s->key != NULL)
        return mg_account_set(&o->over, s, v, err);
    if (mg_stats_setting(&o->analysis, s, v) || mg_verbosity_setting(&o->verbosity, s))
        return MG_OK;
    switch (s->id) {
    case MG_SET_ACCOUNT:
        o->account = v->text;
        break;
    case MG_SET_CONFIG:
        o->config = v->text;
        break;
    case MG_SET_HELP:
        o->action = MG_HELP;
        break;
    case MG_SET_LIMIT:
        o->limit = v->num;
        break;
    case MG_SET_MAX_BYTES:
        o->max_bytes = v->num;
        break;
    case MG_SET_MAX_TIME:
        o->max_time = v->num;
        break;
    case MG_SET_OFFLINE:
        o->offline = true;
        break;
    case MG_SET_STATS:
        o->stats = true;
        break;
    case MG_SET_SUMMARY_JSON:
        o->summary_json = v->text;
        break;
    case MG_SET_VERSION:
        o->action = MG_VERSION;
        break;
    default:
        return mg_error_set(err, MG_E_INTERNAL, "--%s has no use here", s->name);
    }
    return MG_OK;
}

enum mg_code mg_cli_parse(int argc, char **argv, struct mg_options *o, struct mg_error *err)
{
    memset(o, 0, sizeof(*o));
    o->action = MG_RUN;
    o->verbosity = MG_NORMAL;
    mg_account_init(&o->over, "command line");
    struct mg_account *a = &o->over;
    const char *extra;
    size_t n;
    unsigned command = MG_CMD_BACKUP;
    if (argc > 1 && strcmp(argv[1], "verify") == 0) {
        o->verify = true;
        command = MG_CMD_VERIFY;
        argc--;
        argv++;
    }
    enum mg_code rc = mg_settings_parse(command, argc, argv, apply, o, &extra, 0, &n, err);
    if (rc != MG_OK || o->action != MG_RUN)
        return rc;
    if (a->password_file != NULL && a->password_command != NULL)
        return mg_error_set(err, MG_E_USAGE,
                            "give either --password-file or --password-command, not both");
    if (a->all_mailboxes == MG_YES && a->nmailboxes > 0)
        return mg_error_set(err, MG_E_USAGE, "give either --mailbox or --all-mailboxes, not both");
    return MG_OK;
}
