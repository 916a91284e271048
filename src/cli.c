/* cli.c - see include/mailgrab/cli.h */
#include "mailgrab/cli.h"

#include <string.h>

#include "mailgrab/settings.h"
#include "mailgrab/shard.h"

void mg_cli_usage(FILE *f)
{
    fputs("usage: mailgrab [--server HOST --user USER] [options]\n"
          "       mailgrab login --provider gmail|outlook --oauth2-client-id ID ...\n"
          "       mailgrab stats DIR [options]\n"
          "       mailgrab verify [--server HOST --user USER] [options] [--offline]\n"
          "       mailgrab restore [--server HOST --user USER] [options] DIR\n"
          "       mailgrab estimate [--server HOST --user USER] [options] [--json]\n"
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
          "problems, 13 output holds another account's backup, 130 interrupted. Classes\n"
          "for schedulers: success 0; partial 1 (run again); later 3, 8, 9, 11 (come\n"
          "back later); permanent 2, 4-7, 10, 12, 13 (fix first); interrupted 130.\n"
          "--shard splits the config's accounts by name over N workers. Accounts\n"
          "of the config file sharing an output each get DIR/<account>. See mailgrab(1),\n"
          "mailgrab-verify(1), mailgrab.conf(5).\n",
          f);
}

void mg_cli_restore_usage(FILE *f)
{
    fputs("usage: mailgrab restore [--server HOST --user USER] [options] DIR\n"
          "\n"
          "Put the backup in DIR (eml or Maildir, every mailbox in it; NAME%uidvalidity=N\n"
          "generations go into NAME) back on the server: the files' bytes, INTERNALDATE\n"
          "from each file's mtime, flags from Maildir names; missing mailboxes are\n"
          "created. A journal in DIR (.mailgrab-restore-USER@SERVER:PORT) makes a rerun,\n"
          "or a run after one that was killed, append each message exactly once.\n"
          "--mailbox restores only the named mailboxes (UTF-8), repeatable.\n"
          "\n",
          f);
    mg_settings_help(MG_CMD_RESTORE, f);
    fputs("\n"
          "Exit codes: 0 all restored (or restored before), 1 some messages refused\n"
          "by the server (each named) or given up, 11 server quota (run again later),\n"
          "2-10 and 130 as for a backup. See mailgrab(1).\n",
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

void mg_cli_estimate_usage(FILE *f)
{
    fputs("usage: mailgrab estimate [--server HOST --user USER] [options] [--json]\n"
          "\n"
          "What a backup would download now: per mailbox and in total, the messages\n"
          "and bytes not yet stored in --output (on Gmail each message once), and the\n"
          "days that takes at the daily limit. Changes nothing.\n"
          "\n",
          f);
    mg_settings_help(MG_CMD_ESTIMATE, f);
    fputs("\n"
          "Exit codes: 0 estimated; 2-11 as for a backup. See mailgrab-estimate(1).\n",
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
    case MG_SET_EVENTS:
        o->events = v->text;
        break;
    case MG_SET_METRICS:
        o->metrics = v->text;
        break;
    case MG_SET_SHARD:
        if (!mg_shard_spec_ok(v->text))
            return mg_error_set(err, MG_E_USAGE,
                                "--shard must be I/N (1 <= I <= N), auto or auto/N, not '%s'",
                                v->text);
        o->shard = v->text;
        break;
    case MG_SET_HELP:
        o->action = MG_HELP;
        break;
    case MG_SET_LIMIT:
        o->limit = v->num;
        break;
    case MG_SET_ESTIMATE_JSON:
        o->json = true;
        break;
    case MG_SET_NO_COMPRESS:
        return mg_account_set(&o->over, s, v, err);
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
    } else if (argc > 1 && strcmp(argv[1], "estimate") == 0) {
        o->estimate = true;
        command = MG_CMD_ESTIMATE;
        argc--;
        argv++;
    }
    if (argc > 1 && strcmp(argv[1], "restore") == 0) {
        o->restore = true;
        command = MG_CMD_RESTORE;
        argc--;
        argv++;
    }
    enum mg_code rc =
        mg_settings_parse(command, argc, argv, apply, o, &extra, o->restore ? 1 : 0, &n, err);
    if (rc != MG_OK || o->action != MG_RUN)
        return rc;
    if (o->restore && n == 0)
        return mg_error_set(err, MG_E_USAGE,
                            "mailgrab restore needs the backup's directory: "
                            "mailgrab restore [options] DIR");
    if (o->restore)
        o->restore_dir = extra;
    if (a->password_file != NULL && a->password_command != NULL)
        return mg_error_set(err, MG_E_USAGE,
                            "give either --password-file or --password-command, not both");
    if (a->all_mailboxes == MG_YES && a->nmailboxes > 0)
        return mg_error_set(err, MG_E_USAGE, "give either --mailbox or --all-mailboxes, not both");
    if (o->shard != NULL && (o->account != NULL || a->server != NULL))
        return mg_error_set(err, MG_E_USAGE,
                            "--shard splits the accounts of the config file: give it without "
                            "--account and --server");
    if (o->events != NULL && strcmp(o->events, "-") == 0 &&
        (o->stats || (o->analysis.csv != NULL && strcmp(o->analysis.csv, "-") == 0)))
        return mg_error_set(err, MG_E_USAGE,
                            "--events - needs standard output to itself: give --events a file, or "
                            "the statistics (--stats, --csv -) another place");
    return MG_OK;
}
