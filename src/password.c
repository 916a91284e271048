/* password.c - see include/mailgrab/password.h */
#include "mailgrab/password.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* Passwords and tokens: Microsoft access tokens run to ~3 KB. */
#define SECRET_MAX 8192

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

enum mg_code mg_secret_command(const char *cmd, const char *what, char **out, struct mg_error *err)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return mg_error_set(err, MG_E_INTERNAL, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return mg_error_set(err, MG_E_INTERNAL, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* Only async-signal-safe calls: other threads may hold locks. */
        if (dup2(pfd[1], STDOUT_FILENO) < 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char buf[SECRET_MAX + 2];
    ssize_t n = read_all(pfd[0], buf, sizeof(buf));
    /* Drain the rest so the command is not killed by SIGPIPE. */
    char sink[512];
    while (n >= 0 && read_all(pfd[0], sink, sizeof(sink)) == (ssize_t)sizeof(sink))
        ;
    explicit_bzero(sink, sizeof(sink));
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    enum mg_code rc;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = mg_error_set(err, MG_E_USAGE, "%s failed (exit status %d); run it by hand to see why",
                          what, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    else if (n < 0)
        rc = mg_error_set(err, MG_E_USAGE, "cannot read the output of %s: %s", what,
                          strerror(errno));
    else {
        char label[300];
        snprintf(label, sizeof(label), "the output of %s", what);
        rc = first_line(buf, (size_t)n, label, out, err);
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
    ssize_t r = read(fd, buf, sizeof(buf));
    if (restore)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* ignore */
    }
    close(fd);
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
    mg_password_free(mg_password_take_env());
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

void mg_password_free(char *pw)
{
    if (pw == NULL)
        return;
    explicit_bzero(pw, strlen(pw));
    free(pw);
}
