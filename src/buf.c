/* buf.c - see include/mailgrab/buf.h */
#include "mailgrab/buf.h"

#include "mailgrab/utf8.h"

#include <stdlib.h>
#include <string.h>

void mg_buf_init(struct mg_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->fixed = false;
    b->failed = 0;
}

void mg_buf_init_fixed(struct mg_buf *b, char *storage, size_t cap)
{
    b->data = storage;
    b->len = 0;
    b->cap = cap;
    b->max = cap - 1;
    b->fixed = true;
    b->failed = 0;
    storage[0] = '\0';
}

void mg_buf_finish(struct mg_buf *b)
{
    if (!b->fixed)
        free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void mg_buf_reset(struct mg_buf *b)
{
    b->len = 0;
    b->failed = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

int mg_buf_reserve(struct mg_buf *b, size_t n)
{
    if (b->failed)
        return b->failed;
    if (n > b->max || b->len > b->max - n)
        return b->failed = MG_BUF_LIMIT;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1)
            cap = b->max + 1;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return b->failed = MG_BUF_NOMEM;
        b->data = d;
        b->cap = cap;
    }
    return 0;
}

int mg_buf_append(struct mg_buf *b, const void *p, size_t n)
{
    int rc = mg_buf_reserve(b, n);
    if (rc != 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int mg_buf_putc(struct mg_buf *b, unsigned char c)
{
    return mg_buf_append(b, &c, 1);
}

int mg_buf_put_utf8(struct mg_buf *b, uint32_t cp)
{
    unsigned char s[4];
    size_t n = mg_utf8_encode(cp, s);
    return mg_buf_append(b, s, n);
}

int mg_buf_put_u8(struct mg_buf *b, uint8_t v)
{
    return mg_buf_append(b, &v, 1);
}

int mg_buf_put_u32(struct mg_buf *b, uint32_t v)
{
    unsigned char s[4];
    for (int i = 0; i < 4; i++)
        s[i] = (unsigned char)(v >> (8 * i));
    return mg_buf_append(b, s, sizeof(s));
}

int mg_buf_put_u64(struct mg_buf *b, uint64_t v)
{
    unsigned char s[8];
    for (int i = 0; i < 8; i++)
        s[i] = (unsigned char)(v >> (8 * i));
    return mg_buf_append(b, s, sizeof(s));
}

int mg_buf_put_str(struct mg_buf *b, const char *s, size_t n)
{
    if (n > UINT32_MAX)
        return -1;
    int rc = mg_buf_put_u32(b, (uint32_t)n);
    if (rc != 0)
        return rc;
    return mg_buf_append(b, s, n);
}

char *mg_buf_steal(struct mg_buf *b, size_t *len)
{
    if (b->data == NULL && mg_buf_append(b, "", 0) != 0)
        return NULL;
    char *d = b->data;
    if (len != NULL)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return d;
}

int mg_read_u8(struct mg_reader *r, uint8_t *v)
{
    if (r->left < 1)
        return -1;
    *v = r->p[0];
    r->p++;
    r->left--;
    return 0;
}

int mg_read_u32(struct mg_reader *r, uint32_t *v)
{
    if (r->left < 4)
        return -1;
    uint32_t x = 0;
    for (int i = 0; i < 4; i++)
        x |= (uint32_t)r->p[i] << (8 * i);
    *v = x;
    r->p += 4;
    r->left -= 4;
    return 0;
}

int mg_read_u64(struct mg_reader *r, uint64_t *v)
{
    if (r->left < 8)
        return -1;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x |= (uint64_t)r->p[i] << (8 * i);
    *v = x;
    r->p += 8;
    r->left -= 8;
    return 0;
}

int mg_read_str(struct mg_reader *r, const char **s, size_t *n, size_t max)
{
    uint32_t len;
    if (mg_read_u32(r, &len) != 0)
        return -1;
    if (len > max || len > r->left)
        return -1;
    *s = (const char *)r->p;
    *n = len;
    r->p += len;
    r->left -= len;
    return 0;
}
