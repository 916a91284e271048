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
 * initializes libcurl, so call it before starting threads. What goes over
 * the wire (SASL strings, forms, replies) is oauth2_wire.h's; the HTTPS
 * POST is https.h's; secret files are password.h's.
 */
#ifndef MAILGRAB_OAUTH2_H
#define MAILGRAB_OAUTH2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailgrab/error.h"
#include "mailgrab/oauth2_wire.h"

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

/* First line of a private file (mg_check_private) as a fresh heap string;
 * what names it in messages ("client secret"). Free with mg_secret_free. */
enum mg_code mg_oauth2_read_secret(const char *path, const char *what, char **out,
                                   struct mg_error *err);

#endif
