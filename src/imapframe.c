/* imapframe.c - see include/mailgrab/imapframe.h */
#include "mailgrab/imapframe.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

void mg_frame_init(struct mg_frame *f)
{
    memset(f, 0, sizeof(*f));
}

void mg_frame_command(struct mg_frame *f)
{
    f->kept = 0;
    f->kept_bytes = 0;
}

__attribute__((format(printf, 5, 6))) static enum mg_frame_state
stop(struct mg_frame *f, enum mg_frame_state state, char *why, size_t cap, const char *fmt, ...)
{
    f->state = state;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return state;
}

#define refuse(f, why, cap, ...) stop(f, MG_FRAME_REFUSED, why, cap, __VA_ARGS__)

/* "BODY[] " or "BODY[]<origin> " just before a literal's '{'. */
static bool before_body(const struct mg_frame *f)
{
    size_t n = f->lastlen;
    const char *e = f->last + n;
    if (n >= 7 && memcmp(e - 7, "BODY[] ", 7) == 0)
        return true;
    if (n < 2 || e[-1] != ' ' || e[-2] != '>')
        return false;
    size_t i = n - 2;
    while (i > 0 && f->last[i - 1] >= '0' && f->last[i - 1] <= '9')
        i--;
    return i >= 7 && memcmp(f->last + i - 7, "BODY[]<", 7) == 0;
}

/* "* <number> FETCH" at the head of the response. */
static bool is_fetch(const struct mg_frame *f)
{
    size_t i = 2;
    while (i < f->headlen && f->head[i] >= '0' && f->head[i] <= '9')
        i++;
    return i > 2 && f->headlen >= i + 6 && strncasecmp(f->head + i, " FETCH", 6) == 0;
}

/* A response ended: count it if libetpan keeps it until the command ends. */
static enum mg_frame_state response_end(struct mg_frame *f, char *why, size_t cap)
{
    if (f->headlen >= 6 && strncasecmp(f->head, "* BYE ", 6) == 0) {
        size_t n = f->headlen - 6;
        while (n > 0 && (f->head[6 + n - 1] == '\r' || f->head[6 + n - 1] == '\n'))
            n--;
        snprintf(f->bye, sizeof(f->bye), "%.*s", (int)n, f->head + 6);
        if (!f->greeted)
            return stop(f, MG_FRAME_BYE, why, cap, "%s", f->bye);
    }
    f->greeted = true;
    bool untagged = f->headlen >= 2 && f->head[0] == '*' && f->head[1] == ' ';
    if (untagged && !(f->fetch_consumed && is_fetch(f))) {
        f->kept++;
        f->kept_bytes += f->response_bytes;
        if (f->kept > MG_FRAME_UNTAGGED_MAX)
            return refuse(f, why, cap,
                          "the server sent more than %llu untagged responses to one command",
                          MG_FRAME_UNTAGGED_MAX);
        if (f->kept_bytes > MG_FRAME_KEPT_MAX)
            return refuse(f, why, cap,
                          "the server sent more than %llu bytes of untagged responses to one "
                          "command",
                          MG_FRAME_KEPT_MAX);
    }
    f->response_bytes = 0;
    f->headlen = 0;
    f->lastlen = 0;
    f->lit = 0;
    return MG_FRAME_OK;
}

/* A line ended with "{n}": its literal follows. */
static enum mg_frame_state literal(struct mg_frame *f, char *why, size_t cap)
{
    f->lit = 0;
    f->lastlen = 0;
    if (f->lit_body && f->bodies_streamed) {
        f->literal_left = f->lit_n;
        return MG_FRAME_OK;
    }
    if (f->lit_n > MG_FRAME_RESPONSE_MAX - f->response_bytes)
        return refuse(f, why, cap,
                      "the server announced a literal of %llu bytes outside a message body",
                      (unsigned long long)f->lit_n);
    f->response_bytes += (size_t)f->lit_n;
    f->literal_left = f->lit_n;
    return MG_FRAME_OK;
}

enum mg_frame_state mg_frame_feed(struct mg_frame *f, const unsigned char *b, size_t n, char *why,
                                  size_t cap)
{
    size_t i = 0;
    while (i < n && f->state == MG_FRAME_OK) {
        if (f->literal_left > 0) {
            size_t k = n - i < f->literal_left ? n - i : (size_t)f->literal_left;
            f->literal_left -= k;
            i += k;
            continue;
        }
        unsigned char ch = b[i++];
        if (++f->response_bytes > MG_FRAME_RESPONSE_MAX)
            return refuse(f, why, cap, "the server sent a response longer than %llu bytes",
                          MG_FRAME_RESPONSE_MAX);
        if (f->headlen < sizeof(f->head))
            f->head[f->headlen++] = (char)ch;
        if (ch == '\n') {
            /* "{n}\r\n" (or "{n}\n"): a literal follows; else the response ends */
            if (f->lit == 3 || f->lit == 4)
                literal(f, why, cap);
            else
                response_end(f, why, cap);
            continue;
        }
        if (ch == '{') {
            f->lit = 1;
            f->lit_n = 0;
            f->lit_body = before_body(f);
        } else if (f->lit == 1 && ch >= '0' && ch <= '9') {
            f->lit_n = f->lit_n > UINT32_MAX ? f->lit_n : f->lit_n * 10 + (ch - '0');
        } else if (f->lit == 1 && ch == '+') {
            f->lit = 2;
        } else if ((f->lit == 1 || f->lit == 2) && ch == '}') {
            f->lit = 4;
        } else if (f->lit == 4 && ch == '\r') {
            f->lit = 3;
        } else {
            f->lit = 0;
        }
        if (f->lastlen == sizeof(f->last)) {
            memmove(f->last, f->last + 1, sizeof(f->last) - 1);
            f->lastlen--;
        }
        f->last[f->lastlen++] = (char)ch;
    }
    return f->state;
}
