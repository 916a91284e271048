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

/* A path component back to the name it was made from: each %XX becomes its
 * byte, anything else stays (a name mg_mbox_to_path cut and hashed does not
 * come back whole). Returns 0, or -1 if the result does not fit in cap. */
int mg_mbox_from_path(const char *path, char *out, size_t cap);

/* Longest directory name mg_mbox_dir_names gives: a path and "~xxxxxxxx". */
#define MG_MBOX_DIR_MAX (MG_MBOX_PATH_MAX + 10)

/*
 * The directory name of each of n mailboxes (UTF-8 names, distinct) in an
 * output that already holds the directories `existing`. Names whose paths
 * differ only in case would share a directory on a case-insensitive file
 * system, so one of them gets a "~hash" suffix. Which one is stable: a
 * mailbox whose plain path exists already keeps it, so a new "WORK" never
 * takes "Work"'s directory (and makes it download everything again). Among
 * new ones, the first in byte order keeps the plain path. out[i] receives
 * names[i]'s directory (at least MG_MBOX_DIR_MAX + 1 bytes each). Returns 0,
 * or -1 out of memory.
 */
int mg_mbox_dir_names(const char *const *names, size_t n, const char *const *existing,
                      size_t nexisting, char (*out)[MG_MBOX_DIR_MAX + 1]);

#endif
