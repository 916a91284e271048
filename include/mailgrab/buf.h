/*
 * buf.h - growable byte buffers with a hard maximum.
 *
 * Owns: the heap block behind a struct mg_buf, or nothing for a buffer over
 * caller storage (mg_buf_init_fixed: for secrets, which must never be left
 * behind in memory a realloc gave back, and for output into caller arrays).
 * The caller owns the struct itself (init/finish); mg_buf_finish frees the
 * block and accepts a zeroed struct.
 *
 * Fails closed: an append past the maximum fails with MG_BUF_LIMIT, one that
 * cannot get memory with MG_BUF_NOMEM, the contents stay as they were, and
 * every later append fails too (b->failed) until mg_buf_reset, so a value is
 * never stored with a hole in it. Hostile input can never grow a buffer
 * without bound. Contents are bytes, not a C string, though a NUL is kept
 * after the last byte for convenience.
 *
 * Thread-safety: a buffer belongs to one thread at a time; no global state.
 */
#ifndef MAILGRAB_BUF_H
#define MAILGRAB_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mg_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
    bool fixed; /* data is the caller's storage: never grown or freed */
    int failed; /* 0, or the first failure (MG_BUF_LIMIT, MG_BUF_NOMEM) */
};

enum { MG_BUF_LIMIT = -1, MG_BUF_NOMEM = -2 };

void mg_buf_init(struct mg_buf *b, size_t max);
/* Over storage of cap bytes (cap >= 1; at most cap - 1 bytes and a NUL). */
void mg_buf_init_fixed(struct mg_buf *b, char *storage, size_t cap);
void mg_buf_finish(struct mg_buf *b);
/* Empty it, and forget a failure. */
void mg_buf_reset(struct mg_buf *b);

/* 0 on success, else MG_BUF_LIMIT or MG_BUF_NOMEM (and every later append
 * fails the same way until mg_buf_reset). */
int mg_buf_append(struct mg_buf *b, const void *p, size_t n);
int mg_buf_putc(struct mg_buf *b, unsigned char c);
/* Room for n more bytes at data + len (and the NUL after them), for a caller
 * that fills them itself and then adds them to len. Fails like an append. */
int mg_buf_reserve(struct mg_buf *b, size_t n);
/* Append one code point as UTF-8 (invalid code points become U+FFFD). */
int mg_buf_put_utf8(struct mg_buf *b, uint32_t cp);
int mg_buf_put_u8(struct mg_buf *b, uint8_t v);
int mg_buf_put_u32(struct mg_buf *b, uint32_t v);
int mg_buf_put_u64(struct mg_buf *b, uint64_t v);
/* u32 length followed by the bytes. */
int mg_buf_put_str(struct mg_buf *b, const char *s, size_t n);

/* Take the block out of the buffer; the caller frees it. Never NULL on success. */
char *mg_buf_steal(struct mg_buf *b, size_t *len);

/* A bounded reader over bytes, for decoding what mg_buf_put_* wrote. */
struct mg_reader {
    const uint8_t *p;
    size_t left;
};

int mg_read_u8(struct mg_reader *r, uint8_t *v);
int mg_read_u32(struct mg_reader *r, uint32_t *v);
int mg_read_u64(struct mg_reader *r, uint64_t *v);
/* Points into the reader's bytes; *n is at most max or the call fails. */
int mg_read_str(struct mg_reader *r, const char **s, size_t *n, size_t max);

#endif
