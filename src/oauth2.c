/* oauth2.c - see include/mailgrab/oauth2.h */
#include "mailgrab/oauth2.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/cancel.h"
#include "mailgrab/https.h"
#include "mailgrab/log.h"
#include "mailgrab/password.h"

#define FORM_MAX (3 * MG_OAUTH2_TOKEN_MAX + 4096)

/* ---- I/O: files, commands, HTTPS ---- */

/* A token or client secret as read by the shared secret readers: trailing
 * blanks trimmed, and nothing that could break a SASL string or an HTTP
 * form. Frees *s on failure. */
static enum mg_code check_secret(char **s, const char *what, struct mg_error *err)
{
    size_t n = strlen(*s);
    while (n > 0 && ((*s)[n - 1] == ' ' || (*s)[n - 1] == '\t'))
        (*s)[--n] = '\0';
    enum mg_code rc = MG_OK;
    if (n == 0)
        rc = mg_error_set(err, MG_E_OAUTH, "%s is empty", what);
    else if (n >= MG_OAUTH2_TOKEN_MAX)
        rc = mg_error_set(err, MG_E_OAUTH, "%s is too long", what);
    for (size_t i = 0; rc == MG_OK && i < n; i++)
        if ((unsigned char)(*s)[i] < 0x20 || (*s)[i] == 0x7f)
            rc = mg_error_set(err, MG_E_OAUTH, "%s contains control characters", what);
    if (rc != MG_OK) {
        mg_secret_free(*s);
        *s = NULL;
    }
    return rc;
}

enum mg_code mg_oauth2_read_secret(const char *path, const char *what, char **out,
                                   struct mg_error *err)
{
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return mg_error_set(err, MG_E_USAGE,
                            "the %s file %s does not exist (run mailgrab login "
                            "first?)",
                            what, path);
    enum mg_code rc = mg_secret_file(path, what, out, err);
    return rc == MG_OK ? check_secret(out, what, err) : rc;
}

static enum mg_code run_command(const char *cmd, char **out, struct mg_error *err)
{
    enum mg_code rc = mg_secret_command(cmd, "--oauth2-token-command", out, err);
    if (rc == MG_E_USAGE)
        err->code = rc = MG_E_OAUTH; /* no token: the OAuth2 exit status */
    return rc == MG_OK ? check_secret(out, "the output of --oauth2-token-command", err) : rc;
}

/* ---- the shared token cache ---- */

struct mg_oauth2 {
    char *token_url;
    char *client_id;
    char *cafile;
    char *refresh_file;
    char *token_command;
    char *client_secret; /* secret */
    char *refresh_token; /* secret */
    char host[256];

    pthread_mutex_t lock;
    pthread_cond_t done;
    bool refreshing;
    bool have;  /* token holds a token */
    bool stale; /* the server refused it */
    char token[MG_OAUTH2_TOKEN_MAX];
    struct timespec expiry;   /* CLOCK_MONOTONIC; tv_sec 0 = no known expiry */
    long margin;              /* refresh this many seconds before expiry */
    unsigned long generation; /* refreshes finished */
    enum mg_code last_rc;     /* of the last refresh */
    struct mg_error last_err;
    unsigned long refreshes;
};

static char *dup_opt(const char *s, bool *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = true;
    return d;
}

enum mg_code mg_oauth2_create(const struct mg_oauth2_cfg *cfg, struct mg_oauth2 **out,
                              struct mg_error *err)
{
    *out = NULL;
    if (cfg->token_command == NULL) {
        if (cfg->token_url == NULL || cfg->client_id == NULL || cfg->refresh_token_file == NULL)
            return mg_error_set(err, MG_E_USAGE,
                                "OAuth2 needs --oauth2-token-url (or --provider), "
                                "--oauth2-client-id and --oauth2-refresh-token-file, or "
                                "--oauth2-token-command");
        if (strncmp(cfg->token_url, "https://", 8) != 0)
            return mg_error_set(err, MG_E_USAGE, "the token endpoint must be an https:// URL");
    }
    struct mg_oauth2 *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    bool oom = false;
    o->token_url = dup_opt(cfg->token_url, &oom);
    o->client_id = dup_opt(cfg->client_id, &oom);
    o->cafile = dup_opt(cfg->cafile, &oom);
    o->refresh_file = dup_opt(cfg->refresh_token_file, &oom);
    o->token_command = dup_opt(cfg->token_command, &oom);
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->done, NULL);
    enum mg_code rc;
    if (oom) {
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        goto err_free;
    }
    if (o->token_command != NULL) {
        *out = o;
        return MG_OK;
    }

    if (mg_url_host(o->token_url, o->host, sizeof(o->host)) != 0) {
        rc = mg_error_set(err, MG_E_USAGE, "cannot find the host in the token URL");
        goto err_free;
    }
    if (cfg->client_secret_file != NULL) {
        rc =
            mg_oauth2_read_secret(cfg->client_secret_file, "client secret", &o->client_secret, err);
        if (rc != MG_OK)
            goto err_free;
    }
    rc = mg_oauth2_read_secret(o->refresh_file, "refresh token", &o->refresh_token, err);
    if (rc != MG_OK)
        goto err_free;
    rc = mg_https_init(err);
    if (rc != MG_OK)
        goto err_free;
    *out = o;
    return MG_OK;

err_free:
    mg_oauth2_destroy(o);
    return rc;
}

void mg_oauth2_destroy(struct mg_oauth2 *o)
{
    if (o == NULL)
        return;
    free(o->token_url);
    free(o->client_id);
    free(o->cafile);
    free(o->refresh_file);
    free(o->token_command);
    mg_secret_free(o->client_secret);
    mg_secret_free(o->refresh_token);
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->done);
    explicit_bzero(o, sizeof(*o));
    free(o);
}

/* Outside the lock: only the single refreshing thread gets here. It reads
 * o->refresh_token, which only this path changes. */
static enum mg_code refresh_http(struct mg_oauth2 *o, struct mg_oauth2_reply *r,
                                 struct mg_error *err)
{
    char *form = malloc(FORM_MAX);
    if (form == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    struct mg_buf f;
    mg_buf_init_fixed(&f, form, FORM_MAX);
    mg_form_add(&f, "grant_type", "refresh_token");
    mg_form_add(&f, "refresh_token", o->refresh_token);
    mg_form_add(&f, "client_id", o->client_id);
    if (o->client_secret != NULL)
        mg_form_add(&f, "client_secret", o->client_secret);
    enum mg_code rc;
    if (f.failed)
        rc = mg_error_set(err, MG_E_OAUTH, "the OAuth2 refresh request is too long");
    else
        rc = mg_https_post(o->token_url, o->cafile, form, f.len, r, err);
    explicit_bzero(form, FORM_MAX);
    free(form);
    if (rc != MG_OK || r->refresh_token[0] == '\0' ||
        strcmp(r->refresh_token, o->refresh_token) == 0)
        return rc;

    /* Rotation: the old refresh token may be dead already, so the new one
     * goes to disk before anything else. If that fails the run can still go
     * on with the new token in memory; the user has to log in again after. */
    struct mg_error werr;
    mg_error_clear(&werr);
    if (mg_secret_write(o->refresh_file, r->refresh_token, strlen(r->refresh_token), &werr) !=
        MG_OK)
        mg_warn("the token endpoint %s rotated the refresh token but it could not be saved (%s); "
                "this run goes on, afterwards run mailgrab login again",
                o->host, werr.msg);
    else
        mg_info("the token endpoint %s rotated the refresh token; %s updated", o->host,
                o->refresh_file);
    char *fresh = strdup(r->refresh_token);
    if (fresh == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    mg_secret_free(o->refresh_token);
    o->refresh_token = fresh;
    return MG_OK;
}

static bool still_valid(const struct mg_oauth2 *o)
{
    if (!o->have || o->stale)
        return false;
    if (o->expiry.tv_sec == 0)
        return true;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + o->margin < o->expiry.tv_sec;
}

static enum mg_code hand_out(const struct mg_oauth2 *o, char *buf, size_t cap, struct mg_error *err)
{
    size_t n = strlen(o->token);
    if (n >= cap)
        return mg_error_set(err, MG_E_INTERNAL, "access token buffer too small (%zu bytes)", cap);
    memcpy(buf, o->token, n + 1);
    return MG_OK;
}

enum mg_code mg_oauth2_token(struct mg_oauth2 *o, char *buf, size_t cap, struct mg_error *err)
{
    pthread_mutex_lock(&o->lock);
    for (;;) {
        if (mg_cancelled()) { /* no refresh, no waiting once the run is cancelled */
            pthread_mutex_unlock(&o->lock);
            struct mg_error e;
            enum mg_code rc = mg_cancel_error(&e);
            if (err != NULL)
                *err = e;
            return rc;
        }
        if (still_valid(o)) {
            enum mg_code rc = hand_out(o, buf, cap, err);
            pthread_mutex_unlock(&o->lock);
            return rc;
        }
        if (o->refreshing) {
            /* Share the outcome of the refresh in flight, even a failure:
             * a dead refresh token is asked about once, not once per worker. */
            unsigned long gen = o->generation;
            while (o->refreshing && !mg_cancelled())
                mg_cancel_timedwait(&o->done, &o->lock, 200); /* a cancel wakes them */
            if (mg_cancelled())
                continue;
            if (o->generation != gen && o->last_rc != MG_OK) {
                if (err != NULL)
                    *err = o->last_err;
                enum mg_code rc = o->last_rc;
                pthread_mutex_unlock(&o->lock);
                return rc;
            }
            continue;
        }
        o->refreshing = true;
        o->refreshes++;
        pthread_mutex_unlock(&o->lock);

        struct mg_error e;
        mg_error_clear(&e);
        struct mg_oauth2_reply *r = calloc(1, sizeof(*r));
        enum mg_code rc;
        char *cmd_token = NULL;
        if (r == NULL) {
            rc = mg_error_set(&e, MG_E_INTERNAL, "out of memory");
        } else if (o->token_command != NULL) {
            mg_info("running --oauth2-token-command for an access token");
            rc = run_command(o->token_command, &cmd_token, &e);
        } else {
            mg_info("refreshing the OAuth2 access token at %s", o->host);
            rc = refresh_http(o, r, &e);
        }

        pthread_mutex_lock(&o->lock);
        if (rc == MG_OK) {
            const char *t = cmd_token != NULL ? cmd_token : r->access_token;
            explicit_bzero(o->token, sizeof(o->token));
            memcpy(o->token, t, strlen(t) + 1);
            o->have = true;
            o->stale = false;
            if (cmd_token != NULL) {
                o->expiry.tv_sec = 0;
            } else {
                clock_gettime(CLOCK_MONOTONIC, &o->expiry);
                o->expiry.tv_sec += r->expires_in;
                o->margin = r->expires_in < 240 ? r->expires_in / 4 : 60;
                mg_debug("new access token valid for %ld s", r->expires_in);
            }
        }
        o->last_rc = rc;
        o->last_err = e;
        o->refreshing = false;
        o->generation++;
        pthread_cond_broadcast(&o->done);
        mg_secret_free(cmd_token);
        if (r != NULL) {
            mg_oauth2_reply_wipe(r);
            free(r);
        }
        if (rc != MG_OK) {
            if (err != NULL)
                *err = e;
            pthread_mutex_unlock(&o->lock);
            return rc;
        }
        /* Loop: hand out the new token (a zero-lifetime token refreshes again). */
        rc = hand_out(o, buf, cap, err);
        pthread_mutex_unlock(&o->lock);
        return rc;
    }
}

void mg_oauth2_reject(struct mg_oauth2 *o, const char *token)
{
    pthread_mutex_lock(&o->lock);
    if (o->have && token != NULL && strcmp(o->token, token) == 0)
        o->stale = true;
    pthread_mutex_unlock(&o->lock);
}

unsigned long mg_oauth2_refreshes(struct mg_oauth2 *o)
{
    pthread_mutex_lock(&o->lock);
    unsigned long n = o->refreshes;
    pthread_mutex_unlock(&o->lock);
    return n;
}
