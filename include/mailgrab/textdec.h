/*
 * textdec.h - turning mail bytes into UTF-8 text: base64, quoted-printable,
 * charset conversion (iconv), RFC 2047 encoded words, raw 8-bit headers, and
 * HTML to text.
 *
 * Owns: nothing beyond the call. Every function appends to a caller-owned
 * struct mg_buf, whose maximum bounds the output; input is pointer + length and
 * may contain NUL bytes. On a full buffer output is truncated and -1 returned;
 * malformed input is never an error (it is decoded leniently or kept as-is).
 *
 * Thread-safety: all functions are thread-safe. iconv descriptors come from
 * the per-process cache of charconv.h, held by one caller at a time.
 */
#ifndef MAILGRAB_TEXTDEC_H
#define MAILGRAB_TEXTDEC_H

#include <stdbool.h>
#include <stddef.h>

#include "mailgrab/buf.h"

/* The value of hexadecimal digit c, or -1. */
int mg_hex_digit(unsigned char c);

bool mg_utf8_valid(const char *s, size_t n);

int mg_base64_decode(const char *in, size_t n, struct mg_buf *out);
/* header_q: RFC 2047 "Q" encoding, where '_' means a space. */
int mg_qp_decode(const char *in, size_t n, bool header_q, struct mg_buf *out);

/*
 * Convert bytes in the named charset to UTF-8. An unknown or missing charset is
 * treated like raw 8-bit text (UTF-8 if valid, else windows-1252). Invalid
 * sequences become U+FFFD. NUL bytes become spaces.
 */
int mg_to_utf8(const char *charset, size_t charset_len, const char *in, size_t n,
               struct mg_buf *out);

/* Raw header bytes: UTF-8 if valid, else windows-1252. */
int mg_raw_to_utf8(const char *in, size_t n, struct mg_buf *out);

/*
 * Decode an unstructured header value (already unfolded or not): RFC 2047
 * encoded words are decoded, whitespace between adjacent encoded words is
 * dropped, malformed words are kept literally, everything else goes through
 * mg_raw_to_utf8. CR/LF/TAB runs collapse to a single space.
 */
int mg_header_decode(const char *in, size_t n, struct mg_buf *out);

/* Visible text of HTML: tags, comments, script/style dropped, entities decoded. */
int mg_html_to_text(const char *in, size_t n, struct mg_buf *out);

#endif
