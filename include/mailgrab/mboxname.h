/*
 * mboxname.h - mailbox names: as the user writes them (UTF-8), as IMAP wants
 * them (modified UTF-7, RFC 3501 5.1.3), and as one safe path component.
 *
 * Pure functions, no I/O, thread-safe. Callers own the output buffers.
 */
#ifndef MAILGRAB_MBOXNAME_H
#define MAILGRAB_MBOXNAME_H

#include <stddef.h>

/* Longest path component mg_mbox_to_path produces, without the NUL. */
#define MG_MBOX_PATH_MAX 200

/* UTF-8 -> modified UTF-7. Returns 0, or -1 if name is not valid UTF-8 or
 * the result does not fit in cap bytes (NUL included). */
int mg_mbox_to_imap(const char *name, char *out, size_t cap);

/* Modified UTF-7 -> UTF-8. Returns 0, or -1 on malformed input or overflow. */
int mg_mbox_from_imap(const char *imap, char *out, size_t cap);

/*
 * Mailbox name (UTF-8) -> a single file name that cannot escape its parent:
 * no '/', no NUL or control bytes, no leading '.', never "." or "..".
 * Printable ASCII and valid UTF-8 stay readable; '/', '\\', '%', control and
 * invalid bytes become %XX. Names too long get cut and a hash suffix so
 * distinct names stay distinct. cap must be > MG_MBOX_PATH_MAX. Returns 0.
 */
int mg_mbox_to_path(const char *name, char *out, size_t cap);

#endif
