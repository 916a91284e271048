/*
 * utf8.h - UTF-8, decoded and encoded one way for every module that needs
 * it (mailbox names, header decoding, keywords, text buffers).
 *
 * Strict decoding (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. Pure functions, no state, thread-safe.
 */
#ifndef MAILGRAB_UTF8_H
#define MAILGRAB_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The length (1-4) of the valid sequence at s, of which n bytes are there,
 * with its code point in *cp; 0 when it is not valid UTF-8 (or cut short). */
size_t mg_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* cp as UTF-8 into out; a surrogate or a value above U+10FFFF becomes
 * U+FFFD. Returns the length, 1 to 4. */
size_t mg_utf8_encode(uint32_t cp, unsigned char out[4]);

#endif
