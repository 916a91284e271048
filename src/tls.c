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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mailgrab/cancel.h"
#include "mailgrab/compress.h"
#include "mailgrab/imapframe.h"

struct mg_tls_ctx {
    SSL_CTX *ssl_ctx;
    atomic_uint_fast64_t wire_in; /* IMAP bytes received, as sent (compressed or not) */
    atomic_uint compressed;       /* sessions that switched to COMPRESS=DEFLATE */
    bool no_compress;
};

struct conn {
    int fd;
    bool lost;     /* the peer closed or reset the connection: try again */
    int cancel_fd; /* eventfd: readable once cancelled */
    atomic_bool cancelled;
    SSL *ssl;
    int timeout_ms;
    struct mg_frame fr; /* what the server may make libetpan hold */
    struct mg_tls_ctx *ctx;
    bool byte_reads;       /* reads return one byte: the stream may switch after a line */
    struct mg_compress *z; /* COMPRESS=DEFLATE is on */
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
    /* The run's cancel wakes every stream, even one still connecting. */
    struct pollfd pfd[3] = {{.fd = c->fd, .events = events},
                            {.fd = c->cancel_fd, .events = POLLIN},
                            {.fd = mg_cancel_fd(), .events = POLLIN}};
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (atomic_load(&c->cancelled) || mg_cancelled()) {
            snprintf(c->why, sizeof(c->why), "cancelled");
            return -1;
        }
        int left = c->timeout_ms - elapsed_ms(&start);
        if (left <= 0) {
            snprintf(c->why, sizeof(c->why), "no data from server for %d s", c->timeout_ms / 1000);
            return 0;
        }
        int r = poll(pfd, 3, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(c->why, sizeof(c->why), "poll: %s", strerror(errno));
            return -1;
        }
        if (pfd[1].revents != 0 || pfd[2].revents != 0) {
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
        c->lost = true;
        snprintf(c->why, sizeof(c->why), "server closed the connection");
        return -1;
    case SSL_ERROR_SYSCALL:
        c->lost = ERR_peek_error() == 0;
        if (errno != 0 && ERR_peek_error() == 0)
            snprintf(c->why, sizeof(c->why), "connection error: %s", strerror(errno));
        else if (ERR_peek_error() != 0)
            ssl_error_text(c->why, sizeof(c->why));
        else
            snprintf(c->why, sizeof(c->why), "server closed the connection");
        ERR_clear_error();
        return -1;
    default:
        /* OpenSSL 3 says an EOF mid-record is a protocol error: it is a cut. */
        c->lost = ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
        ssl_error_text(c->why, sizeof(c->why));
        return -1;
    }
}

/* Bytes from TLS, as the server sent them: > 0, or -1 (c->why says why). */
static ssize_t raw_read(void *ctx, void *buf, size_t count)
{
    struct conn *c = ctx;
    if (count > INT_MAX)
        count = INT_MAX;
    for (;;) {
        if (atomic_load(&c->cancelled)) {
            snprintf(c->why, sizeof(c->why), "cancelled");
            return -1;
        }
        errno = 0;
        int r = SSL_read(c->ssl, buf, (int)count);
        if (r > 0) {
            atomic_fetch_add(&c->ctx->wire_in, (uint_fast64_t)r);
            return r;
        }
        if (ssl_wait(c, r) < 0)
            return -1;
    }
}

static ssize_t drv_read(mailstream_low *s, void *buf, size_t count)
{
    struct conn *c = s->data;
    if (c->fr.state != MG_FRAME_OK)
        return -1;
    ssize_t r;
    if (c->z != NULL)
        r = mg_compress_read(c->z, buf, count, raw_read, c, c->why, sizeof(c->why));
    else
        r = raw_read(c, buf, c->byte_reads ? 1 : count);
    if (r <= 0)
        return -1;
    return mg_frame_feed(&c->fr, buf, (size_t)r, c->why, sizeof(c->why)) == MG_FRAME_OK ? r : -1;
}

/* Bytes to TLS: how many were taken (> 0), or -1 (c->why says why). */
static ssize_t raw_write(void *ctx, const void *buf, size_t count)
{
    struct conn *c = ctx;
    if (count > INT_MAX)
        count = INT_MAX;
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

static ssize_t drv_write(mailstream_low *s, const void *buf, size_t count)
{
    struct conn *c = s->data;
    if (count == 0)
        return 0;
    mg_frame_command(&c->fr);
    if (c->z != NULL)
        return mg_compress_write(c->z, buf, count, raw_write, c, c->why, sizeof(c->why));
    return raw_write(c, buf, count);
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
    mg_compress_destroy(c->z);
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
    /* Nothing listens there: asking again at once will not change that. */
    if (last == ECONNREFUSED)
        return mg_error_set(err, MG_E_CONNECT,
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
            if (c->lost) /* a cut, not a refusal: a new connection may get through */
                return mg_error_retry(err, MG_E_CONNECT, MG_RETRY_NOW,
                                      "connection to %s port %s lost during the TLS handshake "
                                      "(%s): is this an IMAPS port?",
                                      host, port, c->why);
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
    c->ctx = ctx;
    mg_frame_init(&c->fr);
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
    return c != NULL && c->fr.state == MG_FRAME_BYE;
}

const char *mg_tls_bye_text(mailstream *s)
{
    struct conn *c = conn_of(s);
    return c != NULL && c->fr.bye[0] != '\0' ? c->fr.bye : NULL;
}

bool mg_tls_refused(mailstream *s)
{
    struct conn *c = conn_of(s);
    return c != NULL && c->fr.state == MG_FRAME_REFUSED;
}

const char *mg_tls_last_error(mailstream *s)
{
    mailstream_low *low = s ? mailstream_get_low(s) : NULL;
    if (low == NULL || low->driver != &tls_driver)
        return "connection lost";
    struct conn *c = low->data;
    return c->why[0] ? c->why : "connection lost";
}

void mg_tls_hold_reads(mailstream *s, bool on)
{
    struct conn *c = conn_of(s);
    if (c != NULL)
        c->byte_reads = on;
}

enum mg_code mg_tls_start_compress(mailstream *s, struct mg_error *err)
{
    struct conn *c = conn_of(s);
    if (c == NULL || c->z != NULL)
        return mg_error_set(err, MG_E_INTERNAL, "COMPRESS on a stream that cannot take it");
    /* Bytes libetpan read ahead would be compressed ones taken for text. */
    if (s->read_buffer_len != 0 || s->write_buffer_len != 0)
        return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                              "the server sent more after agreeing to COMPRESS");
    if (mg_compress_create(&c->z) != 0)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    c->byte_reads = false;
    atomic_fetch_add(&c->ctx->compressed, 1);
    return MG_OK;
}

uint64_t mg_tls_ctx_wire_bytes(struct mg_tls_ctx *ctx)
{
    return ctx != NULL ? (uint64_t)atomic_load(&ctx->wire_in) : 0;
}

unsigned mg_tls_ctx_compressed(struct mg_tls_ctx *ctx)
{
    return ctx != NULL ? atomic_load(&ctx->compressed) : 0;
}

void mg_tls_ctx_no_compress(struct mg_tls_ctx *ctx)
{
    ctx->no_compress = true;
}

bool mg_tls_ctx_compress(const struct mg_tls_ctx *ctx)
{
    return ctx != NULL && !ctx->no_compress;
}
