/*
 * https.h - one HTTPS POST of a form, over libcurl (the GnuTLS build Debian
 * ships): certificate and host name verified, https:// only, no redirects,
 * bounded reply, cancelled with the run (cancel.h).
 *
 * Memory: the caller owns body and wipes it; the reply is read into r.
 * Thread-safety: thread-safe; libcurl's global set-up runs once.
 */
#ifndef MAILGRAB_HTTPS_H
#define MAILGRAB_HTTPS_H

#include <stddef.h>

#include "mailgrab/error.h"
#include "mailgrab/oauth2_wire.h"

/* libcurl's global set-up, once: call before starting threads. */
enum mg_code mg_https_init(struct mg_error *err);

/*
 * POST the form body (len bytes) to the token endpoint url and read the
 * reply into r. The caller owns body and wipes it. Network, TLS and HTTP
 * failures become MG_E_OAUTH with a message naming the host.
 */
enum mg_code mg_https_post(const char *url, const char *cafile, const char *body, size_t len,
                           struct mg_oauth2_reply *r, struct mg_error *err);

#endif
