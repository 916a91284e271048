/* tls.c - see include/mailgrab/tls.h */
#include "mailgrab/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct mg_tls_ctx {
    SSL_CTX *ssl_ctx;
};

/* Reading what libetpan will hold in memory: one response outside streamed
 * message bodies, and the untagged responses it keeps until a command ends. */
struct framing {
    uint64_t literal_left; /* bytes of the current literal still to pass */
    size_t response_bytes; /* of the current response, literals included */
    size_t kept_bytes;     /* of untagged responses kept for this command */
    size_t kept;           /* untagged responses kept for this command */
    char head[128];        /* the current response's first bytes */
    size_t headlen;
    char last[24]; /* the bytes before a '{', to tell BODY[] literals */
    size_t lastlen;
    int lit; /* 0, or where in "{digits[+]}\r\n" the line is */
    uint64_t lit_n;
    bool lit_body;        /* the '{' follows "BODY[] " */
    bool fetch_consumed;  /* FETCH responses are handed over and freed */
    bool bodies_streamed; /* BODY[] literals stream to a handler */
    bool refused;
    bool greeted; /* the greeting has been read */
    bool bye;     /* ... and it was a BYE */
};

struct conn {
    int fd;
    int cancel_fd; /* eventfd: readable once cancelled */
    atomic_bool cancelled;
    SSL *ssl;
    int timeout_ms;
    struct framing fr;
    char why[160];
};

static void ssl_error_text(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, cap, "unknown TLS error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
}

enum mg_code mg_tls_ctx_create(const char *cafile, struct mg_tls_ctx **out, struct mg_error *err)
{
    struct mg_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    ctx->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (ctx->ssl_ctx == NULL)
        goto err_ssl;
    if (SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION) != 1)
        goto err_ssl;
    SSL_CTX_set_verify(ctx->ssl_ctx, SSL_VERIFY_PEER, NULL);
    /* Without read-ahead OpenSSL reads each record's header and body with
     * separate syscalls; a download is one long stream of records. */
    SSL_CTX_set_read_ahead(ctx->ssl_ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx->ssl_ctx, 64 * 1024);
    SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                       SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                       SSL_MODE_RELEASE_BUFFERS);
    if (cafile != NULL) {
        if (SSL_CTX_load_verify_locations(ctx->ssl_ctx, cafile, NULL) != 1) {
            char why[160];
            ssl_error_text(why, sizeof(why));
            mg_error_set(err, MG_E_USAGE,
                         "cannot load CA certificates from %s (%s): give a PEM file", cafile, why);
            mg_tls_ctx_destroy(ctx);
            return MG_E_USAGE;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx->ssl_ctx) != 1) {
        goto err_ssl;
    }
    *out = ctx;
    return MG_OK;

err_ssl : {
    char why[160];
    ssl_error_text(why, sizeof(why));
    mg_tls_ctx_destroy(ctx);
    return mg_error_set(err, MG_E_TLS, "cannot set up TLS: %s", why);
}
}

void mg_tls_ctx_destroy(struct mg_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

static int elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int)((now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000);
}

/* Wait until fd is ready for events, the stream is cancelled, or timeout.
 * Returns 1 ready, 0 timeout, -1 cancelled or poll error (why is set). */
static int wait_fd(struct conn *c, short events)
{
    struct pollfd pfd[2] = {{.fd = c->fd, .events = events},
                            {.fd = c->cancel_fd, .events = POLLIN}};
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (atomic_load(&c->cancelled)) {
            snprintf(c->why, sizeof(c->why), "cancelled");
            return -1;
        }
        int left = c->timeout_ms - elapsed_ms(&start);
        if (left <= 0) {
            snprintf(c->why, sizeof(c->why), "no data from server for %d s", c->timeout_ms / 1000);
            return 0;
        }
        int r = poll(pfd, 2, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(c->why, sizeof(c->why), "poll: %s", strerror(errno));
            return -1;
        }
        if (pfd[1].revents != 0) {
            snprintf(c->why, sizeof(c->why), "cancelled");
            return -1;
        }
        if (r > 0)
            return 1;
    }
}

/* After an SSL call returned r <= 0: wait as OpenSSL asks. Returns 1 to
 * retry the call, -1 when the stream is finished (c->why says why). */
static int ssl_wait(struct conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(c, POLLIN) == 1 ? 1 : -1;
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(c, POLLOUT) == 1 ? 1 : -1;
    case SSL_ERROR_ZERO_RETURN:
        snprintf(c->why, sizeof(c->why), "server closed the connection");
        return -1;
    case SSL_ERROR_SYSCALL:
        if (errno != 0 && ERR_peek_error() == 0)
            snprintf(c->why, sizeof(c->why), "connection error: %s", strerror(errno));
        else if (ERR_peek_error() != 0)
            ssl_error_text(c->why, sizeof(c->why));
        else
            snprintf(c->why, sizeof(c->why), "server closed the connection");
        ERR_clear_error();
        return -1;
    default:
        ssl_error_text(c->why, sizeof(c->why));
        return -1;
    }
}

__attribute__((format(printf, 2, 3))) static bool refuse(struct conn *c, const char *fmt, ...)
{
    c->fr.refused = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    return false;
}

/* "BODY[] " or "BODY[]<origin> " just before a literal's '{'. */
static bool before_body(const struct framing *f)
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

/* A response ended: count it if libetpan keeps it until the command ends. */
static bool response_end(struct conn *c)
{
    struct framing *f = &c->fr;
    if (!f->greeted) {
        /* libetpan 1.9.4 leaks the parsed greeting when it is a BYE: end the
         * stream before it parses one, keeping the server's words. */
        f->greeted = true;
        if (f->headlen >= 6 && strncasecmp(f->head, "* BYE ", 6) == 0) {
            size_t n = f->headlen - 6;
            while (n > 0 && (f->head[6 + n - 1] == '\r' || f->head[6 + n - 1] == '\n'))
                n--;
            f->bye = true;
            snprintf(c->why, sizeof(c->why), "%.*s", (int)n, f->head + 6);
            return false;
        }
    }
    bool untagged = f->headlen >= 2 && f->head[0] == '*' && f->head[1] == ' ';
    if (untagged && f->fetch_consumed) {
        size_t i = 2;
        while (i < f->headlen && f->head[i] >= '0' && f->head[i] <= '9')
            i++;
        if (i > 2 && f->headlen >= i + 6 && strncasecmp(f->head + i, " FETCH", 6) == 0)
            untagged = false;
    }
    if (untagged) {
        f->kept++;
        f->kept_bytes += f->response_bytes;
        if (f->kept > MG_TLS_UNTAGGED_MAX)
            return refuse(c, "the server sent more than %llu untagged responses to one command",
                          MG_TLS_UNTAGGED_MAX);
        if (f->kept_bytes > MG_TLS_KEPT_MAX)
            return refuse(c,
                          "the server sent more than %llu bytes of untagged responses to one "
                          "command",
                          MG_TLS_KEPT_MAX);
    }
    f->response_bytes = 0;
    f->headlen = 0;
    f->lastlen = 0;
    f->lit = 0;
    return true;
}

/* Follow IMAP framing over bytes the server sent (lines, {n} literals) and
 * refuse what would make libetpan hold more than the bounds in tls.h: a
 * response longer than MG_TLS_RESPONSE_MAX outside BODY[] literals (which
 * stream to a handler), a literal announced beyond it (libetpan allocates
 * it whole, up front), or too many untagged responses kept for a command. */
static bool frame(struct conn *c, const unsigned char *b, size_t n)
{
    struct framing *f = &c->fr;
    size_t i = 0;
    while (i < n) {
        if (f->literal_left > 0) {
            size_t k = n - i < f->literal_left ? n - i : (size_t)f->literal_left;
            f->literal_left -= k;
            i += k;
            continue;
        }
        unsigned char ch = b[i++];
        if (++f->response_bytes > MG_TLS_RESPONSE_MAX)
            return refuse(c, "the server sent a response longer than %llu bytes",
                          MG_TLS_RESPONSE_MAX);
        if (f->headlen < sizeof(f->head))
            f->head[f->headlen++] = (char)ch;
        if (ch == '\n') {
            if (f->lit == 3 || f->lit == 4) { /* "{n}\r\n" or "{n}\n": a literal follows */
                f->lit = 0;
                f->lastlen = 0;
                if (f->lit_body && f->bodies_streamed) {
                    f->literal_left = f->lit_n;
                    continue;
                }
                if (f->lit_n > MG_TLS_RESPONSE_MAX - f->response_bytes)
                    return refuse(c,
                                  "the server announced a literal of %llu bytes outside a "
                                  "message body",
                                  (unsigned long long)f->lit_n);
                f->response_bytes += (size_t)f->lit_n;
                f->literal_left = f->lit_n;
                continue;
            }
            if (!response_end(c))
                return false;
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
    return true;
}

static ssize_t drv_read(mailstream_low *s, void *buf, size_t count)
{
    struct conn *c = s->data;
    if (count > INT_MAX)
        count = INT_MAX;
    if (c->fr.refused || c->fr.bye)
        return -1;
    for (;;) {
        if (atomic_load(&c->cancelled)) {
            snprintf(c->why, sizeof(c->why), "cancelled");
            return -1;
        }
        errno = 0;
        int r = SSL_read(c->ssl, buf, (int)count);
        if (r > 0)
            return frame(c, buf, (size_t)r) ? r : -1;
        if (ssl_wait(c, r) < 0)
            return -1;
    }
}

static ssize_t drv_write(mailstream_low *s, const void *buf, size_t count)
{
    struct conn *c = s->data;
    if (count > INT_MAX)
        count = INT_MAX;
    if (count == 0)
        return 0;
    c->fr.kept = 0; /* a new command (or part of one) */
    c->fr.kept_bytes = 0;
    for (;;) {
        if (atomic_load(&c->cancelled)) {
            snprintf(c->why, sizeof(c->why), "cancelled");
            return -1;
        }
        errno = 0;
        int r = SSL_write(c->ssl, buf, (int)count);
        if (r > 0)
            return r;
        if (ssl_wait(c, r) < 0)
            return -1;
    }
}

static int drv_close(mailstream_low *s)
{
    struct conn *c = s->data;
    /* No close_notify: the peer may be gone and a blocking exchange here
     * would only delay shutdown. IMAP's LOGOUT is the orderly end. */
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    return 0;
}

static int drv_get_fd(mailstream_low *s)
{
    struct conn *c = s->data;
    return c->fd;
}

static void conn_free(struct conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    if (c->cancel_fd >= 0)
        close(c->cancel_fd);
    free(c);
}

static void drv_free(mailstream_low *s)
{
    conn_free(s->data);
    free(s);
}

static void drv_cancel(mailstream_low *s)
{
    struct conn *c = s->data;
    atomic_store(&c->cancelled, true);
    uint64_t one = 1;
    ssize_t w = write(c->cancel_fd, &one, sizeof(one));
    (void)w;
}

static struct mailstream_cancel *drv_get_cancel(mailstream_low *s)
{
    return NULL; /* no IDLE support needed */
}

static carray *drv_get_chain(mailstream_low *s)
{
    return NULL;
}

static mailstream_low_driver tls_driver = {
    .mailstream_read = drv_read,
    .mailstream_write = drv_write,
    .mailstream_close = drv_close,
    .mailstream_get_fd = drv_get_fd,
    .mailstream_free = drv_free,
    .mailstream_cancel = drv_cancel,
    .mailstream_get_cancel = drv_get_cancel,
    .mailstream_get_certificate_chain = drv_get_chain,
};

static bool is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Non-blocking connect to one address; 0 ok, else errno-like code. */
static int connect_one(struct conn *c, const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return errno;
    c->fd = fd;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        c->fd = -1;
        return e;
    }
    int r = wait_fd(c, POLLOUT);
    if (r != 1) {
        close(fd);
        c->fd = -1;
        return r == 0 ? ETIMEDOUT : ECANCELED;
    }
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr != 0) {
        close(fd);
        c->fd = -1;
    }
    return soerr;
}

static enum mg_code tcp_connect(struct conn *c, const char *host, const char *port,
                                struct mg_error *err)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r == EAI_NONAME || r == EAI_NODATA || r == EAI_FAIL)
        return mg_error_set(err, MG_E_CONNECT, "unknown host '%s': check --server and your DNS",
                            host);
    if (r == EAI_AGAIN)
        return mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER,
                              "cannot resolve '%s' right now (%s): check the network", host,
                              gai_strerror(r));
    if (r != 0)
        return mg_error_set(err, MG_E_CONNECT, "cannot resolve '%s': %s", host, gai_strerror(r));

    int last = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        last = connect_one(c, ai);
        if (last == 0)
            break;
        if (last == ECANCELED)
            break;
    }
    freeaddrinfo(res);
    if (last == 0) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return MG_OK;
    }
    if (last == ECONNREFUSED)
        return mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER,
                              "connection to %s port %s refused: check --server and --port", host,
                              port);
    if (last == ETIMEDOUT)
        return mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER,
                              "connection to %s port %s timed out: check the network, --port, or "
                              "raise --timeout",
                              host, port);
    return mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER, "cannot connect to %s port %s: %s",
                          host, port, strerror(last));
}

static enum mg_code tls_handshake(struct mg_tls_ctx *ctx, struct conn *c, const char *host,
                                  const char *port, struct mg_error *err)
{
    c->ssl = SSL_new(ctx->ssl_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory setting up TLS");
    /* The certificate must name the host we were told to reach. */
    if (is_ip_literal(host)) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1)
            return mg_error_set(err, MG_E_TLS, "cannot verify IP address %s", host);
    } else {
        if (SSL_set1_host(c->ssl, host) != 1 || SSL_set_tlsext_host_name(c->ssl, host) != 1)
            return mg_error_set(err, MG_E_TLS, "cannot use '%s' as a TLS host name", host);
    }
    for (;;) {
        errno = 0;
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK) {
            const char *what = X509_verify_cert_error_string(vr);
            if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
                return mg_error_set(err, MG_E_TLS,
                                    "the certificate of %s is not valid for that name (%s): check "
                                    "--server; refusing to send credentials",
                                    host, what);
            return mg_error_set(err, MG_E_TLS,
                                "cannot verify the certificate of %s (%s): if the server uses a "
                                "private CA, give it with --cafile",
                                host, what);
        }
        if (ssl_wait(c, r) < 0) {
            if (strstr(c->why, "no data") != NULL)
                return mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER,
                                      "TLS handshake with %s port %s timed out: is this an IMAPS "
                                      "port (993)?",
                                      host, port);
            return mg_error_set(err, MG_E_TLS,
                                "TLS handshake with %s port %s failed (%s): is this an IMAPS port?",
                                host, port, c->why);
        }
    }
    return MG_OK;
}

enum mg_code mg_tls_connect(struct mg_tls_ctx *ctx, const char *host, const char *port,
                            int timeout_s, mailstream **out, struct mg_error *err)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    c->fd = -1;
    c->timeout_ms = (timeout_s > 0 ? timeout_s : 60) * 1000;
    c->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->cancel_fd < 0) {
        free(c);
        return mg_error_set(err, MG_E_INTERNAL, "eventfd: %s", strerror(errno));
    }
    enum mg_code rc = tcp_connect(c, host, port, err);
    if (rc != MG_OK)
        goto err_conn;
    rc = tls_handshake(ctx, c, host, port, err);
    if (rc != MG_OK)
        goto err_conn;

    mailstream_low *low = mailstream_low_new(c, &tls_driver);
    if (low == NULL) {
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        goto err_conn;
    }
    mailstream_low_set_timeout(low, (unsigned long)(c->timeout_ms / 1000));
    mailstream *s = mailstream_new(low, 65536);
    if (s == NULL) {
        mailstream_low_free(low);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    *out = s;
    return MG_OK;

err_conn:
    conn_free(c);
    return rc;
}

void mg_tls_cancel(mailstream *s)
{
    if (s == NULL)
        return;
    mailstream_low *low = mailstream_get_low(s);
    if (low != NULL)
        drv_cancel(low);
}

static struct conn *conn_of(mailstream *s)
{
    mailstream_low *low = s ? mailstream_get_low(s) : NULL;
    return low != NULL && low->driver == &tls_driver ? low->data : NULL;
}

void mg_tls_expect_fetch(mailstream *s, bool consumed, bool bodies)
{
    struct conn *c = conn_of(s);
    if (c != NULL) {
        c->fr.fetch_consumed = consumed;
        c->fr.bodies_streamed = bodies;
    }
}

bool mg_tls_greeted_bye(mailstream *s)
{
    struct conn *c = conn_of(s);
    return c != NULL && c->fr.bye;
}

bool mg_tls_refused(mailstream *s)
{
    struct conn *c = conn_of(s);
    return c != NULL && c->fr.refused;
}

const char *mg_tls_last_error(mailstream *s)
{
    mailstream_low *low = s ? mailstream_get_low(s) : NULL;
    if (low == NULL || low->driver != &tls_driver)
        return "connection lost";
    struct conn *c = low->data;
    return c->why[0] ? c->why : "connection lost";
}
