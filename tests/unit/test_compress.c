/* Unit tests: the COMPRESS=DEFLATE layer (compress.h) over partial reads
 * and writes. The server's side is zlib used directly, as a server does;
 * the transport is a socketpair read in pieces of every size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "mailgrab/compress.h"

/* Mail-like text (words, headers, some 8-bit bytes), the same every run. */
static unsigned char *make_text(size_t n)
{
    static const char *words[] = {"Received: ", "from ",   "the ",    "meeting ", "Subject: ",
                                  "Re: ",       "budget ", "report ", "\r\n",     "Zürich ",
                                  "quarterly ", "=C3=A9 ", "and ",    "with ",    "schedule "};
    unsigned char *b = malloc(n);
    assert_non_null(b);
    uint32_t x = 12345;
    size_t i = 0;
    while (i < n) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 16) % (sizeof(words) / sizeof(words[0]))];
        for (size_t k = 0; w[k] != '\0' && i < n; k++)
            b[i++] = (unsigned char)w[k];
        if ((x >> 8) % 7 == 0 && i < n)
            b[i++] = (unsigned char)(x >> 24); /* a byte of anything */
    }
    return b;
}

/* What a server sends: raw deflate, flushed after every `piece` bytes. */
static unsigned char *server_deflate(const unsigned char *in, size_t n, size_t piece, bool finish,
                                     size_t *outlen)
{
    z_stream d = {0};
    assert_int_equal(deflateInit2(&d, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&d, n) + 64 * (n / piece + 2);
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    d.next_out = out;
    d.avail_out = (unsigned)cap;
    for (size_t i = 0; i < n; i += piece) {
        d.next_in = (unsigned char *)in + i;
        d.avail_in = (unsigned)(n - i < piece ? n - i : piece);
        assert_int_equal(deflate(&d, Z_SYNC_FLUSH), Z_OK);
        assert_int_equal(d.avail_in, 0);
    }
    if (finish)
        assert_int_equal(deflate(&d, Z_FINISH), Z_STREAM_END);
    *outlen = cap - d.avail_out;
    deflateEnd(&d);
    return out;
}

/* The transport: one end of a socketpair, read at most `step` at a time;
 * end of stream is -1, as the TLS driver reports it. */
struct fdread {
    int fd;
    size_t step;
    size_t calls;
};

static ssize_t fd_lower(void *ctx, void *buf, size_t cap)
{
    struct fdread *f = ctx;
    f->calls++;
    ssize_t r = read(f->fd, buf, cap < f->step ? cap : f->step);
    return r > 0 ? r : -1;
}

/* A socketpair fed with wire (in writes of wstep bytes) by a thread, then
 * shut, so the reader sees the bytes and then the end. */
struct feeder {
    pthread_t t;
    int fd;
    const unsigned char *wire;
    size_t n, wstep;
};

static void *feed(void *arg)
{
    struct feeder *fe = arg;
    for (size_t i = 0; i < fe->n; i += fe->wstep) {
        size_t k = fe->n - i < fe->wstep ? fe->n - i : fe->wstep;
        for (size_t done = 0; done < k;) {
            ssize_t w = write(fe->fd, fe->wire + i + done, k - done);
            if (w <= 0)
                break;
            done += (size_t)w;
        }
    }
    close(fe->fd);
    return NULL;
}

static int wire_fd(struct feeder *fe, const unsigned char *wire, size_t n, size_t wstep)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    *fe = (struct feeder){.fd = sv[0], .wire = wire, .n = n, .wstep = wstep};
    assert_int_equal(pthread_create(&fe->t, NULL, feed, fe), 0);
    return sv[1];
}

static void wire_done(struct feeder *fe, int fd)
{
    close(fd);
    pthread_join(fe->t, NULL);
}

/* Read everything z gives into a buffer of `cap` bytes a call. Returns the
 * bytes read; *last is the final return value (-1). */
static size_t read_all(struct mg_compress *z, struct fdread *f, unsigned char *got, size_t max,
                       size_t cap, char *why, size_t whycap)
{
    size_t n = 0;
    for (;;) {
        size_t room = max - n < cap ? max - n : cap;
        if (room == 0)
            room = 1;
        unsigned char tmp[65536];
        ssize_t r = mg_compress_read(z, tmp, room, fd_lower, f, why, whycap);
        assert_true(r != 0); /* never 0: libetpan would spin */
        if (r < 0)
            return n;
        assert_true((size_t)r <= room);
        assert_true(n + (size_t)r <= max);
        memcpy(got + n, tmp, (size_t)r);
        n += (size_t)r;
    }
}

/* Every split of the server's stream, every size of the caller's buffer:
 * the same bytes, all of them before the end is reported. */
static void inflate_over_partial_reads(void **state)
{
    (void)state;
    struct feeder fe;
    size_t n = 64 * 1024;
    unsigned char *text = make_text(n);
    const size_t pieces[] = {1, 100, 4096, 64 * 1024};
    const size_t steps[] = {1, 2, 3, 7, 1000, 65536};
    const size_t caps[] = {1, 5, 64, 8192, 65536};
    unsigned char *got = malloc(n);
    assert_non_null(got);
    for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
        size_t wlen;
        unsigned char *wire = server_deflate(text, n, pieces[p], false, &wlen);
        assert_true(pieces[p] == 1 || wlen < n); /* text deflates */
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
                if ((steps[s] < 3 || caps[c] < 5) && pieces[p] == 1)
                    continue; /* slow, and covered by the other splits */
                struct mg_compress *z = NULL;
                assert_int_equal(mg_compress_create(&z), 0);
                struct fdread f = {wire_fd(&fe, wire, wlen, steps[s] * 3 + 1), steps[s], 0};
                char why[128] = "";
                memset(got, 0, n);
                size_t k = read_all(z, &f, got, n, caps[c], why, sizeof(why));
                if (k != n || memcmp(got, text, n) != 0)
                    fail_msg("piece %zu step %zu cap %zu: %zu of %zu bytes, why '%s'", pieces[p],
                             steps[s], caps[c], k, n, why);
                assert_int_equal(mg_compress_inflated(z), n);
                assert_int_equal(mg_compress_compressed(z), wlen);
                wire_done(&fe, f.fd);
                mg_compress_destroy(z);
            }
        }
        free(wire);
    }
    free(got);
    free(text);
}

/* A few compressed bytes that inflate to far more than the caller's buffer:
 * zlib keeps the rest, and the next reads give it without reading the
 * transport (which has nothing more until the end). */
static void held_output_comes_without_new_input(void **state)
{
    (void)state;
    struct feeder fe;
    size_t n = 4 << 20;
    unsigned char *zeros = calloc(1, n);
    assert_non_null(zeros);
    size_t wlen;
    unsigned char *wire = server_deflate(zeros, n, n, false, &wlen);
    assert_true(wlen < 8192);
    struct mg_compress *z = NULL;
    assert_int_equal(mg_compress_create(&z), 0);
    struct fdread f = {wire_fd(&fe, wire, wlen, wlen), 1 << 20, 0};
    unsigned char *got = malloc(n);
    assert_non_null(got);
    memset(got, 1, n);
    char why[128];
    size_t k = read_all(z, &f, got, n, 16384, why, sizeof(why));
    assert_int_equal(k, n);
    assert_memory_equal(got, zeros, n);
    assert_true(f.calls <= 3); /* the wire, then the end */
    wire_done(&fe, f.fd);
    mg_compress_destroy(z);
    free(got);
    free(wire);
    free(zeros);
}

/* The transport takes at most `step` bytes a write. */
struct sink {
    unsigned char buf[1 << 20];
    size_t n;
    size_t step;
    bool fail;
};

static ssize_t sink_lower(void *ctx, const void *p, size_t n)
{
    struct sink *s = ctx;
    if (s->fail)
        return -1;
    size_t k = n < s->step ? n : s->step;
    assert_true(s->n + k <= sizeof(s->buf));
    memcpy(s->buf + s->n, p, k);
    s->n += k;
    return (ssize_t)k;
}

/* After every write, what reached the transport inflates to everything
 * written so far: each command goes out whole (Z_SYNC_FLUSH). */
static void every_write_is_flushed(void **state)
{
    (void)state;
    size_t n = 300 * 1024;
    unsigned char *text = make_text(n);
    const size_t steps[] = {1, 3, 4096};
    const size_t sizes[] = {1, 17, 4095, 4096, 70000};
    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        struct sink *sk = calloc(1, sizeof(*sk));
        assert_non_null(sk);
        sk->step = steps[s];
        struct mg_compress *z = NULL;
        assert_int_equal(mg_compress_create(&z), 0);
        z_stream inf = {0};
        assert_int_equal(inflateInit2(&inf, -15), Z_OK);
        unsigned char *got = malloc(n);
        assert_non_null(got);
        size_t sent = 0, fed = 0, k = 0;
        char why[128];
        for (size_t i = 0; sent < n; i++) {
            size_t len = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
            if (len > n - sent)
                len = n - sent;
            assert_int_equal(
                mg_compress_write(z, text + sent, len, sink_lower, sk, why, sizeof(why)),
                (ssize_t)len);
            sent += len;
            inf.next_in = sk->buf + fed;
            inf.avail_in = (unsigned)(sk->n - fed);
            inf.next_out = got + k;
            inf.avail_out = (unsigned)(n - k);
            int r = inflate(&inf, Z_SYNC_FLUSH);
            assert_true(r == Z_OK || r == Z_BUF_ERROR);
            assert_int_equal(inf.avail_in, 0);
            fed = sk->n;
            k = n - inf.avail_out;
            assert_int_equal(k, sent);
        }
        assert_memory_equal(got, text, n);
        assert_true(sk->n < n / 2); /* it does compress */
        inflateEnd(&inf);
        mg_compress_destroy(z);
        free(got);
        free(sk);
    }
    free(text);
}

/* mailgrab's own writes read back through mailgrab's own reads. */
static void round_trip(void **state)
{
    (void)state;
    struct feeder fe;
    size_t n = 64 * 1024;
    unsigned char *text = make_text(n);
    struct sink *sk = calloc(1, sizeof(*sk));
    assert_non_null(sk);
    sk->step = 5;
    struct mg_compress *w = NULL, *r = NULL;
    assert_int_equal(mg_compress_create(&w), 0);
    assert_int_equal(mg_compress_create(&r), 0);
    char why[128];
    for (size_t i = 0; i < n; i += 1000) {
        size_t len = n - i < 1000 ? n - i : 1000;
        assert_int_equal(mg_compress_write(w, text + i, len, sink_lower, sk, why, sizeof(why)),
                         (ssize_t)len);
    }
    struct fdread f = {wire_fd(&fe, sk->buf, sk->n, 7), 3, 0};
    unsigned char *got = malloc(n);
    assert_non_null(got);
    assert_int_equal(read_all(r, &f, got, n, 100, why, sizeof(why)), n);
    assert_memory_equal(got, text, n);
    wire_done(&fe, f.fd);
    mg_compress_destroy(w);
    mg_compress_destroy(r);
    free(got);
    free(sk);
    free(text);
}

/* A transport that fails fails the write, and its reason stands. */
static void write_failure_passes_through(void **state)
{
    (void)state;
    struct sink *sk = calloc(1, sizeof(*sk));
    assert_non_null(sk);
    sk->step = 100;
    sk->fail = true;
    struct mg_compress *z = NULL;
    assert_int_equal(mg_compress_create(&z), 0);
    char why[64] = "untouched";
    assert_int_equal(mg_compress_write(z, "1 NOOP\r\n", 8, sink_lower, sk, why, sizeof(why)), -1);
    assert_string_equal(why, "untouched");
    mg_compress_destroy(z);
    free(sk);
}

/* Bytes that are not deflate, a stream the server ends, a cut: each is -1
 * once what came whole before it is given, and stays -1. */
static void broken_streams(void **state)
{
    (void)state;
    struct feeder fe;
    size_t n = 10000;
    unsigned char *text = make_text(n);
    size_t wlen;
    unsigned char *wire = server_deflate(text, n, 1000, true, &wlen);
    unsigned char *got = malloc(n);
    assert_non_null(got);
    char why[128];

    /* Ended with Z_FINISH: everything, then "ended". */
    struct mg_compress *z = NULL;
    assert_int_equal(mg_compress_create(&z), 0);
    struct fdread f = {wire_fd(&fe, wire, wlen, 10), 64, 0};
    why[0] = '\0';
    assert_int_equal(read_all(z, &f, got, n, 512, why, sizeof(why)), n);
    assert_memory_equal(got, text, n);
    assert_non_null(strstr(why, "ended"));
    size_t calls = f.calls;
    assert_int_equal(mg_compress_read(z, got, 10, fd_lower, &f, why, sizeof(why)), -1);
    assert_int_equal(f.calls, calls);
    wire_done(&fe, f.fd);
    mg_compress_destroy(z);

    /* After whole pieces, a block of the reserved type: the pieces, then
     * the error. */
    size_t goodlen;
    unsigned char *good = server_deflate(text, 5000, 1000, false, &goodlen);
    unsigned char *bad = malloc(goodlen + 4);
    assert_non_null(bad);
    memcpy(bad, good, goodlen);
    memcpy(bad + goodlen, "\x06\x00\x00\x00", 4);
    free(good);
    assert_int_equal(mg_compress_create(&z), 0);
    f = (struct fdread){wire_fd(&fe, bad, goodlen + 4, 13), 13, 0};
    why[0] = '\0';
    size_t k = read_all(z, &f, got, n, 256, why, sizeof(why));
    assert_int_equal(k, 5000);
    assert_memory_equal(got, text, k);
    assert_non_null(strstr(why, "inflate"));
    wire_done(&fe, f.fd);
    mg_compress_destroy(z);

    size_t half = wlen / 2;
    /* A cut mid-stream: what came, then the transport's -1, its reason. */
    assert_int_equal(mg_compress_create(&z), 0);
    f = (struct fdread){wire_fd(&fe, wire, half, 9), 9, 0};
    snprintf(why, sizeof(why), "cut");
    k = read_all(z, &f, got, n, 256, why, sizeof(why));
    assert_true(k > 0 && k < n);
    assert_memory_equal(got, text, k);
    assert_string_equal(why, "cut");
    wire_done(&fe, f.fd);
    mg_compress_destroy(z);

    free(bad);
    free(got);
    free(wire);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inflate_over_partial_reads),
        cmocka_unit_test(held_output_comes_without_new_input),
        cmocka_unit_test(every_write_is_flushed),
        cmocka_unit_test(round_trip),
        cmocka_unit_test(write_failure_passes_through),
        cmocka_unit_test(broken_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
