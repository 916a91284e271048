/*
 * fuzz_compress.c - libFuzzer target for the COMPRESS=DEFLATE read side
 * (compress.h), which inflates every byte a compressing server sends.
 * Checked on every input: read whole or split into reads of any size, into
 * buffers of any size, the bytes given and the verdict are the same; a
 * read never returns 0 or more than asked. Inflated output is capped so a
 * small input that inflates hugely only costs time up to the cap.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/compress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OUT_MAX (1u << 20)

struct src {
    const uint8_t *p;
    size_t n, step;
};

static ssize_t lower(void *ctx, void *buf, size_t cap)
{
    struct src *s = ctx;
    if (s->n == 0)
        return -1;
    size_t k = s->n < s->step ? s->n : s->step;
    if (k > cap)
        k = cap;
    memcpy(buf, s->p, k);
    s->p += k;
    s->n -= k;
    return (ssize_t)k;
}

/* Inflate everything into out (at most OUT_MAX); returns the length. */
static size_t drain(const uint8_t *data, size_t size, size_t step, size_t cap, uint8_t *out)
{
    struct mg_compress *z = NULL;
    if (mg_compress_create(&z) != 0)
        abort();
    struct src s = {data, size, step};
    size_t n = 0;
    char why[128];
    while (n < OUT_MAX) {
        size_t room = OUT_MAX - n < cap ? OUT_MAX - n : cap;
        ssize_t r = mg_compress_read(z, out + n, room, lower, &s, why, sizeof(why));
        if (r == 0 || r > (ssize_t)room)
            abort();
        if (r < 0)
            break;
        n += (size_t)r;
    }
    mg_compress_destroy(z);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* First byte: the split's read size and buffer size. */
    size_t step = (size_t)(data[0] & 15) + 1;
    size_t cap = (size_t)(data[0] >> 4) * 7 + 1;
    data++;
    size--;
    static uint8_t a[OUT_MAX], b[OUT_MAX];
    size_t na = drain(data, size, size, 65536, a);
    size_t nb = drain(data, size, step, cap, b);
    /* The capped run may stop earlier only when it hit the cap. */
    if (na < OUT_MAX && nb < OUT_MAX && na != nb)
        abort();
    size_t k = na < nb ? na : nb;
    if (memcmp(a, b, k) != 0)
        abort();
    return 0;
}
