/* error.c - see include/mailgrab/error.h */
#include "mailgrab/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum mg_code vset(struct mg_error *err, enum mg_code code, enum mg_retry retry,
                         const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static enum mg_code vset(struct mg_error *err, enum mg_code code, enum mg_retry retry,
                         const char *fmt, va_list ap)
{
    if (err == NULL)
        return code;
    err->code = code;
    err->retry = retry;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    /* One line, always: a server string must not break the log format. */
    for (char *p = err->msg; *p != '\0'; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    return code;
}

enum mg_code mg_error_set(struct mg_error *err, enum mg_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, MG_RETRY_NONE, fmt, ap);
    va_end(ap);
    return code;
}

enum mg_code mg_error_retry(struct mg_error *err, enum mg_code code, enum mg_retry retry,
                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, retry, fmt, ap);
    va_end(ap);
    return code;
}

void mg_error_clear(struct mg_error *err)
{
    memset(err, 0, sizeof(*err));
}

const char *mg_code_name(enum mg_code code)
{
    switch (code) {
    case MG_OK:
        return "ok";
    case MG_E_PARTIAL:
        return "partial";
    case MG_E_USAGE:
        return "usage";
    case MG_E_CONNECT:
        return "connect";
    case MG_E_TLS:
        return "tls";
    case MG_E_AUTH:
        return "auth";
    case MG_E_MAILBOX:
        return "mailbox";
    case MG_E_IO:
        return "io";
    case MG_E_PROTOCOL:
        return "protocol";
    case MG_E_LOCKED:
        return "locked";
    case MG_E_OAUTH:
        return "oauth";
    case MG_E_LIMIT:
        return "limit";
    case MG_E_VERIFY:
        return "verify";
    case MG_E_OWNER:
        return "owner";
    case MG_E_INTERNAL:
        return "internal";
    case MG_E_INTERRUPTED:
        return "interrupted";
    }
    return "unknown";
}

const char *mg_code_class(int code)
{
    switch (code) {
    case MG_OK:
        return "success";
    case MG_E_PARTIAL:
        return "partial";
    case MG_E_CONNECT:
    case MG_E_PROTOCOL:
    case MG_E_LOCKED:
    case MG_E_LIMIT:
        return "later";
    case MG_E_INTERRUPTED:
        return "interrupted";
    default:
        return "permanent";
    }
}
