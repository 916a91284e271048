/*
 * error.h - mailgrab's error model and exit codes.
 *
 * Every fallible function returns an enum mg_code (MG_OK is 0) and, on failure,
 * fills a caller-owned struct mg_error with one line a user can act on. The code
 * doubles as the process exit code, so each class of failure is distinct and
 * documented in mailgrab(1). Library errors (libetpan, OpenSSL, errno) are mapped
 * to these codes at the module boundary that sees them.
 *
 * Thread-safety: all functions are thread-safe; a struct mg_error belongs to
 * one thread at a time.
 */
#ifndef MAILGRAB_ERROR_H
#define MAILGRAB_ERROR_H

#include <stdbool.h>

enum mg_code {
    MG_OK = 0,
    MG_E_PARTIAL = 1,   /* some messages could not be downloaded */
    MG_E_USAGE = 2,     /* bad command line or configuration */
    MG_E_CONNECT = 3,   /* unknown host, refused, unreachable, timed out */
    MG_E_TLS = 4,       /* handshake or certificate verification failed */
    MG_E_AUTH = 5,      /* the server refused the credentials */
    MG_E_MAILBOX = 6,   /* mailbox does not exist or cannot be selected */
    MG_E_IO = 7,        /* local file system failure (disk full, permissions) */
    MG_E_PROTOCOL = 8,  /* server dropped the connection or broke the protocol */
    MG_E_LOCKED = 9,    /* another mailgrab run holds the output directory */
    MG_E_OAUTH = 10,    /* OAuth2 token could not be obtained */
    MG_E_LIMIT = 11,    /* the server refuses to send more for now (download quota) */
    MG_E_VERIFY = 12,   /* mailgrab verify: the backup is not whole (see verify.h) */
    MG_E_OWNER = 13,    /* the output directory holds another account's backup */
    MG_E_INTERNAL = 70, /* out of memory or a bug */
    MG_E_INTERRUPTED = 130,
};

/* How a failed network operation may be retried. */
enum mg_retry {
    MG_RETRY_NONE = 0, /* permanent: retrying cannot help (bad password, bad cert) */
    MG_RETRY_NOW,      /* the connection broke: reconnect and carry on */
    MG_RETRY_LATER,    /* the server is busy or limiting us: back off first */
};

#define MG_ERROR_MAX 512

struct mg_error {
    enum mg_code code;
    enum mg_retry retry;
    char msg[MG_ERROR_MAX];
};

/* Record a failure; returns code so callers can `return mg_error_set(...)`. */
enum mg_code mg_error_set(struct mg_error *err, enum mg_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like mg_error_set, also marks the failure retryable. */
enum mg_code mg_error_retry(struct mg_error *err, enum mg_code code, enum mg_retry retry,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

void mg_error_clear(struct mg_error *err);

/* Short stable name of a code, as documented in mailgrab(1). */
const char *mg_code_name(enum mg_code code);

/* What a scheduler should do about an exit code, as documented in
 * mailgrab(1): "success", "partial" (run again), "later" (come back later:
 * the server, the network or another run is in the way), "permanent" (fix
 * the credentials, certificates, configuration or disk first) or
 * "interrupted". */
const char *mg_code_class(int code);

#endif
