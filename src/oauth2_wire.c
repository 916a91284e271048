/* oauth2_wire.c - see include/mailgrab/oauth2_wire.h */
#include "mailgrab/oauth2_wire.h"

#include "mailgrab/buf.h"

#include <errno.h>
#include <json-c/json.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DESC_MAX 200

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
/* SASL strings are built in stack storage (mg_buf_init_fixed): they hold a
 * token, and a heap buffer that grew would leave copies behind. */
static void cat_str(struct mg_buf *c, const char *s)
{
    (void)mg_buf_append(c, s, strlen(s)); /* a failure sticks: sasl_finish checks */
}

/* No control characters: \1 is the SASL separator. */
static bool sasl_clean(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int sasl_finish(struct mg_buf *c, char *buf, size_t cap)
{
    int rc = -1;
    if (!c->failed && mg_base64((const uint8_t *)c->data, c->len, false, buf, cap) >= 0)
        rc = 0;
    explicit_bzero(c->data, c->cap);
    return rc;
}

int mg_xoauth2_initial(const char *user, const char *token, char *buf, size_t cap)
{
    if (!sasl_clean(user) || !sasl_clean(token))
        return -1;
    char raw[MG_OAUTH2_TOKEN_MAX + 1024];
    struct mg_buf c;
    mg_buf_init_fixed(&c, raw, sizeof(raw));
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
    struct mg_buf c;
    mg_buf_init_fixed(&c, raw, sizeof(raw));
    cat_str(&c, "n,a=");
    /* RFC 5801 saslname: ',' and '=' are escaped. */
    for (const char *p = user; *p != '\0'; p++) {
        if (*p == ',')
            cat_str(&c, "=2C");
        else if (*p == '=')
            cat_str(&c, "=3D");
        else
            (void)mg_buf_putc(&c, (unsigned char)*p);
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

static void form_put(struct mg_buf *f, const char *s, size_t n)
{
    (void)mg_buf_append(f, s, n); /* a failure sticks: the caller checks f->failed */
}

static void form_escape(struct mg_buf *f, const char *s)
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

void mg_form_add(struct mg_buf *f, const char *key, const char *value)
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
    if (len > 0 && len <= MG_OAUTH2_REPLY_MAX && len < INT32_MAX) {
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
