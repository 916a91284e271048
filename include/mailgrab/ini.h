/*
 * ini.h - the INI syntax of mailgrab's config file, parsed from memory.
 *
 * Owns the syntax only: [section] headers, `key = value` (or `key: value`)
 * lines, whole-line comments starting with ';' or '#', and inline comments
 * (';' or '#' after white space). Keys and values are trimmed; there is no
 * quoting and no continuation line. What the keys mean is config.c's.
 *
 * Why not libinih, which this project used first: Debian's build fixes a
 * 200-byte line on the stack and only ';' inline comments at compile time, so
 * a long password_command line failed with a misleading line number and the
 * documented `format = maildir  # or eml` was read as "maildir  # or eml".
 *
 * Bounds: a line may be at most MG_INI_LINE_MAX bytes; a NUL byte is an error.
 * Memory: the handler's strings live until it returns; copy what you keep.
 * Thread-safety: no global state.
 */
#ifndef MAILGRAB_INI_H
#define MAILGRAB_INI_H

#include <stddef.h>

#define MG_INI_LINE_MAX 65536

/* Called for each header with key == NULL and value == NULL, then for each
 * key with the section it is under ("" before any header). Return 0 to go
 * on; anything else stops the parse, and mg_ini_parse returns it. */
typedef int (*mg_ini_handler)(void *ctx, unsigned line, const char *section, const char *key,
                              const char *value);

enum {
    MG_INI_OK = 0,
    MG_INI_SYNTAX = -1, /* neither a header nor key = value; *bad_line says where */
    MG_INI_TOO_LONG = -2,
    MG_INI_NUL = -3,
    MG_INI_NOMEM = -4,
};

/* Parse len bytes of text. Returns MG_INI_OK, a negative MG_INI_* code with
 * *bad_line set, or the handler's non-zero return. */
int mg_ini_parse(const char *text, size_t len, mg_ini_handler h, void *ctx, unsigned *bad_line)
    __attribute__((warn_unused_result));

#endif
