/*
 * oauth2_wire.h - what OAuth2 puts on the wire and reads back: base64, the
 * SASL initial responses (XOAUTH2, OAUTHBEARER), token request forms, the
 * token endpoint's JSON reply, PKCE.
 *
 * Pure functions, no I/O, reentrant; callers own every buffer. Buffers that
 * held a secret are the caller's to wipe (mg_oauth2_reply_wipe for replies).
 */
#ifndef MAILGRAB_OAUTH2_WIRE_H
#define MAILGRAB_OAUTH2_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/buf.h"
#include "mailgrab/error.h"

/* Longest token mailgrab accepts (Microsoft's access tokens run to ~3 KB). */
#define MG_OAUTH2_TOKEN_MAX 8192

/* Longest token endpoint reply read or parsed. */
#define MG_OAUTH2_REPLY_MAX (64u * 1024)

/* What a token endpoint answered, once accepted. Wipe with mg_oauth2_reply_wipe. */
struct mg_oauth2_reply {
    char access_token[MG_OAUTH2_TOKEN_MAX];
    char refresh_token[MG_OAUTH2_TOKEN_MAX]; /* "" when none came back */
    long expires_in;                         /* seconds; 3600 when the reply omits it */
};

void mg_oauth2_reply_wipe(struct mg_oauth2_reply *r);

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

/* Append "key=value" to a form body (application/x-www-form-urlencoded,
 * built in a buffer over caller storage, mg_buf_init_fixed: it holds
 * secrets), with '&' before all but the first, both escaped: unreserved
 * characters (RFC 3986) kept, space as "+", the rest %XX. A failure sticks
 * in f->failed: check it once at the end. */
void mg_form_add(struct mg_buf *f, const char *key, const char *value);

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
