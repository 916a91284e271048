/* analyzer.c - see include/mailgrab/analyzer.h */
#include "mailgrab/analyzer.h"
#include "mailgrab/password.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/batch.h"
#include "mailgrab/buf.h"
#include "mailgrab/ipc.h"
#include "mailgrab/wordcount.h"

#define BATCH_PATHS 256

struct mg_analyzer {
    int fd;
    pid_t pid;
    pthread_mutex_t lock;
};

static int send_stats_chunk(void *ctx, const char *data, size_t len)
{
    return mg_ipc_send(*(int *)ctx, MG_IPC_STATS, data, len);
}

static void free_paths(char **paths, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free(paths[i]);
    *n = 0;
}

static int run_batch(char **paths, size_t *n, const struct mg_batch_opts *bo, struct mg_stats *s)
{
    int rc = mg_batch_analyze((const char *const *)paths, *n, bo, s);
    free_paths(paths, n);
    return rc;
}

/* The child's whole life. Never returns. */
static void child_main(int fd, const struct mg_analyzer_opts *o)
{
    /* the parent decides when the run ends; ^C must not kill the counts */
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    struct mg_stopwords sw;
    int rc =
        o->stopwords_path ? mg_stopwords_file(&sw, o->stopwords_path) : mg_stopwords_default(&sw);
    if (rc != 0) {
        fprintf(stderr, "mailgrab: analyzer: cannot load stopwords %s\n",
                o->stopwords_path ? o->stopwords_path : "(built-in)");
        _exit(1);
    }
    struct mg_batch_opts bo = {&sw, o->timeout_secs, NULL};
    struct mg_stats stats;
    mg_stats_init(&stats);
    struct mg_buf frame;
    mg_buf_init(&frame, PATH_MAX);
    char *paths[BATCH_PATHS];
    size_t n = 0;
    for (;;) {
        enum mg_ipc_type type;
        int r = mg_ipc_recv(fd, &type, &frame);
        if (r == 1)
            _exit(0); /* the parent went away without FINISH: nothing to report to */
        if (r != 0) {
            fprintf(stderr, "mailgrab: analyzer: malformed message from the parent\n");
            _exit(1);
        }
        if (type == MG_IPC_PATH) {
            if (frame.len == 0 || memchr(frame.data, '\0', frame.len) != NULL) {
                fprintf(stderr, "mailgrab: analyzer: malformed path from the parent\n");
                _exit(1);
            }
            paths[n] = strndup(frame.data, frame.len);
            if (paths[n] == NULL)
                _exit(1);
            if (++n == BATCH_PATHS && run_batch(paths, &n, &bo, &stats) != 0)
                _exit(1);
        } else if (type == MG_IPC_FINISH) {
            if (run_batch(paths, &n, &bo, &stats) != 0)
                _exit(1);
            if (mg_stats_encode(&stats, 1024 * 1024, send_stats_chunk, &fd) != 0 ||
                mg_ipc_send(fd, MG_IPC_STATS_END, NULL, 0) != 0)
                _exit(1);
            _exit(0);
        } else {
            fprintf(stderr, "mailgrab: analyzer: unexpected message %d from the parent\n",
                    (int)type);
            _exit(1);
        }
    }
}

enum mg_code mg_analyzer_start(const struct mg_analyzer_opts *o, struct mg_analyzer **out,
                               struct mg_error *err)
{
    static const struct mg_analyzer_opts defaults = {NULL, NULL, 0};
    if (o == NULL)
        o = &defaults;
    *out = NULL;
    struct mg_analyzer *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: out of memory");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        free(a);
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: socketpair: %s", strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        free(a);
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(sv[0]);
        /* keep only stdio and our socket */
        if (sv[1] != 3) {
            if (dup2(sv[1], 3) < 0)
                _exit(1);
            close(sv[1]);
        }
        close_range(4, ~0U, 0);
        mg_password_forget_env(); /* the child holds no secret */
        if (o->tz != NULL)
            setenv("TZ", o->tz, 1);
        tzset();
        child_main(3, o);
    }
    close(sv[1]);
    a->fd = sv[0];
    a->pid = pid;
    pthread_mutex_init(&a->lock, NULL);
    *out = a;
    return MG_OK;
}

enum mg_code mg_analyzer_feed(struct mg_analyzer *a, const char *path, struct mg_error *err)
{
    size_t n = strlen(path);
    if (n == 0 || n >= PATH_MAX)
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: bad path length %zu", n);
    pthread_mutex_lock(&a->lock);
    int rc = a->fd >= 0 ? mg_ipc_send(a->fd, MG_IPC_PATH, path, n) : -1;
    pthread_mutex_unlock(&a->lock);
    if (rc != 0)
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: the analyzer process is gone");
    return MG_OK;
}

static void reap(struct mg_analyzer *a, int *status)
{
    *status = 0;
    if (a->pid <= 0)
        return;
    while (waitpid(a->pid, status, 0) < 0 && errno == EINTR)
        ;
    a->pid = -1;
}

enum mg_code mg_analyzer_finish(struct mg_analyzer *a, struct mg_stats *stats, struct mg_error *err)
{
    pthread_mutex_lock(&a->lock);
    int rc = mg_ipc_send(a->fd, MG_IPC_FINISH, NULL, 0);
    pthread_mutex_unlock(&a->lock);
    struct mg_buf frame;
    mg_buf_init(&frame, MG_IPC_MAX);
    bool complete = false;
    while (rc == 0) {
        enum mg_ipc_type type;
        if (mg_ipc_recv(a->fd, &type, &frame) != 0) {
            rc = -1;
            break;
        }
        if (type == MG_IPC_STATS_END) {
            complete = true;
            break;
        }
        if (type != MG_IPC_STATS || mg_stats_decode(stats, frame.data, frame.len) != 0)
            rc = -1;
    }
    mg_buf_finish(&frame);
    close(a->fd);
    a->fd = -1;
    int status;
    reap(a, &status);
    if (!complete)
        return mg_error_set(err, MG_E_INTERNAL,
                            "analyzer: the analyzer process failed; statistics are unavailable");
    return MG_OK;
}

void mg_analyzer_destroy(struct mg_analyzer *a)
{
    if (a == NULL)
        return;
    if (a->fd >= 0)
        close(a->fd);
    if (a->pid > 0) {
        kill(a->pid, SIGTERM);
        int status;
        reap(a, &status);
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
}
