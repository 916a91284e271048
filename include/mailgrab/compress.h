/*
 * compress.h - the COMPRESS=DEFLATE layer of one IMAP connection (RFC 4978).
 *
 * Owns the two deflate streams of a connection once both sides switched:
 * what the server sends is raw deflate (no zlib header, a 32 KiB window)
 * and is inflated here; what mailgrab sends is deflated and flushed
 * (Z_SYNC_FLUSH) at every write, so the server can act on each command at
 * once. The transport below is the caller's: a read function that returns
 * > 0 bytes or -1, and a write function that returns > 0 bytes written (it
 * may write fewer than asked) or -1. mg_compress_read, like the transport,
 * never returns 0: a stream that ends, breaks or cannot be inflated is -1.
 *
 * Memory is bounded per connection, whatever the server sends: zlib's
 * inflate state and 32 KiB window, a read-ahead buffer of
 * MG_COMPRESS_IN_MAX compressed bytes, a deflate state with a small window
 * (commands are short; any inflater reads a smaller window) and an output
 * buffer of MG_COMPRESS_OUT_MAX bytes: under 100 KiB in all. A read returns
 * at most what the caller's buffer holds and keeps the rest in zlib.
 *
 * Memory: mg_compress_create's object is the caller's, freed by
 * mg_compress_destroy (accepts NULL). Thread-safety: one object per
 * connection, used by one thread.
 */
#ifndef MAILGRAB_COMPRESS_H
#define MAILGRAB_COMPRESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MG_COMPRESS_IN_MAX (16u * 1024)
#define MG_COMPRESS_OUT_MAX (4u * 1024)

struct mg_compress;

/* The transport under the compressed stream. */
typedef ssize_t (*mg_compress_read_fn)(void *ctx, void *buf, size_t cap);
typedef ssize_t (*mg_compress_write_fn)(void *ctx, const void *buf, size_t n);

/* 0, or -1 when out of memory. */
int mg_compress_create(struct mg_compress **out);
void mg_compress_destroy(struct mg_compress *z);

/*
 * Up to cap inflated bytes into out, reading compressed bytes from lower
 * only when zlib has nothing left to give. Returns > 0, or -1: lower failed
 * (its own reason stands), or the stream is not valid deflate or was ended
 * by the server (why says so).
 */
ssize_t mg_compress_read(struct mg_compress *z, void *out, size_t cap, mg_compress_read_fn lower,
                         void *ctx, char *why, size_t whycap);

/*
 * Deflate n bytes and write them, flushed, through lower (looping over
 * partial writes). Returns the bytes taken (n, or less only for n beyond
 * UINT_MAX), or -1: lower failed (its reason stands) or zlib did (why).
 */
ssize_t mg_compress_write(struct mg_compress *z, const void *in, size_t n,
                          mg_compress_write_fn lower, void *ctx, char *why, size_t whycap);

/* Bytes given by mg_compress_read so far, and compressed bytes it read. */
uint64_t mg_compress_inflated(const struct mg_compress *z);
uint64_t mg_compress_compressed(const struct mg_compress *z);

#endif
