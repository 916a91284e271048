/* config.c - see include/mailgrab/config.h */
#include "mailgrab/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mailgrab/ini.h"
#include "mailgrab/oauth2.h"
#include "mailgrab/password.h"
#include "mailgrab/provider.h"
#include "mailgrab/store.h"

void mg_account_init(struct mg_account *a, const char *name)
{
    memset(a, 0, sizeof(*a));
    a->name = name;
    a->all_mailboxes = MG_YESNO_UNSET;
    a->spam_trash = MG_YESNO_UNSET;
    a->format = MG_FORMAT_UNSET;
    a->auth = MG_AUTH_UNSET;
    a->compress = MG_YESNO_UNSET;
}

enum mg_code mg_account_set(struct mg_account *a, const struct mg_setting *s,
                            const struct mg_value *v, struct mg_error *err)
{
    const char **str = NULL;
    switch (s->id) {
    case MG_SET_SERVER:
        str = &a->server;
        break;
    case MG_SET_PORT:
        str = &a->port;
        break;
    case MG_SET_USER:
        str = &a->user;
        break;
    case MG_SET_PASSWORD_FILE:
        str = &a->password_file;
        break;
    case MG_SET_PASSWORD_COMMAND:
        str = &a->password_command;
        break;
    case MG_SET_OUTPUT:
        str = &a->output;
        break;
    case MG_SET_CAFILE:
        str = &a->cafile;
        break;
    case MG_SET_PROVIDER:
        str = &a->provider;
        break;
    case MG_SET_OAUTH2_TOKEN_URL:
        str = &a->oauth2_token_url;
        break;
    case MG_SET_OAUTH2_CLIENT_ID:
        str = &a->oauth2_client_id;
        break;
    case MG_SET_OAUTH2_CLIENT_SECRET_FILE:
        str = &a->oauth2_client_secret_file;
        break;
    case MG_SET_OAUTH2_REFRESH_TOKEN_FILE:
        str = &a->oauth2_refresh_token_file;
        break;
    case MG_SET_OAUTH2_TOKEN_COMMAND:
        str = &a->oauth2_token_command;
        break;
    case MG_SET_OAUTH2_CAFILE:
        str = &a->oauth2_cafile;
        break;
    case MG_SET_MAILBOX:
        if (a->nmailboxes == MG_MAX_MAILBOXES)
            return mg_error_set(err, MG_E_USAGE,
                                "too many mailboxes (at most %d; use --all-mailboxes)",
                                MG_MAX_MAILBOXES);
        a->mailboxes[a->nmailboxes++] = v->text;
        return MG_OK;
    case MG_SET_ALL_MAILBOXES:
        a->all_mailboxes = v->yes ? MG_YES : MG_NO;
        return MG_OK;
    case MG_SET_SPAM_TRASH:
        a->spam_trash = v->yes ? MG_YES : MG_NO;
        return MG_OK;
    case MG_SET_CHUNKS:
        a->chunks = (unsigned)v->num;
        return MG_OK;
    case MG_SET_TIMEOUT:
        a->timeout = (unsigned)v->num;
        return MG_OK;
    case MG_SET_FORMAT:
        a->format = (enum mg_format)v->num;
        return MG_OK;
    case MG_SET_AUTH:
        a->auth = (enum mg_auth)v->num;
        return MG_OK;
    case MG_SET_COMPRESS:
        a->compress = v->yes ? MG_YES : MG_NO;
        return MG_OK;
    case MG_SET_NO_COMPRESS:
        a->compress = MG_NO;
        return MG_OK;
    case MG_SET_DAILY_LIMIT:
        a->daily_limit = v->num;
        a->daily_limit_set = true;
        return MG_OK;
    default:
        return mg_error_set(err, MG_E_INTERNAL, "--%s is not an account setting", s->name);
    }
    *str = v->text;
    return MG_OK;
}

void mg_config_default_path(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    if (xdg != NULL && xdg[0] == '/')
        snprintf(buf, cap, "%s/mailgrab/config", xdg);
    else
        snprintf(buf, cap, "%s/.config/mailgrab/config", home ? home : ".");
}

struct parse {
    struct mg_config *cfg;
    struct mg_error *err;
    unsigned line;
    struct mg_account *cur; /* NULL: before any section */
    bool failed;
};

static bool fail_at(struct parse *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail_at(struct parse *ps, const char *fmt, ...)
{
    if (!ps->failed) {
        char what[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        mg_error_set(ps->err, MG_E_USAGE, "%s:%u: %s", ps->cfg->path, ps->line, what);
        ps->failed = true;
    }
    return false;
}

static const char *keep(struct parse *ps, const char *v)
{
    struct mg_config *c = ps->cfg;
    char *copy;
    const char *home = getenv("HOME");
    if (v[0] == '~' && v[1] == '/' && home != NULL) {
        size_t n = strlen(home) + strlen(v);
        copy = malloc(n);
        if (copy != NULL)
            snprintf(copy, n, "%s%s", home, v + 1);
    } else {
        copy = strdup(v);
    }
    if (copy == NULL)
        return NULL;
    if (c->nstrings == c->capstrings) {
        size_t cap = c->capstrings ? c->capstrings * 2 : 64;
        char **s = reallocarray(c->strings, cap, sizeof(*s));
        if (s == NULL) {
            free(copy);
            return NULL;
        }
        c->strings = s;
        c->capstrings = cap;
    }
    c->strings[c->nstrings++] = copy;
    return copy;
}

static struct mg_account *section_account(struct parse *ps, const char *section)
{
    struct mg_config *c = ps->cfg;
    if (strcmp(section, "defaults") == 0)
        return &c->defaults;
    if (strncmp(section, "account ", 8) != 0 || section[8] == '\0') {
        fail_at(ps, "unknown section [%s]; use [account NAME] or [defaults]", section);
        return NULL;
    }
    const char *name = section + 8;
    for (size_t i = 0; i < c->naccounts; i++)
        if (strcmp(c->accounts[i].name, name) == 0) {
            fail_at(ps, "account '%s' is defined twice", name);
            return NULL;
        }
    struct mg_account *v = reallocarray(c->accounts, c->naccounts + 1, sizeof(*v));
    if (v == NULL) {
        fail_at(ps, "out of memory");
        return NULL;
    }
    c->accounts = v;
    const char *kept = keep(ps, name);
    if (kept == NULL) {
        fail_at(ps, "out of memory");
        return NULL;
    }
    mg_account_init(&c->accounts[c->naccounts], kept);
    return &c->accounts[c->naccounts++];
}

/* Returns true to go on: fail_at returns false. */
static bool take_value(struct parse *ps, const char *section, const char *key, const char *value);

static int on_line(void *user, unsigned line, const char *section, const char *key,
                   const char *value)
{
    struct parse *ps = user;
    ps->line = line;
    if (key == NULL) {
        ps->cur = section_account(ps, section);
        return ps->cur == NULL ? 1 : 0;
    }
    if (section[0] == '\0') {
        fail_at(ps, "'%s' is outside any section; put it under [account NAME] or [defaults]", key);
        return 1;
    }
    return take_value(ps, section, key, value) ? 0 : 1;
}

static bool take_value(struct parse *ps, const char *section, const char *key, const char *value)
{
    const struct mg_setting *s = mg_setting_by_key(key);
    if (s == NULL)
        return fail_at(ps, "unknown key '%s' in [%s]", key, section);
    struct mg_value v;
    char why[256];
    if (!mg_setting_check(s, value, &v, why, sizeof(why)))
        return fail_at(ps, "%s %s", key, why);
    if (s->type != MG_TYPE_FLAG && (v.text = keep(ps, value)) == NULL)
        return fail_at(ps, "out of memory");
    struct mg_error e;
    if (mg_account_set(ps->cur, s, &v, &e) != MG_OK)
        return fail_at(ps, "%s", e.msg);
    return true;
}

/* A config file is small; anything near this is not one. */
#define CONFIG_MAX (1u << 20)

/* Read all of fd (at most CONFIG_MAX bytes) into a new buffer. */
static enum mg_code read_config(int fd, const char *path, char **out, size_t *len,
                                struct mg_error *err)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL)
            return mg_error_set(err, MG_E_INTERNAL, "out of memory");
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return mg_error_set(err, MG_E_USAGE, "cannot read config file %s: %s", path,
                                strerror(errno));
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            if (cap >= CONFIG_MAX) {
                free(buf);
                return mg_error_set(err, MG_E_USAGE,
                                    "config file %s is larger than 1 MB; is it the right file?",
                                    path);
            }
            char *b = realloc(buf, cap * 2);
            if (b == NULL)
                free(buf);
            buf = b;
            cap *= 2;
        }
    }
    *out = buf;
    *len = n;
    return MG_OK;
}

enum mg_code mg_config_load(const char *path, bool required, struct mg_config *cfg,
                            struct mg_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    mg_account_init(&cfg->defaults, "defaults");
    snprintf(cfg->path, sizeof(cfg->path), "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (!required && errno == ENOENT)
            return MG_OK;
        return mg_error_set(err, MG_E_USAGE, "cannot read config file %s: %s", path,
                            strerror(errno));
    }
    enum mg_code rc = mg_check_private(fd, path, err);
    if (rc != MG_OK) {
        close(fd);
        return rc;
    }
    char *text = NULL;
    size_t len = 0;
    rc = read_config(fd, path, &text, &len, err);
    close(fd);
    if (rc != MG_OK)
        return rc;
    struct parse ps = {.cfg = cfg, .err = err};
    unsigned bad = 0;
    int r = mg_ini_parse(text, len, on_line, &ps, &bad);
    free(text);
    if (r == MG_INI_SYNTAX)
        rc = mg_error_set(err, MG_E_USAGE, "%s:%u: not a 'key = value' line or a [section] header",
                          path, bad);
    else if (r == MG_INI_TOO_LONG)
        rc = mg_error_set(err, MG_E_USAGE, "%s:%u: line longer than %d bytes", path, bad,
                          MG_INI_LINE_MAX);
    else if (r == MG_INI_NUL)
        rc = mg_error_set(err, MG_E_USAGE, "%s:%u: NUL byte; is it a text file?", path, bad);
    else if (r == MG_INI_NOMEM)
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    else if (r != 0 || ps.failed)
        rc = MG_E_USAGE;
    if (rc != MG_OK)
        mg_config_finish(cfg);
    return rc;
}

void mg_config_finish(struct mg_config *cfg)
{
    for (size_t i = 0; i < cfg->nstrings; i++)
        free(cfg->strings[i]);
    free(cfg->strings);
    free(cfg->accounts);
    memset(cfg, 0, sizeof(*cfg));
}

void mg_account_merge(struct mg_account *dst, const struct mg_account *src)
{
#define TAKE(f)                                                                                    \
    if (src->f != NULL)                                                                            \
    dst->f = src->f
    TAKE(server);
    TAKE(port);
    TAKE(user);
    TAKE(output);
    TAKE(cafile);
    TAKE(provider);
    TAKE(oauth2_token_url);
    TAKE(oauth2_client_id);
    TAKE(oauth2_client_secret_file);
    TAKE(oauth2_refresh_token_file);
    TAKE(oauth2_token_command);
    TAKE(oauth2_cafile);
#undef TAKE
    if (src->auth != MG_AUTH_UNSET)
        dst->auth = src->auth;
    /* One password source wins as a whole, so a command given on the
     * command line is not combined with a file from the config. */
    if (src->password_file != NULL || src->password_command != NULL) {
        dst->password_file = src->password_file;
        dst->password_command = src->password_command;
    }
    if (src->nmailboxes > 0) {
        memcpy(dst->mailboxes, src->mailboxes, src->nmailboxes * sizeof(src->mailboxes[0]));
        dst->nmailboxes = src->nmailboxes;
    }
    if (src->all_mailboxes != MG_YESNO_UNSET)
        dst->all_mailboxes = src->all_mailboxes;
    if (src->spam_trash != MG_YESNO_UNSET)
        dst->spam_trash = src->spam_trash;
    if (src->format != MG_FORMAT_UNSET)
        dst->format = src->format;
    if (src->chunks > 0)
        dst->chunks = src->chunks;
    if (src->timeout > 0)
        dst->timeout = src->timeout;
    if (src->compress != MG_YESNO_UNSET)
        dst->compress = src->compress;
    if (src->daily_limit_set) {
        dst->daily_limit = src->daily_limit;
        dst->daily_limit_set = true;
    }
}

/* path without "." components, repeated or trailing slashes. */
static void norm_path(const char *path, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = path != NULL ? path : ".";
    bool abs = *p == '/';
    if (abs && cap > 1)
        out[n++] = '/';
    while (*p != '\0') {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        bool dot = len == 1 && p[0] == '.';
        if (len > 0 && !dot) {
            if (n > 0 && out[n - 1] != '/' && n + 1 < cap)
                out[n++] = '/';
            for (size_t i = 0; i < len && n + 1 < cap; i++)
                out[n++] = p[i];
        }
        p += len;
    }
    if (n == 0 && cap > 1)
        out[n++] = '.';
    out[n] = '\0';
}

/* The output config account c has in this run. */
static const char *output_of(const struct mg_config *cfg, const struct mg_account *c,
                             const struct mg_account *run, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(run[i].name, c->name) == 0)
            return run[i].output;
    return c->output != NULL ? c->output : cfg->defaults.output;
}

void mg_config_share_outputs(const struct mg_config *cfg, struct mg_account *run, size_t n)
{
    char mine[4096], other[4096];
    for (size_t i = 0; i < n; i++) {
        norm_path(run[i].output, mine, sizeof(mine));
        bool shared = false, first = true, seen_self = false;
        for (size_t j = 0; j < cfg->naccounts; j++) {
            const struct mg_account *c = &cfg->accounts[j];
            if (strcmp(c->name, run[i].name) == 0) {
                seen_self = true;
                continue;
            }
            norm_path(output_of(cfg, c, run, n), other, sizeof(other));
            if (strcmp(mine, other) != 0)
                continue;
            shared = true;
            if (!seen_self)
                first = false;
        }
        run[i].output_shared = shared;
        run[i].output_first = shared && first;
    }
}

enum mg_code mg_account_finish(struct mg_account *a, struct mg_error *err)
{
    const struct mg_provider *pv = mg_provider_find(a->provider);
    if (pv != NULL) {
        if (a->server == NULL)
            a->server = pv->imap_host;
        if (a->port == NULL)
            a->port = pv->imap_port;
        if (a->oauth2_token_url == NULL)
            a->oauth2_token_url = pv->token_url;
    }
    bool has_oauth = a->oauth2_token_command != NULL || a->oauth2_refresh_token_file != NULL;
    if (a->auth == MG_AUTH_UNSET)
        a->auth = has_oauth ? MG_AUTH_XOAUTH2 : MG_AUTH_PASSWORD;
    if (a->auth != MG_AUTH_PASSWORD && a->oauth2_token_command == NULL &&
        (a->oauth2_token_url == NULL || a->oauth2_client_id == NULL ||
         a->oauth2_refresh_token_file == NULL))
        return mg_error_set(err, MG_E_USAGE,
                            "%s: OAuth2 needs --oauth2-token-command, or --oauth2-client-id and "
                            "--oauth2-refresh-token-file with --provider or --oauth2-token-url "
                            "(run mailgrab login to get a refresh token)",
                            a->name);
    if (a->port == NULL)
        a->port = "993";
    if (a->output == NULL)
        a->output = ".";
    if (a->chunks == 0)
        a->chunks = 4;
    if (a->timeout == 0)
        a->timeout = 60;
    if (a->format == MG_FORMAT_UNSET)
        a->format = MG_FORMAT_EML;
    if (a->all_mailboxes == MG_YESNO_UNSET)
        a->all_mailboxes = MG_NO;
    if (a->spam_trash == MG_YESNO_UNSET)
        a->spam_trash = MG_NO;
    if (a->compress == MG_YESNO_UNSET)
        a->compress = MG_YES;
    if (a->nmailboxes == 0 && a->all_mailboxes == MG_NO) {
        a->mailboxes[0] = "INBOX";
        a->nmailboxes = 1;
    }
    if (a->server == NULL)
        return mg_error_set(err, MG_E_USAGE,
                            "%s: no server given: use --server HOST or a config file "
                            "(try scripts/demo for a local one)",
                            a->name);
    if (a->user == NULL)
        return mg_error_set(err, MG_E_USAGE, "%s: no user given: use --user NAME", a->name);
    if (a->password_file != NULL && a->password_command != NULL)
        return mg_error_set(err, MG_E_USAGE,
                            "%s: give either a password file or a password command, not both",
                            a->name);
    return MG_OK;
}

uint64_t mg_account_daily_limit(const struct mg_account *a, bool gmail)
{
    if (a->daily_limit_set)
        return a->daily_limit;
    uint64_t by_host = a->server ? mg_provider_daily_limit(a->server) : 0;
    if (by_host != 0 || !gmail)
        return by_host;
    const struct mg_provider *p = mg_provider_find("gmail");
    return p != NULL ? p->daily_limit : 0;
}
