/* compress.c - see include/mailgrab/compress.h */
#include "mailgrab/compress.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* RFC 4978: raw deflate; the server may use the whole 32 KiB window. */
#define INFLATE_BITS 15
/* What mailgrab sends is commands of a few hundred bytes: a 1 KiB window
 * and the smallest hash table keep the deflate state near 10 KiB. */
#define DEFLATE_BITS 10
#define DEFLATE_MEMLEVEL 1

struct mg_compress {
    z_stream inf;
    z_stream def;
    bool inf_ready, def_ready;
    bool more_out;     /* the last inflate filled the caller's buffer: zlib may hold more */
    const char *ended; /* why the server's stream is over, or NULL */
    uint64_t inflated, compressed;
    unsigned char in[MG_COMPRESS_IN_MAX];
    unsigned char out[MG_COMPRESS_OUT_MAX];
};

int mg_compress_create(struct mg_compress **out)
{
    struct mg_compress *z = calloc(1, sizeof(*z));
    if (z == NULL)
        return -1;
    if (inflateInit2(&z->inf, -INFLATE_BITS) != Z_OK)
        goto err;
    z->inf_ready = true;
    if (deflateInit2(&z->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -DEFLATE_BITS, DEFLATE_MEMLEVEL,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        goto err;
    z->def_ready = true;
    *out = z;
    return 0;
err:
    mg_compress_destroy(z);
    return -1;
}

void mg_compress_destroy(struct mg_compress *z)
{
    if (z == NULL)
        return;
    if (z->inf_ready)
        inflateEnd(&z->inf);
    if (z->def_ready)
        deflateEnd(&z->def);
    free(z);
}

/* The stream is over for the reason what: bytes inflated before that are
 * still given (got), the reason with the next read. */
static ssize_t over(struct mg_compress *z, size_t got, char *why, size_t whycap, const char *what)
{
    z->ended = what;
    if (got > 0)
        return (ssize_t)got;
    snprintf(why, whycap, "%s", what);
    return -1;
}

ssize_t mg_compress_read(struct mg_compress *z, void *out, size_t cap, mg_compress_read_fn lower,
                         void *ctx, char *why, size_t whycap)
{
    if (z->ended != NULL)
        return over(z, 0, why, whycap, z->ended);
    if (cap > UINT_MAX)
        cap = UINT_MAX;
    if (cap == 0)
        return over(z, 0, why, whycap, "no room to read into");
    for (;;) {
        if (z->inf.avail_in == 0 && !z->more_out) {
            ssize_t r = lower(ctx, z->in, sizeof(z->in));
            if (r <= 0)
                return -1;
            z->compressed += (uint64_t)r;
            z->inf.next_in = z->in;
            z->inf.avail_in = (unsigned)r;
        }
        unsigned in_before = z->inf.avail_in;
        z->inf.next_out = out;
        z->inf.avail_out = (unsigned)cap;
        int r = inflate(&z->inf, Z_SYNC_FLUSH);
        size_t got = cap - z->inf.avail_out;
        z->more_out = z->inf.avail_out == 0;
        z->inflated += got;
        if (r == Z_STREAM_END)
            return over(z, got, why, whycap, "the server ended its compressed stream");
        if (r != Z_OK && r != Z_BUF_ERROR)
            return over(z, got, why, whycap,
                        "the server sent bytes that do not inflate (COMPRESS=DEFLATE)");
        if (got > 0)
            return (ssize_t)got;
        /* Nothing came out: zlib needs more input, unless it had some and
         * could not move, which only a broken state does. */
        if (r == Z_BUF_ERROR && z->inf.avail_in > 0 && z->inf.avail_in == in_before)
            return over(z, 0, why, whycap, "the compressed stream is stuck");
    }
}

static int write_all(const unsigned char *p, size_t n, mg_compress_write_fn lower, void *ctx)
{
    while (n > 0) {
        ssize_t w = lower(ctx, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

ssize_t mg_compress_write(struct mg_compress *z, const void *in, size_t n,
                          mg_compress_write_fn lower, void *ctx, char *why, size_t whycap)
{
    if (n > UINT_MAX)
        n = UINT_MAX;
    z->def.next_in = (unsigned char *)(uintptr_t)in;
    z->def.avail_in = (unsigned)n;
    do {
        z->def.next_out = z->out;
        z->def.avail_out = sizeof(z->out);
        int r = deflate(&z->def, Z_SYNC_FLUSH);
        if (r != Z_OK && r != Z_BUF_ERROR) {
            snprintf(why, whycap, "cannot compress what mailgrab sends (zlib %d)", r);
            return -1;
        }
        if (write_all(z->out, sizeof(z->out) - z->def.avail_out, lower, ctx) != 0)
            return -1;
    } while (z->def.avail_out == 0);
    return (ssize_t)n;
}

uint64_t mg_compress_inflated(const struct mg_compress *z)
{
    return z->inflated;
}

uint64_t mg_compress_compressed(const struct mg_compress *z)
{
    return z->compressed;
}
