/* fsutil.c - see include/mailgrab/fsutil.h */
#include "mailgrab/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char **step, const char *what, int e)
{
    if (step != NULL)
        *step = what;
    return e ? e : EIO;
}

int mg_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int mg_read_upto(int fd, void *buf, size_t max, size_t *len)
{
    char *p = buf;
    *len = 0;
    while (*len < max) {
        ssize_t got = read(fd, p + *len, max - *len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno;
        if (got == 0)
            break;
        *len += (size_t)got;
    }
    return 0;
}

static int replace_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                      const char **step)
{
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    while (*base == '.')
        base++; /* ".mailgrab-state" -> ".mg-tmp-mailgrab-state-..." */
    char tmp[NAME_MAX + 1];
    int fd = -1;
    for (unsigned i = 0; fd < 0 && i < 1000; i++) {
        if (snprintf(tmp, sizeof(tmp), MG_TMP_PREFIX "%.180s-%ld-%u", base, (long)getpid(), i) >=
            (int)sizeof(tmp))
            return fail(step, "create", ENAMETOOLONG);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0)
        return fail(step, "create", errno);
    int e = mode != 0600 && fchmod(fd, mode) != 0 ? errno : 0; /* past the umask */
    if (e == 0)
        e = mg_write_all(fd, data, len);
    if (e == 0 && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && e == 0)
        e = errno;
    if (e != 0) {
        unlinkat(dirfd, tmp, 0);
        return fail(step, "write", e);
    }
    /* The order matters: only a complete, flushed file ever has the name. */
    if (renameat(dirfd, tmp, dirfd, name) != 0) {
        e = errno;
        unlinkat(dirfd, tmp, 0);
        return fail(step, "rename", e);
    }
    if (fsync(dirfd) != 0)
        return fail(step, "flush", errno);
    return 0;
}

int mg_replace_at(int dirfd, const char *name, const void *data, size_t len, const char **step)
{
    return replace_at(dirfd, name, data, len, 0600, step);
}

/* path's directory ("." when it has no '/') into dir. */
static int dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    int n = slash == NULL   ? snprintf(dir, cap, ".")
            : slash == path ? snprintf(dir, cap, "/")
                            : snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    return n < 0 || (size_t)n >= cap ? ENAMETOOLONG : 0;
}

int mg_replace_file(const char *path, const void *data, size_t len, const char **step)
{
    return mg_replace_file_mode(path, data, len, 0600, step);
}

int mg_replace_file_mode(const char *path, const void *data, size_t len, mode_t mode,
                         const char **step)
{
    char dir[PATH_MAX];
    int e = dir_of(path, dir, sizeof(dir));
    if (e != 0)
        return fail(step, "create", e);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return fail(step, "create", errno);
    const char *slash = strrchr(path, '/');
    e = replace_at(dfd, slash ? slash + 1 : path, data, len, mode, step);
    close(dfd);
    return e;
}

/* Make one directory; a new one is made durable in its parent. */
static int make_one(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0) {
        char parent[PATH_MAX];
        if (dir_of(path, parent, sizeof(parent)) == 0) {
            int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (pfd >= 0) {
                fsync(pfd);
                close(pfd);
            }
        }
        return 0;
    }
    if (errno != EEXIST)
        return errno;
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
}

int mg_mkdirs(const char *path, mode_t mode)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p))
        return ENAMETOOLONG;
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/' || s[-1] == '/')
            continue;
        *s = '\0';
        struct stat sb;
        int e = stat(p, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : make_one(p, mode);
        *s = '/';
        if (e != 0)
            return e;
    }
    return make_one(p, mode);
}

int mg_mkdirs_parent(const char *path, mode_t mode)
{
    char dir[PATH_MAX];
    int e = dir_of(path, dir, sizeof(dir));
    return e != 0 ? e : mg_mkdirs(dir, mode);
}
