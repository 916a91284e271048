/* settings.c - see include/mailgrab/settings.h */
#include "mailgrab/settings.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mailgrab/budget.h"

#define B MG_CMD_BACKUP
#define L MG_CMD_LOGIN
#define S MG_CMD_STATS
#define V MG_CMD_VERIFY
#define E MG_CMD_ESTIMATE

/* Sorted by long name; a config-only key sorts by its key. */
static const struct mg_setting table[] = {
    {MG_SET_ACCOUNT, "account", 0, NULL, MG_TYPE_STRING, "NAME",
     .help = "run only this account of the config file", .commands = B | V | E},
    {MG_SET_ALL_MAILBOXES, "all-mailboxes", 0, "all_mailboxes", MG_TYPE_FLAG,
     .help = "every mailbox the server lists", .commands = B | V | E},
    {MG_SET_AUTH, "auth", 0, "auth", MG_TYPE_CHOICE, "MECH",
     .choices = {"password", "xoauth2", "oauthbearer"},
     .help = "how to log in (default password; OAuth2 when a token source is given)",
     .commands = B | V | E},
    {MG_SET_CAFILE, "cafile", 0, "cafile", MG_TYPE_STRING, "FILE",
     .help = "trust the CA certificates in FILE (PEM) instead of the system store",
     .commands = B | V | E},
    {MG_SET_CHUNKS, "chunks", 'c', "chunks", MG_TYPE_NUMBER, "N", 1, 64,
     .help = "parallel connections (default 4; Gmail allows 15)", .commands = B},
    {MG_SET_COMPRESS, "compress", 0, "compress", MG_TYPE_FLAG,
     .help = "use COMPRESS=DEFLATE when the server offers it (the default)", .commands = B | V},
    {MG_SET_CONFIG, "config", 0, NULL, MG_TYPE_STRING, "FILE",
     .help = "read accounts from FILE (default ~/.config/mailgrab/config if it exists)",
     .commands = B | V | E},
    {MG_SET_CSV, "csv", 0, NULL, MG_TYPE_STRING, "FILE|-",
     .help = "write the statistics as CSV (stat,key,value) to FILE or standard output",
     .commands = B | S},
    {MG_SET_DAILY_LIMIT, "daily-limit", 0, "daily_limit", MG_TYPE_SIZE, "SIZE",
     .help = "fetch at most SIZE (K/M/G) per rolling 24 h, over runs (Gmail: 2000M; none)",
     .commands = B | E},
    {MG_SET_EVENTS, "events", 0, NULL, MG_TYPE_STRING, "FILE|-",
     .help = "write what happens as JSON Lines (events schema 1) to FILE or standard output",
     .commands = B},
    {MG_SET_FORMAT, "format", 0, "format", MG_TYPE_CHOICE, "FORMAT", .choices = {"eml", "maildir"},
     .help = "one <uid>.eml per message (default), or a Maildir per mailbox", .commands = B},
    {MG_SET_HELP, "help", 'h', NULL, MG_TYPE_FLAG, .help = "this text",
     .commands = B | L | S | V | E},
    {MG_SET_HTML, "html", 0, NULL, MG_TYPE_STRING, "FILE|-",
     .help = "write the statistics as one self-contained HTML page with charts", .commands = B | S},
    {MG_SET_JOBS, "jobs", 0, NULL, MG_TYPE_NUMBER, "N", 1, 256,
     .help = "parsing processes (default: the number of CPUs)", .commands = S},
    {MG_SET_ESTIMATE_JSON, "json", 0, NULL, MG_TYPE_FLAG,
     .help = "print one JSON object (messages, bytes, days, per account and mailbox)",
     .commands = E},
    {MG_SET_JSON, "json", 0, NULL, MG_TYPE_STRING, "FILE|-",
     .help = "write the statistics as one JSON document", .commands = B | S},
    {MG_SET_LIMIT, "limit", 'l', NULL, MG_TYPE_NUMBER, "N", 1, ULONG_MAX,
     .help = "fetch at most N new messages per mailbox, lowest UIDs first", .commands = B},
    {MG_SET_MAILBOX, "mailbox", 'm', "mailbox", MG_TYPE_STRING, "NAME", .repeat = true,
     .help = "mailbox to download (UTF-8), repeatable (default INBOX)", .commands = B | V | E},
    {MG_SET_MAX_BYTES, "max-bytes", 0, NULL, MG_TYPE_SIZE, "SIZE",
     .help = "stop this run after SIZE (K/M/G) fetched; exit 11, the next run goes on",
     .commands = B},
    {MG_SET_MAX_TIME, "max-time", 0, NULL, MG_TYPE_DURATION, "DURATION",
     .help = "stop handing out work after DURATION (90s, 30m, 2h); exit 11", .commands = B},
    {MG_SET_ME, "me", 0, NULL, MG_TYPE_STRING, "ADDRESS", .repeat = true,
     .help = "mail From this address is sent mail: its To/Cc/Bcc count as recipients "
             "(repeatable)",
     .commands = B | S},
    {MG_SET_MESSAGES_CSV, "messages-csv", 0, NULL, MG_TYPE_STRING, "FILE|-",
     .help = "write one CSV row per message (path, date, sender, size, ...) to FILE or -",
     .commands = B | S},
    {MG_SET_METRICS, "metrics", 0, NULL, MG_TYPE_STRING, "FILE",
     .help = "write Prometheus metrics per account to FILE (textfile collector)", .commands = B},
    {MG_SET_NO_COMPRESS, "no-compress", 0, NULL, MG_TYPE_FLAG,
     .help = "never ask the server for COMPRESS=DEFLATE (config: compress = no)",
     .commands = B | V},
    {MG_SET_OAUTH2_AUTH_URL, "oauth2-auth-url", 0, NULL, MG_TYPE_STRING, "URL",
     .help = "the provider's authorization endpoint", .commands = L},
    {MG_SET_OAUTH2_CAFILE, "oauth2-cafile", 0, "oauth2_cafile", MG_TYPE_STRING, "FILE",
     .help = "trust the CA certificates in FILE for the token endpoint", .commands = B | L | V | E},
    {MG_SET_OAUTH2_CLIENT_ID, "oauth2-client-id", 0, "oauth2_client_id", MG_TYPE_STRING, "ID",
     .help = "the OAuth2 client id of your app", .commands = B | L | V | E},
    {MG_SET_OAUTH2_CLIENT_SECRET_FILE, "oauth2-client-secret-file", 0, "oauth2_client_secret_file",
     MG_TYPE_STRING, "FILE", .help = "its client secret, if any (mode 0600)",
     .commands = B | L | V | E},
    {MG_SET_OAUTH2_REFRESH_TOKEN_FILE, "oauth2-refresh-token-file", 0, "oauth2_refresh_token_file",
     MG_TYPE_STRING, "FILE", .help = "the refresh token (mode 0600), written by mailgrab login",
     .commands = B | L | V | E},
    {MG_SET_OAUTH2_SCOPE, "oauth2-scope", 0, NULL, MG_TYPE_STRING, "SCOPE",
     .help = "space-separated scopes to ask for", .commands = L},
    {MG_SET_OAUTH2_TOKEN_COMMAND, "oauth2-token-command", 0, "oauth2_token_command", MG_TYPE_STRING,
     "CMD", .help = "run CMD; its first output line is an access token", .commands = B | V | E},
    {MG_SET_OAUTH2_TOKEN_URL, "oauth2-token-url", 0, "oauth2_token_url", MG_TYPE_STRING, "URL",
     .help = "the provider's token endpoint (https://)", .commands = B | L | V | E},
    {MG_SET_OFFLINE, "offline", 0, NULL, MG_TYPE_FLAG,
     .help = "check the files against their manifests only, without a server", .commands = V},
    {MG_SET_OUTPUT, "output", 'o', "output", MG_TYPE_STRING, "DIR",
     .help = "where to store (default .); created with its parents, mode 0700",
     .commands = B | V | E},
    {MG_SET_PASSWORD, "password", 0, "password", MG_TYPE_REFUSED, "PASSWORD", .help = "",
     .commands = B | V | E},
    {MG_SET_PASSWORD_COMMAND, "password-command", 0, "password_command", MG_TYPE_STRING, "CMD",
     .help = "run CMD; its first output line is the password", .commands = B | V | E},
    {MG_SET_PASSWORD_FILE, "password-file", 0, "password_file", MG_TYPE_STRING, "FILE",
     .help = "read the password from the first line of FILE (mode 0600)", .commands = B | V | E},
    {MG_SET_PORT, "port", 'p', "port", MG_TYPE_NUMBER, "PORT", 1, 65535,
     .help = "IMAPS port (default 993)", .commands = B | V | E},
    {MG_SET_PROVIDER, "provider", 0, "provider", MG_TYPE_CHOICE, "NAME",
     .choices = {"gmail", "outlook"},
     .help = "a known provider: sets the server, port, token URL (and login's URLs)",
     .commands = B | L | V | E},
    {MG_SET_QUIET, "quiet", 'q', NULL, MG_TYPE_FLAG,
     .help = "print errors only (silence when all is well)", .commands = B | L | S | V | E},
    {MG_SET_SERVER, "server", 's', "server", MG_TYPE_STRING, "HOST",
     .help = "IMAPS server (e.g. imap.gmail.com)", .commands = B | V | E},
    {MG_SET_SHARD, "shard", 0, NULL, MG_TYPE_STRING, "I/N|auto",
     .help = "back up only the config's accounts in shard I of N (by a hash of the name); auto "
             "or auto/N: I and N from Slurm or a Kubernetes Indexed Job",
     .commands = B},
    {MG_SET_SPAM_TRASH, "spam-trash", 0, "spam_trash", MG_TYPE_FLAG,
     .help = "on Gmail, back up Spam and Trash too (All Mail holds neither)",
     .commands = B | V | E},
    {MG_SET_STATS, "stats", 0, NULL, MG_TYPE_FLAG,
     .help = "analyse what is downloaded (in a separate process) and print tables", .commands = B},
    {MG_SET_STOPWORDS, "stopwords", 0, NULL, MG_TYPE_STRING, "FILE",
     .help = "words to leave out of the keywords, one per line (default: built in)",
     .commands = B | S},
    {MG_SET_SUMMARY_JSON, "summary-json", 0, NULL, MG_TYPE_STRING, "FILE",
     .help = "write a machine-readable summary of the run", .commands = B},
    {MG_SET_TIMEOUT, "timeout", 't', "timeout", MG_TYPE_NUMBER, "SECS", 1, 3600,
     .help = "drop a connection silent for SECS and retry its work (default 60)",
     .commands = B | V | E},
    {MG_SET_LOGIN_TIMEOUT, "timeout", 't', NULL, MG_TYPE_NUMBER, "SECS", 1, 86400,
     .help = "wait this long for the browser (default 300)", .commands = L},
    {MG_SET_TOP, "top", 0, NULL, MG_TYPE_NUMBER, "N", 1, 100000,
     .help = "rows per statistics table (default 10; keywords 20)", .commands = B | S},
    {MG_SET_TZ, "tz", 0, NULL, MG_TYPE_TZ, "ZONE",
     .help = "time zone for hours and weekdays (default: the local one)", .commands = B | S},
    {MG_SET_USER, "user", 'u', "user", MG_TYPE_STRING, "USER", .help = "login name",
     .commands = B | V | E},
    {MG_SET_VERBOSE, "verbose", 'v', NULL, MG_TYPE_FLAG, .repeat = true,
     .help = "say what happens (repeat for more)", .commands = B | L | S | V | E},
    {MG_SET_VERSION, "version", 'V', NULL, MG_TYPE_FLAG, .help = "print the version",
     .commands = B},
};

#undef B
#undef L
#undef S
#undef V
#undef E

#define NSETTINGS (sizeof(table) / sizeof(table[0]))

const struct mg_setting *mg_settings(size_t *n)
{
    *n = NSETTINGS;
    return table;
}

const struct mg_setting *mg_setting_by_key(const char *key)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (table[i].key != NULL && strcmp(table[i].key, key) == 0)
            return &table[i];
    return NULL;
}

bool mg_verbosity_setting(enum mg_verbosity *level, const struct mg_setting *s)
{
    if (s->id == MG_SET_QUIET)
        *level = MG_QUIET;
    else if (s->id == MG_SET_VERBOSE)
        *level = *level < MG_VERBOSE ? MG_VERBOSE : MG_DEBUG;
    else
        return false;
    return true;
}

bool mg_tz_known(const char *tz)
{
    if (tz[0] == ':')
        tz++;
    if (tz[0] == '\0' || strstr(tz, "..") != NULL || tz[0] == '/')
        return false;
    if (strcmp(tz, "UTC") == 0 || strcmp(tz, "GMT") == 0)
        return true;
    /* POSIX rule strings such as EST5EDT carry a digit */
    for (const char *p = tz; *p; p++)
        if (*p >= '0' && *p <= '9')
            return true;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
    return n > 0 && (size_t)n < sizeof(path) && access(path, R_OK) == 0;
}

static bool parse_number(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    if (s[0] < '0' || s[0] > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool mg_setting_check(const struct mg_setting *s, const char *text, struct mg_value *v, char *why,
                      size_t cap)
{
    memset(v, 0, sizeof(*v));
    v->text = text;
    switch (s->type) {
    case MG_TYPE_FLAG:
        if (text == NULL) {
            v->yes = true;
            return true;
        }
        if (!strcasecmp(text, "yes") || !strcasecmp(text, "true") || !strcmp(text, "1") ||
            !strcasecmp(text, "on")) {
            v->yes = true;
            return true;
        }
        if (!strcasecmp(text, "no") || !strcasecmp(text, "false") || !strcmp(text, "0") ||
            !strcasecmp(text, "off"))
            return true;
        snprintf(why, cap, "must be yes or no, not '%s'", text);
        return false;
    case MG_TYPE_STRING:
        if (text == NULL || text[0] == '\0') {
            snprintf(why, cap, "needs a value");
            return false;
        }
        return true;
    case MG_TYPE_NUMBER:
        if (text != NULL && parse_number(text, s->min, s->max, &v->num))
            return true;
        if (s->max == ULONG_MAX)
            snprintf(why, cap, "must be a number from %lu up, not '%s'", s->min, text ? text : "");
        else
            snprintf(why, cap, "must be a number from %lu to %lu, not '%s'", s->min, s->max,
                     text ? text : "");
        return false;
    case MG_TYPE_CHOICE: {
        size_t k = 0;
        for (; k < MG_CHOICES_MAX && s->choices[k] != NULL; k++)
            if (text != NULL && strcmp(text, s->choices[k]) == 0) {
                v->num = k;
                return true;
            }
        size_t n = (size_t)snprintf(why, cap, "must be ");
        for (size_t i = 0; i < k && n < cap; i++)
            n += (size_t)snprintf(why + n, cap - n, "%s%s", s->choices[i],
                                  i + 2 < k    ? ", "
                                  : i + 2 == k ? " or "
                                               : "");
        if (n < cap)
            snprintf(why + n, cap - n, ", not '%s'", text ? text : "");
        return false;
    }
    case MG_TYPE_TZ:
        if (text != NULL && mg_tz_known(text))
            return true;
        snprintf(why, cap, "must be a time zone such as UTC or Europe/Berlin, not '%s'",
                 text ? text : "");
        return false;
    case MG_TYPE_SIZE: {
        uint64_t b;
        if (text != NULL && mg_size_parse(text, &b) == 0 && b <= ULONG_MAX) {
            v->num = (unsigned long)b;
            return true;
        }
        snprintf(why, cap, "must be a size such as 500M, 2G or none, not '%s'", text ? text : "");
        return false;
    }
    case MG_TYPE_DURATION: {
        uint64_t secs;
        if (text != NULL && mg_duration_parse(text, &secs) == 0 && secs > 0 && secs <= ULONG_MAX) {
            v->num = (unsigned long)secs;
            return true;
        }
        snprintf(why, cap, "must be a duration such as 90s, 30m or 2h, not '%s'", text ? text : "");
        return false;
    }
    case MG_TYPE_REFUSED:
        snprintf(why, cap,
                 "is not accepted: passwords are never given on the command line or "
                 "in the config file (others can read them); use "
                 "MAILGRAB_PASSWORD, a password file or a password command");
        return false;
    }
    return false;
}

/* What the user typed for setting s, for messages: "--chunks" or "-c". */
static void said_as(const struct mg_setting *s, bool as_long, char *buf, size_t cap)
{
    if (as_long || !s->short_name)
        snprintf(buf, cap, "--%s", s->name);
    else
        snprintf(buf, cap, "-%c", s->short_name);
}

/* mailgrab restore takes verify's connection and account options (the
 * same credentials, TLS and OAuth2 rules as a backup) and, of the backup's
 * own, --chunks and --summary-json; decided here, so that the table's rows
 * need not name the command. */
bool mg_setting_for(const struct mg_setting *s, unsigned command)
{
    if (command != MG_CMD_RESTORE)
        return (s->commands & command) != 0;
    switch (s->id) {
    case MG_SET_CHUNKS:
    case MG_SET_SUMMARY_JSON:
        return true;
    case MG_SET_OFFLINE:
    case MG_SET_OUTPUT:
    case MG_SET_ALL_MAILBOXES:
        return false;
    default:
        return (s->commands & MG_CMD_VERIFY) != 0;
    }
}

enum mg_code mg_settings_parse(unsigned command, int argc, char **argv, mg_setting_apply apply,
                               void *ctx, const char **operands, size_t max_operands,
                               size_t *noperands, struct mg_error *err)
{
    struct option longs[NSETTINGS + 1];
    const struct mg_setting *by_val[NSETTINGS] = {0};
    char shorts[2 + 2 * NSETTINGS + 1];
    size_t nl = 0, ns = 0;
    shorts[ns++] = '-'; /* operands come back in order, as value 1 */
    shorts[ns++] = ':'; /* a missing value is ':' */
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct mg_setting *s = &table[i];
        if (!mg_setting_for(s, command) || s->name == NULL)
            continue;
        bool has_arg = s->type != MG_TYPE_FLAG;
        /* getopt_long returns val: the short letter, or 256 + index. */
        int val = s->short_name ? s->short_name : 256 + (int)i;
        longs[nl++] =
            (struct option){s->name, has_arg ? required_argument : no_argument, NULL, val};
        by_val[i] = s;
        if (s->short_name) {
            shorts[ns++] = s->short_name;
            if (has_arg)
                shorts[ns++] = ':';
        }
    }
    longs[nl] = (struct option){NULL, 0, NULL, 0};
    shorts[ns] = '\0';
    *noperands = 0;

    optind = 0; /* GNU: a full reset, as tests parse repeatedly */
    opterr = 0;
    int c, li = -1;
    while ((c = getopt_long(argc, argv, shorts, longs, &li)) != -1) {
        bool as_long = li >= 0;
        li = -1;
        if (c == 1) {
            if (*noperands == max_operands)
                return mg_error_set(err, MG_E_USAGE, "unexpected argument '%s' (see --help)",
                                    optarg);
            operands[(*noperands)++] = optarg;
            continue;
        }
        if (c == ':')
            return mg_error_set(err, MG_E_USAGE, "option %s needs a value (see --help)",
                                argv[optind - 1]);
        if (c == '?')
            return mg_error_set(err, MG_E_USAGE, "unknown option %s (see --help)",
                                argv[optind - 1]);
        const struct mg_setting *s = NULL;
        if (c >= 256 && (size_t)(c - 256) < NSETTINGS)
            s = by_val[c - 256];
        for (size_t i = 0; s == NULL && i < NSETTINGS; i++)
            if (table[i].short_name == c && mg_setting_for(&table[i], command))
                s = &table[i];
        if (s == NULL)
            return mg_error_set(err, MG_E_INTERNAL, "option table out of step (%d)", c);
        struct mg_value v;
        char why[256];
        if (!mg_setting_check(s, s->type == MG_TYPE_FLAG ? NULL : optarg, &v, why, sizeof(why))) {
            char name[64];
            said_as(s, as_long, name, sizeof(name));
            return mg_error_set(err, MG_E_USAGE, "%s %s", name, why);
        }
        enum mg_code rc = apply(ctx, s, &v, err);
        if (rc != MG_OK)
            return rc;
    }
    for (; optind < argc; optind++) { /* after "--" */
        if (*noperands == max_operands)
            return mg_error_set(err, MG_E_USAGE, "unexpected argument '%s' (see --help)",
                                argv[optind]);
        operands[(*noperands)++] = argv[optind];
    }
    return MG_OK;
}

#define HELP_COL 30
#define HELP_WIDTH 79

void mg_settings_help(unsigned command, FILE *f)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct mg_setting *s = &table[i];
        if (!mg_setting_for(s, command) || s->name == NULL || s->help[0] == '\0')
            continue;
        char head[128];
        int n;
        char arg[64] = "";
        if (s->type == MG_TYPE_CHOICE) {
            size_t k = 0;
            for (size_t j = 0; j < MG_CHOICES_MAX && s->choices[j] != NULL; j++)
                k +=
                    (size_t)snprintf(arg + k, sizeof(arg) - k, "%s%s", j ? "|" : "", s->choices[j]);
        } else if (s->type != MG_TYPE_FLAG) {
            snprintf(arg, sizeof(arg), "%s", s->arg);
        }
        if (s->short_name)
            n = snprintf(head, sizeof(head), "  -%c, --%s%s%s", s->short_name, s->name,
                         arg[0] ? " " : "", arg);
        else
            n = snprintf(head, sizeof(head), "      --%s%s%s", s->name, arg[0] ? " " : "", arg);
        fputs(head, f);
        /* The help text wraps at word boundaries into its column. */
        int col = n;
        if (col >= HELP_COL - 1) {
            fputc('\n', f);
            col = 0;
        }
        const char *p = s->help;
        bool first = true;
        while (*p) {
            const char *sp = strchr(p, ' ');
            size_t w = sp ? (size_t)(sp - p) : strlen(p);
            if (!first && col + 1 + (int)w > HELP_WIDTH) {
                fputc('\n', f);
                col = 0;
                first = true;
            }
            if (first) {
                fprintf(f, "%*s", HELP_COL - col, "");
                col = HELP_COL;
            } else {
                fputc(' ', f);
                col++;
            }
            fwrite(p, 1, w, f);
            col += (int)w;
            first = false;
            p += w;
            while (*p == ' ')
                p++;
        }
        fputc('\n', f);
    }
}
