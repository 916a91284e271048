/*
 * oauth2.h - OAuth2 access tokens for IMAP (XOAUTH2 / OAUTHBEARER).
 *
 * Owns: the refresh token and client secret (read once from their files,
 * which must be private), the one cached access token with its expiry, the
 * refresh against the provider's token endpoint (RFC 6749 section 6, an HTTPS
 * POST through libcurl with certificate verification, JSON reply read with
 * json-c), and the atomic rotation of the refresh-token file when the
 * provider hands out a new refresh token. With a token command instead, the
 * command's first output line is the access token; it is kept for the run
 * only, and a refresh runs the command again.
 *
 * Design: one struct mg_oauth2 is shared by every worker. mg_oauth2_token
 * hands out the cached token while it has more than 60 s left (a quarter of
 * its lifetime for tokens shorter than 4 minutes). Otherwise exactly one
 * caller refreshes while the others wait on a condition variable and then
 * share its result, success or failure ("single flight"): a revoked refresh
 * token costs one request, not one per worker. mg_oauth2_reject marks the
 * cached token stale only if it is the token the server refused, so N
 * workers reporting the same stale token cause one refresh.
 *
 * Memory: strings in struct mg_oauth2_cfg are borrowed for mg_oauth2_create
 * only. Tokens are copied into caller buffers. Every buffer that held a
 * secret is wiped with explicit_bzero before it is freed or goes out of
 * scope. No secret reaches a log line, an error message or argv.
 *
 * Thread-safety: mg_oauth2_token, mg_oauth2_reject and mg_oauth2_refreshes
 * may be called from any thread. create/destroy are not thread-safe; create
 * initializes libcurl, so call it before starting threads. The pure helpers
 * at the end are reentrant and do no I/O.
 */
#ifndef MAILGRAB_OAUTH2_H
#define MAILGRAB_OAUTH2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/error.h"

/* Longest token mailgrab accepts (Microsoft's access tokens run to ~3 KB). */
#define MG_OAUTH2_TOKEN_MAX 8192

struct mg_oauth2_cfg {
    const char *token_url;          /* https:// only */
    const char *client_id;          /* required with token_url */
    const char *client_secret_file; /* may be NULL (public clients) */
    const char *refresh_token_file; /* required with token_url; rewritten on rotation */
    const char *token_command;      /* instead of all of the above */
    const char *cafile;             /* CA bundle for the token endpoint; NULL = system */
};

struct mg_oauth2;

enum mg_code mg_oauth2_create(const struct mg_oauth2_cfg *cfg, struct mg_oauth2 **out,
                              struct mg_error *err);
/* Wipes every secret. Accepts NULL. */
void mg_oauth2_destroy(struct mg_oauth2 *o);

/* A valid access token into buf (NUL-terminated), refreshing if needed. */
enum mg_code mg_oauth2_token(struct mg_oauth2 *o, char *buf, size_t cap, struct mg_error *err);

/* The server refused token: the next mg_oauth2_token refreshes, unless the
 * cached token is already a different (newer) one. */
void mg_oauth2_reject(struct mg_oauth2 *o, const char *token);

/* Refresh requests made so far (token endpoint POSTs or command runs). */
unsigned long mg_oauth2_refreshes(struct mg_oauth2 *o);

/* Provider presets for mailgrab login and the IMAP side. */
/* What a token endpoint answered, once accepted. Wipe with mg_oauth2_reply_wipe. */
struct mg_oauth2_reply {
    char access_token[MG_OAUTH2_TOKEN_MAX];
    char refresh_token[MG_OAUTH2_TOKEN_MAX]; /* "" when none came back */
    long expires_in;                         /* seconds; 3600 when the reply omits it */
};

void mg_oauth2_reply_wipe(struct mg_oauth2_reply *r);

/*
 * POST the form body (len bytes) to the token endpoint url and read the
 * reply into r. The caller owns body and wipes it. Network, TLS and HTTP
 * failures become MG_E_OAUTH with a message naming the host.
 */
enum mg_code mg_oauth2_post(const char *url, const char *cafile, const char *body, size_t len,
                            struct mg_oauth2_reply *r, struct mg_error *err);

/* First line of a private file (mg_check_private) as a fresh heap string;
 * what names it in messages ("client secret"). Free with mg_oauth2_secret_free. */
enum mg_code mg_oauth2_read_secret(const char *path, const char *what, char **out,
                                   struct mg_error *err);
/* Wipe and free a string from mg_oauth2_read_secret. Accepts NULL. */
void mg_oauth2_secret_free(char *s);

/* Replace path with data (len bytes) plus a newline, atomically: temp file
 * 0600 in the same directory, fsync, rename, fsync the directory. */
enum mg_code mg_oauth2_write_secret(const char *path, const char *data, size_t len,
                                    struct mg_error *err);

/* ---- pure helpers: no I/O, unit-tested ---- */

/* Base64 (RFC 4648 section 4), or base64url without padding (section 5)
 * when url is set. Returns the length written (NUL-terminated), or -1 when
 * it does not fit in cap. */
long mg_base64(const uint8_t *in, size_t len, bool url, char *buf, size_t cap);

/* SASL XOAUTH2 initial response: base64("user=U\1auth=Bearer T\1\1").
 * Returns 0, or -1 when it does not fit or user/token are unusable. */
int mg_xoauth2_initial(const char *user, const char *token, char *buf, size_t cap);

/* SASL OAUTHBEARER (RFC 7628) initial response:
 * base64("n,a=U,\1host=H\1port=P\1auth=Bearer T\1\1"), with ',' and '='
 * in U escaped as =2C and =3D. Returns 0 or -1. */
int mg_oauthbearer_initial(const char *user, const char *host, const char *port, const char *token,
                           char *buf, size_t cap);

/* A form body (application/x-www-form-urlencoded) being built in a caller
 * buffer. Overflow is sticky: check it once at the end. */
struct mg_form {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
};

void mg_form_init(struct mg_form *f, char *buf, size_t cap);
/* Append "key=value" (with '&' before all but the first), both escaped:
 * unreserved characters (RFC 3986) kept, space as "+", the rest %XX. */
void mg_form_add(struct mg_form *f, const char *key, const char *value);

/* Read a token endpoint reply: HTTP status and body (len bytes, not a C
 * string). Fills r on success; otherwise MG_E_OAUTH with the endpoint's
 * error and error_description, or the invalid_grant advice. host names the
 * endpoint in messages. */
enum mg_code mg_oauth2_parse_reply(long status, const char *body, size_t len, const char *host,
                                   struct mg_oauth2_reply *r, struct mg_error *err);

/* PKCE S256 (RFC 7636): base64url(SHA-256(verifier)) without padding.
 * Returns 0, or -1 when cap is too small (needs 44). */
int mg_pkce_challenge(const char *verifier, char *buf, size_t cap);

/* The host part of an http(s) URL, for messages. Returns 0 or -1. */
int mg_url_host(const char *url, char *buf, size_t cap);

#endif
