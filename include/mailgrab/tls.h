/*
 * tls.h - TCP + TLS transport for libetpan, built on OpenSSL.
 *
 * libetpan's own TLS verifies nothing, so mailgrab brings its own: one shared
 * client context (TLS >= 1.2, the system CA store or --cafile, certificate and
 * host name verification, SNI) and a libetpan mailstream_low driver doing
 * non-blocking I/O with poll(), an inactivity timeout, and a cancel that works
 * from any thread. The driver's read never returns 0: end of stream, timeout
 * and cancel are all -1, because libetpan 1.9.4 spins on a 0 mid-literal.
 *
 * The driver also bounds what a server can make libetpan hold, whatever it
 * sends (see imapframe.h): beyond a bound, the read fails as a broken stream,
 * and mg_tls_refused says so.
 *
 * COMPRESS=DEFLATE (RFC 4978, compress.h) runs inside the driver: once the
 * server agreed to it, every byte either way goes through deflate, and the
 * bounds above see the inflated IMAP text. The context counts the bytes
 * its streams received as the server sent them (compressed, when they
 * were): what a run cost on the wire, TLS records and TCP aside.
 *
 * Memory: mg_tls_ctx is created once and destroyed after every stream using it
 * is gone. A mailstream from mg_tls_connect belongs to its caller (normally
 * handed to mailimap_connect, which then owns it).
 * Thread-safety: mg_tls_ctx may be shared by all threads; a stream is used by
 * one thread, except mg_tls_cancel, which may be called from any thread.
 */
#ifndef MAILGRAB_TLS_H
#define MAILGRAB_TLS_H

#include <libetpan/libetpan.h>

#include <stdbool.h>
#include <stdint.h>

#include "mailgrab/error.h"

struct mg_tls_ctx;

/* cafile NULL: the system CA store. */
enum mg_code mg_tls_ctx_create(const char *cafile, struct mg_tls_ctx **out, struct mg_error *err);
void mg_tls_ctx_destroy(struct mg_tls_ctx *ctx);

/*
 * Resolve host, connect to port within timeout_s, and complete a verified TLS
 * handshake. Codes: MG_E_CONNECT (unknown host, refused, timeout), MG_E_TLS
 * (handshake or verification failed; never retried).
 */
enum mg_code mg_tls_connect(struct mg_tls_ctx *ctx, const char *host, const char *port,
                            int timeout_s, mailstream **out, struct mg_error *err);

/* Wake a blocked read or write on s with an error; the stream is dead after. */
void mg_tls_cancel(mailstream *s);

/* What the next command's answer holds: consumed, its FETCH responses are
 * handed to a handler and freed as they come (they do not count as kept);
 * bodies, its BODY[] literals stream to a handler (any size). */
void mg_tls_expect_fetch(mailstream *s, bool consumed, bool bodies);

/* The server's greeting was a BYE; mg_tls_last_error holds its text. The
 * stream ends there (libetpan would leak the greeting it parsed). */
bool mg_tls_greeted_bye(mailstream *s);

/* The text of the last BYE the server sent on s, or NULL. */
const char *mg_tls_bye_text(mailstream *s);

/* The stream ended because the server exceeded a bound (see above). */
bool mg_tls_refused(mailstream *s);

/* Why the last read or write on s failed, as text for an error message. */
const char *mg_tls_last_error(mailstream *s);

/* Sessions over ctx do not ask for COMPRESS=DEFLATE (--no-compress); call
 * before any stream exists. By default they do when the server offers it. */
void mg_tls_ctx_no_compress(struct mg_tls_ctx *ctx);
bool mg_tls_ctx_compress(const struct mg_tls_ctx *ctx);

/* Switching to COMPRESS=DEFLATE: while on, reads return one byte each, so
 * that libetpan holds nothing past the server's answer to COMPRESS. */
void mg_tls_hold_reads(mailstream *s, bool on);

/* The server agreed to COMPRESS DEFLATE: from now on both directions are
 * deflated. MG_E_PROTOCOL (the session must end) when libetpan holds
 * bytes past the answer; MG_E_INTERNAL out of memory. Ends the hold. */
enum mg_code mg_tls_start_compress(mailstream *s, struct mg_error *err);

/* Bytes received by every stream of ctx so far, as the server sent them
 * (the compressed bytes of compressed streams), and how many streams
 * switched to COMPRESS=DEFLATE. Thread-safe; ctx may be NULL (0). */
uint64_t mg_tls_ctx_wire_bytes(struct mg_tls_ctx *ctx);
unsigned mg_tls_ctx_compressed(struct mg_tls_ctx *ctx);

#endif
