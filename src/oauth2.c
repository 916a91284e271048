/* oauth2.c - see include/mailgrab/oauth2.h */
#include "mailgrab/oauth2.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/cancel.h"
#include "mailgrab/fsutil.h"
#include "mailgrab/log.h"
#include "mailgrab/password.h"

#define REPLY_MAX (64u * 1024)
#define FORM_MAX (3 * MG_OAUTH2_TOKEN_MAX + 4096)
#define DESC_MAX 200

/* ---- pure helpers ---- */

long mg_base64(const uint8_t *in, size_t len, bool url, char *buf, size_t cap)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *alpha = url ? safe : std;
    size_t need = url ? (len * 4 + 2) / 3 : (len + 2) / 3 * 4;
    if (need + 1 > cap || len > ((size_t)-1) / 2)
        return -1;
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        buf[o++] = alpha[v >> 18 & 63];
        buf[o++] = alpha[v >> 12 & 63];
        buf[o++] = alpha[v >> 6 & 63];
        buf[o++] = alpha[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        buf[o++] = alpha[v >> 18 & 63];
        buf[o++] = alpha[v >> 12 & 63];
        if (i + 1 < len)
            buf[o++] = alpha[v >> 6 & 63];
        else if (!url)
            buf[o++] = '=';
        if (!url)
            buf[o++] = '=';
    }
    buf[o] = '\0';
    return (long)o;
}

/* Bounded byte appender for the SASL strings. */
struct cat {
    char *buf;
    size_t cap, len;
    bool overflow;
};

static void cat_bytes(struct cat *c, const char *s, size_t n)
{
    if (c->overflow || n > c->cap - c->len) {
        c->overflow = true;
        return;
    }
    memcpy(c->buf + c->len, s, n);
    c->len += n;
}

static void cat_str(struct cat *c, const char *s)
{
    cat_bytes(c, s, strlen(s));
}

/* No control characters: \1 is the SASL separator. */
static bool sasl_clean(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int sasl_finish(struct cat *c, char *buf, size_t cap)
{
    int rc = -1;
    if (!c->overflow && mg_base64((const uint8_t *)c->buf, c->len, false, buf, cap) >= 0)
        rc = 0;
    explicit_bzero(c->buf, c->cap);
    return rc;
}

int mg_xoauth2_initial(const char *user, const char *token, char *buf, size_t cap)
{
    if (!sasl_clean(user) || !sasl_clean(token))
        return -1;
    char raw[MG_OAUTH2_TOKEN_MAX + 1024];
    struct cat c = {raw, sizeof(raw), 0, false};
    cat_str(&c, "user=");
    cat_str(&c, user);
    cat_str(&c, "\001auth=Bearer ");
    cat_str(&c, token);
    cat_str(&c, "\001\001");
    return sasl_finish(&c, buf, cap);
}

int mg_oauthbearer_initial(const char *user, const char *host, const char *port, const char *token,
                           char *buf, size_t cap)
{
    if (!sasl_clean(user) || !sasl_clean(host) || !sasl_clean(port) || !sasl_clean(token))
        return -1;
    char raw[MG_OAUTH2_TOKEN_MAX + 1024];
    struct cat c = {raw, sizeof(raw), 0, false};
    cat_str(&c, "n,a=");
    /* RFC 5801 saslname: ',' and '=' are escaped. */
    for (const char *p = user; *p != '\0'; p++) {
        if (*p == ',')
            cat_str(&c, "=2C");
        else if (*p == '=')
            cat_str(&c, "=3D");
        else
            cat_bytes(&c, p, 1);
    }
    cat_str(&c, ",\001host=");
    cat_str(&c, host);
    cat_str(&c, "\001port=");
    cat_str(&c, port);
    cat_str(&c, "\001auth=Bearer ");
    cat_str(&c, token);
    cat_str(&c, "\001\001");
    return sasl_finish(&c, buf, cap);
}

void mg_form_init(struct mg_form *f, char *buf, size_t cap)
{
    f->buf = buf;
    f->cap = cap;
    f->len = 0;
    f->overflow = cap == 0;
    if (cap > 0)
        buf[0] = '\0';
}

static void form_put(struct mg_form *f, const char *s, size_t n)
{
    /* Keep room for the terminating NUL. */
    if (f->overflow || n >= f->cap - f->len) {
        f->overflow = true;
        return;
    }
    memcpy(f->buf + f->len, s, n);
    f->len += n;
    f->buf[f->len] = '\0';
}

static void form_escape(struct mg_form *f, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            form_put(f, s, 1);
        } else if (ch == ' ') {
            form_put(f, "+", 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            form_put(f, e, 3);
        }
    }
}

void mg_form_add(struct mg_form *f, const char *key, const char *value)
{
    if (f->len > 0)
        form_put(f, "&", 1);
    form_escape(f, key);
    form_put(f, "=", 1);
    form_escape(f, value);
}

int mg_url_host(const char *url, char *buf, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    const char *at = NULL;
    size_t n = strcspn(p, "/?#");
    for (size_t i = 0; i < n; i++)
        if (p[i] == '@')
            at = p + i;
    if (at != NULL) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close != NULL)
            n = (size_t)(close + 1 - p);
    } else {
        const char *colon = memchr(p, ':', n);
        if (colon != NULL)
            n = (size_t)(colon - p);
    }
    if (n == 0 || n >= cap)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 0;
}

int mg_pkce_challenge(const char *verifier, char *buf, size_t cap)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)verifier, strlen(verifier), md);
    return mg_base64(md, sizeof(md), true, buf, cap) < 0 ? -1 : 0;
}

void mg_oauth2_reply_wipe(struct mg_oauth2_reply *r)
{
    explicit_bzero(r, sizeof(*r));
}

/* A server-chosen string made safe for one log line. */
static void printable(const char *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (; s != NULL && *s != '\0' && n + 1 < cap; s++)
        buf[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    buf[n] = '\0';
}

static const char *json_str(struct json_object *obj, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* json-c keeps its own copies of the tokens: wipe them before release. */
static void json_wipe(struct json_object *obj, const char *key)
{
    struct json_object *v;
    if (obj != NULL && json_object_object_get_ex(obj, key, &v) &&
        json_object_is_type(v, json_type_string))
        explicit_bzero((char *)json_object_get_string(v), (size_t)json_object_get_string_len(v));
}

static enum mg_code copy_token(struct json_object *obj, const char *key, char *dst,
                               const char *host, struct mg_error *err)
{
    struct json_object *v;
    json_object_object_get_ex(obj, key, &v);
    const char *s = json_object_get_string(v);
    size_t n = strlen(s);
    /* A \u0000 inside would silently shorten the token. */
    if (n == 0 || n != (size_t)json_object_get_string_len(v) || n >= MG_OAUTH2_TOKEN_MAX ||
        !sasl_clean(s))
        return mg_error_set(err, MG_E_OAUTH,
                            "the token endpoint %s sent an unusable %s (empty, too long or with "
                            "control characters)",
                            host, key);
    memcpy(dst, s, n + 1);
    return MG_OK;
}

enum mg_code mg_oauth2_parse_reply(long status, const char *body, size_t len, const char *host,
                                   struct mg_oauth2_reply *r, struct mg_error *err)
{
    memset(r, 0, sizeof(*r));
    struct json_object *obj = NULL;
    enum mg_code rc;
    if (len > 0 && len <= REPLY_MAX && len < INT32_MAX) {
        struct json_tokener *tok = json_tokener_new_ex(16);
        if (tok == NULL)
            return mg_error_set(err, MG_E_INTERNAL, "out of memory");
        obj = json_tokener_parse_ex(tok, body, (int)len);
        if (obj != NULL && json_tokener_get_parse_end(tok) != len) {
            /* Trailing bytes after the object: allow whitespace only. */
            for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t') {
                    json_object_put(obj);
                    obj = NULL;
                    break;
                }
        }
        json_tokener_free(tok);
        if (obj != NULL && !json_object_is_type(obj, json_type_object)) {
            json_object_put(obj);
            obj = NULL;
        }
    }

    const char *error = obj != NULL ? json_str(obj, "error") : NULL;
    if (error != NULL || status < 200 || status > 299) {
        char e[DESC_MAX], d[DESC_MAX];
        printable(error, e, sizeof(e));
        printable(obj != NULL ? json_str(obj, "error_description") : NULL, d, sizeof(d));
        if (error != NULL && strcmp(error, "invalid_grant") == 0)
            rc = mg_error_set(err, MG_E_OAUTH,
                              "invalid_grant: the refresh token was revoked or has expired "
                              "(Google expires them after 7 days for apps in testing status): "
                              "run mailgrab login again");
        else if (error != NULL && strcmp(error, "invalid_client") == 0)
            rc = mg_error_set(err, MG_E_OAUTH,
                              "the token endpoint %s does not accept this client id or secret "
                              "(invalid_client%s%s): check --oauth2-client-id and the client "
                              "secret file",
                              host, d[0] ? ": " : "", d);
        else if (error != NULL)
            rc = mg_error_set(err, MG_E_OAUTH, "the token endpoint %s refused (HTTP %ld): %s%s%s",
                              host, status, e, d[0] ? ": " : "", d);
        else if (obj == NULL)
            rc = mg_error_retry(err, MG_E_OAUTH, status >= 500 ? MG_RETRY_LATER : MG_RETRY_NONE,
                                "the token endpoint %s answered HTTP %ld without a JSON error; "
                                "check the token URL",
                                host, status);
        else
            rc = mg_error_retry(err, MG_E_OAUTH, status >= 500 ? MG_RETRY_LATER : MG_RETRY_NONE,
                                "the token endpoint %s answered HTTP %ld", host, status);
        goto out;
    }
    if (obj == NULL) {
        rc = mg_error_set(err, MG_E_OAUTH,
                          "the token endpoint %s did not answer with a JSON object; check the "
                          "token URL",
                          host);
        goto out;
    }
    const char *access = json_str(obj, "access_token");
    if (access == NULL) {
        rc = mg_error_set(err, MG_E_OAUTH,
                          "the token endpoint %s replied without an access_token; check the "
                          "token URL",
                          host);
        goto out;
    }
    rc = copy_token(obj, "access_token", r->access_token, host, err);
    if (rc != MG_OK)
        goto out;
    const char *refresh = json_str(obj, "refresh_token");
    if (refresh != NULL && refresh[0] != '\0') {
        rc = copy_token(obj, "refresh_token", r->refresh_token, host, err);
        if (rc != MG_OK)
            goto out;
    }
    r->expires_in = 3600;
    struct json_object *exp;
    if (json_object_object_get_ex(obj, "expires_in", &exp)) {
        /* Some endpoints send the number as a string. */
        int64_t v = 0;
        errno = 0;
        if (json_object_is_type(exp, json_type_int) || json_object_is_type(exp, json_type_string))
            v = json_object_get_int64(exp);
        if (v > 0 && errno == 0)
            r->expires_in = v > 366L * 86400 ? 366L * 86400 : (long)v;
    }
    rc = MG_OK;
out:
    json_wipe(obj, "access_token");
    json_wipe(obj, "refresh_token");
    json_wipe(obj, "id_token");
    json_object_put(obj);
    if (rc != MG_OK)
        mg_oauth2_reply_wipe(r);
    return rc;
}

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
        mg_oauth2_secret_free(*s);
        *s = NULL;
    }
    return rc;
}

void mg_oauth2_secret_free(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
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

enum mg_code mg_oauth2_write_secret(const char *path, const char *data, size_t len,
                                    struct mg_error *err)
{
    char *line = malloc(len + 1);
    if (line == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    memcpy(line, data, len);
    line[len] = '\n';
    /* A fresh 0600 file renamed over the old one, the directory flushed:
     * only a complete, synced secret ever carries the name. */
    const char *step = "write";
    int e = mg_replace_file(path, line, len + 1, &step);
    explicit_bzero(line, len + 1);
    free(line);
    if (e == ENAMETOOLONG)
        return mg_error_set(err, MG_E_USAGE, "path too long: %s", path);
    if (e != 0)
        return mg_error_set(err, MG_E_IO, "cannot %s %s: %s", step, path, strerror(e));
    return MG_OK;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct body {
    char buf[REPLY_MAX];
    size_t len;
    bool overflow;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct body *b = ctx;
    size_t n = size * nmemb;
    if (n > sizeof(b->buf) - b->len) {
        b->overflow = true;
        return 0; /* aborts the transfer */
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    return n;
}

static enum mg_code curl_fail(CURLcode cc, const char *host, const char *detail,
                              struct mg_error *err)
{
    const char *why = detail[0] != '\0' ? detail : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return mg_error_retry(err, MG_E_OAUTH, MG_RETRY_LATER,
                              "cannot resolve the token endpoint %s: %s", host, why);
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return mg_error_retry(err, MG_E_OAUTH, MG_RETRY_LATER,
                              "cannot reach the token endpoint %s: %s", host, why);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return mg_error_set(err, MG_E_OAUTH,
                            "TLS to the token endpoint %s failed: %s (check --oauth2-cafile or "
                            "the system CA store)",
                            host, why);
    case CURLE_UNSUPPORTED_PROTOCOL:
        return mg_error_set(err, MG_E_USAGE, "the token endpoint must be an https:// URL (%s)",
                            host);
    default:
        return mg_error_retry(err, MG_E_OAUTH, MG_RETRY_LATER,
                              "request to the token endpoint %s failed: %s", host, why);
    }
}

/* A cancel (cancel.h) ends a request within about a second. */
static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)ctx, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return mg_cancelled() ? 1 : 0;
}

enum mg_code mg_oauth2_post(const char *url, const char *cafile, const char *body, size_t len,
                            struct mg_oauth2_reply *r, struct mg_error *err)
{
    char host[256];
    if (mg_url_host(url, host, sizeof(host)) != 0 || strncmp(url, "https://", 8) != 0)
        return mg_error_set(err, MG_E_USAGE, "the token endpoint must be an https:// URL");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return mg_error_set(err, MG_E_INTERNAL, "cannot initialize libcurl");
    CURL *c = curl_easy_init();
    struct body *b = calloc(1, sizeof(*b));
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (c == NULL || b == NULL || hdrs == NULL) {
        curl_easy_cleanup(c);
        free(b);
        curl_slist_free_all(hdrs);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    char detail[CURL_ERROR_SIZE] = "";
    bool set = curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
               (cafile == NULL || curl_easy_setopt(c, CURLOPT_CAINFO, cafile) == CURLE_OK) &&
               curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_USERAGENT, "mailgrab") == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_WRITEDATA, b) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
    enum mg_code rc;
    if (!set) {
        rc = mg_error_set(err, MG_E_INTERNAL, "libcurl refused an option");
        goto out;
    }
    CURLcode cc = curl_easy_perform(c);
    if (b->overflow) {
        rc = mg_error_set(err, MG_E_OAUTH, "the token endpoint %s sent more than %u bytes", host,
                          REPLY_MAX);
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = cc == CURLE_ABORTED_BY_CALLBACK ? mg_cancel_error(err)
                                             : curl_fail(cc, host, detail, err);
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    mg_debug("token endpoint %s answered HTTP %ld (%zu bytes)", host, status, b->len);
    rc = mg_oauth2_parse_reply(status, b->buf, b->len, host, r, err);
out:
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    explicit_bzero(b, sizeof(*b));
    free(b);
    return rc;
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
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        rc = mg_error_set(err, MG_E_INTERNAL, "cannot initialize libcurl");
        goto err_free;
    }
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
    mg_oauth2_secret_free(o->client_secret);
    mg_oauth2_secret_free(o->refresh_token);
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
    struct mg_form f;
    mg_form_init(&f, form, FORM_MAX);
    mg_form_add(&f, "grant_type", "refresh_token");
    mg_form_add(&f, "refresh_token", o->refresh_token);
    mg_form_add(&f, "client_id", o->client_id);
    if (o->client_secret != NULL)
        mg_form_add(&f, "client_secret", o->client_secret);
    enum mg_code rc;
    if (f.overflow)
        rc = mg_error_set(err, MG_E_OAUTH, "the OAuth2 refresh request is too long");
    else
        rc = mg_oauth2_post(o->token_url, o->cafile, form, f.len, r, err);
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
    if (mg_oauth2_write_secret(o->refresh_file, r->refresh_token, strlen(r->refresh_token),
                               &werr) != MG_OK)
        mg_warn("the token endpoint %s rotated the refresh token but it could not be saved (%s); "
                "this run goes on, afterwards run mailgrab login again",
                o->host, werr.msg);
    else
        mg_info("the token endpoint %s rotated the refresh token; %s updated", o->host,
                o->refresh_file);
    char *fresh = strdup(r->refresh_token);
    if (fresh == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    mg_oauth2_secret_free(o->refresh_token);
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
        mg_oauth2_secret_free(cmd_token);
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
