/* password.c - see include/mailgrab/password.h */
#include "mailgrab/password.h"

#include "mailgrab/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/cancel.h"

/* Passwords and tokens: Microsoft access tokens run to ~3 KB. */
#define SECRET_MAX 8192
/* Seconds a --password-command or --oauth2-token-command may take. */
#define HELPER_TIMEOUT 30

extern char **environ;

enum mg_code mg_check_private(int fd, const char *path, struct mg_error *err)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return mg_error_set(err, MG_E_USAGE, "cannot stat %s: %s", path, strerror(errno));
    if ((sb.st_mode & 077) != 0)
        return mg_error_set(err, MG_E_USAGE, "%s can be read by other users; run: chmod 600 %s",
                            path, path);
    return MG_OK;
}

/* Keep the first line of buf (length len) as a C string. */
static enum mg_code first_line(const char *buf, size_t len, const char *from, char **out,
                               struct mg_error *err)
{
    size_t n = 0;
    while (n < len && buf[n] != '\n' && buf[n] != '\r')
        n++;
    if (memchr(buf, '\0', n) != NULL)
        return mg_error_set(err, MG_E_USAGE, "%s contains a NUL byte", from);
    if (n == 0)
        return mg_error_set(err, MG_E_USAGE, "%s is empty", from);
    if (n >= SECRET_MAX)
        return mg_error_set(err, MG_E_USAGE, "%s is too long", from);
    char *pw = malloc(n + 1);
    if (pw == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    memcpy(pw, buf, n);
    pw[n] = '\0';
    *out = pw;
    return MG_OK;
}

/* Read up to cap bytes; -1 on a read error. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        len += (size_t)r;
    }
    return (ssize_t)len;
}

enum mg_code mg_secret_file(const char *path, const char *what, char **out, struct mg_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mg_error_set(err, MG_E_USAGE, "cannot read the %s file %s: %s", what, path,
                            strerror(errno));
    enum mg_code rc = mg_check_private(fd, path, err);
    if (rc == MG_OK) {
        char buf[SECRET_MAX + 2];
        ssize_t n = read_all(fd, buf, sizeof(buf));
        char label[600];
        snprintf(label, sizeof(label), "the %s file %s", what, path);
        if (n < 0)
            rc = mg_error_set(err, MG_E_IO, "cannot read %s: %s", label, strerror(errno));
        else
            rc = first_line(buf, (size_t)n, label, out, err);
        explicit_bzero(buf, sizeof(buf));
    }
    close(fd);
    return rc;
}

/* How long a helper command may take, in seconds: MAILGRAB_HELPER_TIMEOUT
 * (1..3600), else HELPER_TIMEOUT. */
static int helper_timeout(void)
{
    const char *env = getenv("MAILGRAB_HELPER_TIMEOUT");
    if (env != NULL) {
        char *end;
        long v = strtol(env, &end, 10);
        if (end != env && *end == '\0' && v >= 1 && v <= 3600)
            return (int)v;
    }
    return HELPER_TIMEOUT;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Start /bin/sh -c cmd in a process group of its own, stdout to out_fd,
 * with the signal mask and dispositions a fresh process has (mailgrab
 * blocks and ignores some: cancel.h). */
static int spawn_helper(const char *cmd, int out_fd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return -1;
    if (posix_spawnattr_init(&at) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -1;
    }
    sigset_t none, dfl;
    sigemptyset(&none);
    mg_cancel_child_sigdefault(&dfl);
    int r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
    if (r == 0)
        r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETSIGDEF);
    if (r == 0)
        r = posix_spawnattr_setpgroup(&at, 0);
    if (r == 0)
        r = posix_spawnattr_setsigmask(&at, &none);
    if (r == 0)
        r = posix_spawnattr_setsigdefault(&at, &dfl);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    if (r == 0)
        r = posix_spawn(pid, "/bin/sh", &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    errno = r;
    return r == 0 ? 0 : -1;
}

/* Read the helper's output (the first cap bytes kept, the rest drained so
 * that it is not killed by SIGPIPE) until it closes it and exits. Returns 0,
 * 1 on a cancel, 2 past the deadline, -1 on a read error; on anything but 0
 * the helper's whole process group is killed. *status is its wait status. */
static int collect_helper(pid_t pid, int fd, char *buf, size_t cap, size_t *len, long deadline,
                          int *status)
{
    bool eof = false, exited = false;
    int result;
    *len = 0;
    for (;;) {
        if (!exited && waitpid(pid, status, WNOHANG) == pid)
            exited = true;
        if (exited && eof)
            return 0;
        if (mg_cancelled()) {
            result = 1;
            break;
        }
        long left = deadline - now_ms();
        if (left <= 0) {
            result = 2;
            break;
        }
        /* Once its output is closed, look for its exit every 20 ms. */
        int step = eof && left > 20 ? 20 : (int)left;
        struct pollfd pfd[2] = {{.fd = eof ? -1 : fd, .events = POLLIN},
                                {.fd = mg_cancel_fd(), .events = POLLIN}};
        int r = poll(pfd, 2, step);
        if (r < 0 && errno != EINTR) {
            result = -1;
            break;
        }
        if (r <= 0 || eof || pfd[0].revents == 0)
            continue;
        char sink[512];
        bool keep = *len < cap;
        ssize_t n = read(fd, keep ? buf + *len : sink, keep ? cap - *len : sizeof(sink));
        if (n < 0 && errno != EINTR) {
            result = -1;
            break;
        }
        if (n == 0)
            eof = true;
        else if (n > 0 && keep)
            *len += (size_t)n;
        explicit_bzero(sink, sizeof(sink));
    }
    int saved = errno;
    kill(-pid, SIGKILL);
    while (!exited && waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    errno = saved;
    return result;
}

enum mg_code mg_secret_command(const char *cmd, const char *what, char **out, struct mg_error *err)
{
    if (mg_cancelled())
        return mg_cancel_error(err);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return mg_error_set(err, MG_E_INTERNAL, "pipe: %s", strerror(errno));
    pid_t pid;
    if (spawn_helper(cmd, pfd[1], &pid) != 0) {
        int e = errno;
        close(pfd[0]);
        close(pfd[1]);
        return mg_error_set(err, MG_E_INTERNAL, "cannot run %s: %s", what, strerror(e));
    }
    close(pfd[1]);
    int timeout = helper_timeout();
    char buf[SECRET_MAX + 2];
    size_t n = 0;
    int status = 0;
    int r = collect_helper(pid, pfd[0], buf, sizeof(buf), &n, now_ms() + timeout * 1000L, &status);
    close(pfd[0]);
    enum mg_code rc;
    if (r == 1)
        rc = mg_cancel_error(err);
    else if (r == 2)
        rc = mg_error_set(err, MG_E_USAGE,
                          "%s did not finish within %d s and was stopped; run it by hand to see "
                          "why (MAILGRAB_HELPER_TIMEOUT sets the limit)",
                          what, timeout);
    else if (r < 0)
        rc = mg_error_set(err, MG_E_USAGE, "cannot read the output of %s: %s", what,
                          strerror(errno));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = mg_error_set(err, MG_E_USAGE, "%s failed (exit status %d); run it by hand to see why",
                          what, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    else {
        char label[300];
        snprintf(label, sizeof(label), "the output of %s", what);
        rc = first_line(buf, n, label, out, err);
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

static enum mg_code from_tty(const char *user, const char *host, char **out, struct mg_error *err)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return mg_error_set(err, MG_E_USAGE,
                            "no password given and no terminal to ask on: set "
                            "MAILGRAB_PASSWORD, --password-file or --password-command");
    struct termios old, quiet;
    bool restore = tcgetattr(fd, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    char prompt[512];
    int pn = snprintf(prompt, sizeof(prompt), "Password for %s@%s: ", user, host);
    if (pn > 0 && write(fd, prompt, (size_t)pn) < 0) {
        /* nothing to do: the read below still works */
    }
    char buf[SECRET_MAX];
    /* ^C at the prompt is a cancel like any other (cancel.h). */
    struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN}, {.fd = mg_cancel_fd(), .events = POLLIN}};
    while (poll(pfd, 2, -1) < 0 && errno == EINTR)
        ;
    ssize_t r = mg_cancelled() ? 0 : read(fd, buf, sizeof(buf));
    if (restore)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* ignore */
    }
    close(fd);
    if (mg_cancelled())
        return mg_cancel_error(err);
    enum mg_code rc = first_line(buf, r > 0 ? (size_t)r : 0, "the terminal", out, err);
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

char *mg_password_take_env(void)
{
    const char *env = getenv("MAILGRAB_PASSWORD");
    char *copy = (env != NULL && env[0] != '\0') ? strdup(env) : NULL;
    if (env != NULL) {
        /* Children (password commands, the analyzer) must not inherit it. */
        explicit_bzero((char *)env, strlen(env));
        unsetenv("MAILGRAB_PASSWORD");
    }
    return copy;
}

void mg_password_forget_env(void)
{
    mg_secret_free(mg_password_take_env());
}

enum mg_code mg_password_get(const char *file, const char *command, const char *env,
                             const char *user, const char *host, char **out, struct mg_error *err)
{
    if (command != NULL)
        return mg_secret_command(command, "--password-command", out, err);
    if (file != NULL)
        return mg_secret_file(file, "password", out, err);
    if (env != NULL)
        return first_line(env, strlen(env), "MAILGRAB_PASSWORD", out, err);
    return from_tty(user, host, out, err);
}

void mg_secret_free(char *pw)
{
    if (pw == NULL)
        return;
    explicit_bzero(pw, strlen(pw));
    free(pw);
}

enum mg_code mg_secret_write(const char *path, const char *data, size_t len, struct mg_error *err)
{
    char *line = malloc(len + 1);
    if (line == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    memcpy(line, data, len);
    line[len] = '\n';
    /* A fresh 0600 file renamed over the old one, the directory flushed:
     * only a complete, synced secret ever carries the name. */
    const char *step = "write";
    int e = mg_replace_file(path, line, len + 1, &step);
    explicit_bzero(line, len + 1);
    free(line);
    if (e == ENAMETOOLONG)
        return mg_error_set(err, MG_E_USAGE, "path too long: %s", path);
    if (e != 0)
        return mg_error_set(err, MG_E_IO, "cannot %s %s: %s", step, path, strerror(e));
    return MG_OK;
}
