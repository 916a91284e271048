/*
 * fsutil.h - the few file-system steps mailgrab takes in more than one
 * place, done one way: a file replaced whole and durably, and directories
 * made with their parents.
 *
 * Every file written here goes to a fresh temporary name first (created
 * O_EXCL | O_NOFOLLOW, mode 0600, so never a link planted to a file
 * elsewhere), is flushed, renamed over its name, and the directory flushed:
 * a reader sees the old file or the new one, never a part. Temporary names
 * start with MG_TMP_PREFIX, which the store's clean-up knows.
 *
 * Functions return 0 or an errno value and say which step failed in *step
 * ("create", "write", "rename", "flush"), for the caller's message. No
 * global state; thread-safe.
 */
#ifndef MAILGRAB_FSUTIL_H
#define MAILGRAB_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#define MG_TMP_PREFIX ".mg-tmp-"

/* Write all len bytes to fd (retrying short writes and EINTR): 0 or errno. */
int mg_write_all(int fd, const void *data, size_t len);

/* Read from fd until end of file or max bytes (retrying EINTR); the bytes
 * read go to buf, their count to *len. 0, or the errno of a failed read
 * (*len then counts what came before it). */
int mg_read_upto(int fd, void *buf, size_t max, size_t *len);

/* Replace dirfd/name with len bytes of data. */
int mg_replace_at(int dirfd, const char *name, const void *data, size_t len, const char **step);

/* The same for a path (its directory: everything before the last '/'). */
int mg_replace_file(const char *path, const void *data, size_t len, const char **step);

/* The same with the file's mode (0600 above), whatever the umask. */
int mg_replace_file_mode(const char *path, const void *data, size_t len, mode_t mode,
                         const char **step);

/* mkdir -p with mode for each directory made; each new one is made durable
 * in its parent. An existing non-directory on the way is ENOTDIR. */
int mg_mkdirs(const char *path, mode_t mode);

/* The directories above path's last component, as mg_mkdirs. */
int mg_mkdirs_parent(const char *path, mode_t mode);

#endif
