/* analyzer.c - see include/mailgrab/analyzer.h */
#include "mailgrab/analyzer.h"
#include "mailgrab/password.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/isolate.h"
#include "mailgrab/buf.h"
#include "mailgrab/cancel.h"
#include "mailgrab/ipc.h"
#include "mailgrab/log.h"
#include "mailgrab/msgrow.h"
#include "mailgrab/wordcount.h"

/* Paths analysed per disposable worker. Small enough that a wrap-up on
 * SIGTERM (the group under way, then the paths in hand) takes a fraction of
 * the 2 s mailgrab allows it; a fork per group costs about a millisecond. */
#define GROUP_PATHS 64
/* Framed paths waiting for the analyzer: about 30,000 paths. */
#define QUEUE_MAX (4u << 20)
/* Once the run is cancelled, how long the analyzer has to send its counts. */
#define GRACE_MS 2000

struct mg_analyzer {
    int fd;
    pid_t pid;
    pthread_mutex_t lock;
    /* Frames not yet written: q[head..len). Never more than QUEUE_MAX,
     * plus room for FINISH. */
    char *q;
    size_t head, len;
    bool broken;   /* the analyzer is gone */
    bool finished; /* FINISH is queued */
    uint64_t fed;
    uint64_t missed; /* dropped: the queue was full */
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

static int analyse_group(char **paths, const bool *sent, size_t *n,
                         const struct mg_isolate_opts *bo, struct mg_stats *s)
{
    int rc = mg_isolate_analyze((const char *const *)paths, sent, *n, bo, s);
    free_paths(paths, n);
    return rc;
}

/* Set by SIGTERM in the child: analyse what is in hand, skip what comes
 * after, and send the counts when FINISH arrives. */
static volatile sig_atomic_t stop_asked;

static void on_sigterm(int sig)
{
    (void)sig;
    stop_asked = 1;
}

static int send_skipped(int fd, uint64_t n)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(n >> (8 * i));
    return mg_ipc_send(fd, MG_IPC_SKIPPED, le, sizeof(le));
}

/* The per-message table, written by the child as rows come. */
struct child_rows {
    FILE *f;
    struct mg_buf line;
    bool failed;
};

static int child_row(void *ctx, const char *data, size_t len)
{
    struct child_rows *cr = ctx;
    struct mg_msgrow r;
    if (mg_msgrow_decode(data, len, &r) != 0)
        return -1;
    if (!cr->failed && mg_msgrow_csv_write(cr->f, &r, &cr->line) != 0) {
        cr->failed = true;
        fprintf(stderr, "mailgrab: analyzer: writing the per-message table failed: %s\n",
                strerror(errno));
    }
    return 0;
}

/* The child's whole life. Never returns. */
static void child_main(int fd, const struct mg_analyzer_opts *o)
{
    /* The parent decides when the run ends: ^C and a hang-up must not kill
     * the counts; SIGTERM (from the parent on a cancel, or sent to the whole
     * process group) makes this child wrap up instead of dying. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* blocked by the parent (cancel.h) */
    struct mg_stopwords sw;
    int rc =
        o->stopwords_path ? mg_stopwords_file(&sw, o->stopwords_path) : mg_stopwords_default(&sw);
    if (rc != 0) {
        fprintf(stderr, "mailgrab: analyzer: cannot load stopwords %s\n",
                o->stopwords_path ? o->stopwords_path : "(built-in)");
        _exit(1);
    }
    struct mg_isolate_opts bo = {.stopwords = &sw,
                                 .timeout_secs = o->timeout_secs,
                                 .me = o->me,
                                 .nme = o->nme,
                                 .account_paths = true};
    struct child_rows cr = {NULL, {0}, false};
    if (o->rows_fd >= 0) {
        cr.f = fdopen(o->rows_fd, "w");
        if (cr.f == NULL)
            _exit(1);
        mg_buf_init(&cr.line, 4 * MG_MSGROW_MAX);
        bo.row = child_row;
        bo.row_ctx = &cr;
    }
    struct mg_stats stats;
    mg_stats_init(&stats);
    struct mg_buf frame;
    mg_buf_init(&frame, PATH_MAX);
    char *paths[GROUP_PATHS];
    bool sent[GROUP_PATHS];
    size_t n = 0;
    uint64_t skipped = 0;
    for (;;) {
        enum mg_ipc_type type;
        int r = mg_ipc_recv(fd, &type, &frame);
        if (r == 1)
            _exit(0); /* the parent went away without FINISH: nothing to report to */
        if (r != 0) {
            fprintf(stderr, "mailgrab: analyzer: malformed message from the parent\n");
            _exit(1);
        }
        if (type == MG_IPC_PATH || type == MG_IPC_PATH_SENT) {
            if (frame.len == 0 || memchr(frame.data, '\0', frame.len) != NULL) {
                fprintf(stderr, "mailgrab: analyzer: malformed path from the parent\n");
                _exit(1);
            }
            if (stop_asked) {
                skipped++;
                continue;
            }
            paths[n] = strndup(frame.data, frame.len);
            if (paths[n] == NULL)
                _exit(1);
            sent[n] = type == MG_IPC_PATH_SENT;
            if (++n == GROUP_PATHS && analyse_group(paths, sent, &n, &bo, &stats) != 0)
                _exit(1);
        } else if (type == MG_IPC_FINISH) {
            if (analyse_group(paths, sent, &n, &bo, &stats) != 0)
                _exit(1);
            if (cr.f != NULL && (fflush(cr.f) != 0 || cr.failed))
                _exit(1); /* the table is incomplete: say so rather than send counts */
            if (mg_stats_encode(&stats, 1024 * 1024, send_stats_chunk, &fd) != 0 ||
                (skipped > 0 && send_skipped(fd, skipped) != 0) ||
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
    static const struct mg_analyzer_opts defaults = {.rows_fd = -1};
    if (o == NULL)
        o = &defaults;
    *out = NULL;
    struct mg_analyzer *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: out of memory");
    a->q = malloc(QUEUE_MAX + MG_IPC_HEADER);
    if (a->q == NULL) {
        free(a);
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: out of memory");
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        free(a->q);
        free(a);
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: socketpair: %s", strerror(errno));
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        free(a->q);
        free(a);
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* Dies with mailgrab, even a kill -9: nobody would read the counts. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        close(sv[0]);
        /* keep only stdio, our socket (3) and the per-message table (4);
         * both first moved out of the way of each other */
        struct mg_analyzer_opts co = *o;
        int sock = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
        int rfd = -1;
        if (co.rows_fd >= 0 && co.rows_fd != STDOUT_FILENO)
            rfd = fcntl(co.rows_fd, F_DUPFD_CLOEXEC, 10);
        if (sock < 0 || dup2(sock, 3) < 0 ||
            (co.rows_fd >= 0 && co.rows_fd != STDOUT_FILENO && (rfd < 0 || dup2(rfd, 4) < 0)))
            _exit(1);
        if (rfd >= 0)
            co.rows_fd = 4;
        close_range(co.rows_fd == 4 ? 5 : 4, ~0U, 0);
        mg_password_forget_env(); /* the child holds no secret */
        if (o->tz != NULL)
            setenv("TZ", o->tz, 1);
        tzset();
        child_main(3, &co);
    }
    close(sv[1]);
    a->fd = sv[0];
    a->pid = pid;
    pthread_mutex_init(&a->lock, NULL);
    *out = a;
    return MG_OK;
}

pid_t mg_analyzer_pid(const struct mg_analyzer *a)
{
    return a->pid;
}

/* Caller holds lock. Write what the socket takes now, never waiting. */
static void flush_locked(struct mg_analyzer *a)
{
    while (!a->broken && a->head < a->len) {
        ssize_t w = send(a->fd, a->q + a->head, a->len - a->head, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            a->head += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        a->broken = true;
    }
    if (a->head == a->len) {
        a->head = a->len = 0;
    } else if (a->head > QUEUE_MAX / 2) {
        memmove(a->q, a->q + a->head, a->len - a->head);
        a->len -= a->head;
        a->head = 0;
    }
}

enum mg_code mg_analyzer_feed(struct mg_analyzer *a, const char *path, bool sent,
                              struct mg_error *err)
{
    size_t n = strlen(path);
    if (n == 0 || n >= PATH_MAX)
        return mg_error_set(err, MG_E_INTERNAL, "analyzer: bad path length %zu", n);
    pthread_mutex_lock(&a->lock);
    flush_locked(a);
    bool broken = a->broken || a->finished;
    if (!broken && a->len + MG_IPC_HEADER + n <= QUEUE_MAX) {
        mg_ipc_header((unsigned char *)a->q + a->len, sent ? MG_IPC_PATH_SENT : MG_IPC_PATH, n);
        memcpy(a->q + a->len + MG_IPC_HEADER, path, n);
        a->len += MG_IPC_HEADER + n;
        a->fed++;
        flush_locked(a);
    } else if (!broken) {
        a->missed++; /* the analyzer fell behind: the backup does not wait */
    }
    pthread_mutex_unlock(&a->lock);
    if (broken)
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

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until the analyzer's socket is ready for events. Until the run is
 * cancelled the analyzer may take its time; after, it is told to wrap up
 * (SIGTERM) and gets GRACE_MS. Returns false when that time is up. */
static bool wait_analyzer(struct mg_analyzer *a, short events, long *deadline)
{
    for (;;) {
        if (*deadline == 0 && mg_cancelled()) {
            kill(a->pid, SIGTERM);
            *deadline = now_ms() + GRACE_MS;
        }
        long left = *deadline ? *deadline - now_ms() : -1;
        if (*deadline && left <= 0)
            return false;
        struct pollfd pfd[2] = {{.fd = a->fd, .events = events},
                                {.fd = *deadline ? -1 : mg_cancel_fd(), .events = POLLIN}};
        int r = poll(pfd, 2, (int)left);
        if (r < 0 && errno != EINTR)
            return false;
        if (r > 0 && pfd[0].revents != 0)
            return true;
    }
}

enum mg_code mg_analyzer_finish(struct mg_analyzer *a, struct mg_stats *stats, struct mg_error *err)
{
    pthread_mutex_lock(&a->lock);
    mg_ipc_header((unsigned char *)a->q + a->len, MG_IPC_FINISH, 0);
    a->len += MG_IPC_HEADER; /* room kept for it */
    a->finished = true;
    pthread_mutex_unlock(&a->lock);

    long deadline = 0;
    bool ok = true;
    for (;;) {
        pthread_mutex_lock(&a->lock);
        flush_locked(a);
        bool pending = a->len > 0 && !a->broken;
        ok = !a->broken;
        pthread_mutex_unlock(&a->lock);
        if (!pending || !ok)
            break;
        ok = wait_analyzer(a, POLLOUT, &deadline);
        if (!ok)
            break;
    }
    struct mg_buf frame;
    mg_buf_init(&frame, MG_IPC_MAX);
    bool complete = false;
    uint64_t skipped = 0;
    while (ok) {
        enum mg_ipc_type type;
        if (!wait_analyzer(a, POLLIN, &deadline) || mg_ipc_recv(a->fd, &type, &frame) != 0)
            break;
        if (type == MG_IPC_STATS_END) {
            complete = true;
            break;
        }
        if (type == MG_IPC_SKIPPED && frame.len == 8) {
            struct mg_reader r = {(const uint8_t *)frame.data, frame.len};
            mg_read_u64(&r, &skipped);
        } else if (type != MG_IPC_STATS || mg_stats_decode(stats, frame.data, frame.len) != 0) {
            break;
        }
    }
    mg_buf_finish(&frame);
    close(a->fd);
    a->fd = -1;
    if (!complete && a->pid > 0)
        kill(a->pid, SIGKILL); /* stopped, or past its time */
    int status;
    reap(a, &status);
    if (!complete && deadline != 0 && now_ms() >= deadline)
        return mg_error_set(err, MG_E_INTERNAL,
                            "analyzer: no statistics within %d s of the interruption; "
                            "statistics are unavailable",
                            GRACE_MS / 1000);
    if (!complete)
        return mg_error_set(err, MG_E_INTERNAL,
                            "analyzer: the analyzer process failed; statistics are unavailable");
    uint64_t left_out = a->missed + skipped;
    if (left_out > 0)
        mg_warn("statistics leave out %llu of %llu stored messages (%s); the backup itself is "
                "complete",
                (unsigned long long)left_out, (unsigned long long)(a->fed + a->missed),
                skipped > 0 ? "the run was interrupted" : "the analyzer fell behind");
    return MG_OK;
}

void mg_analyzer_destroy(struct mg_analyzer *a)
{
    if (a == NULL)
        return;
    if (a->fd >= 0)
        close(a->fd);
    if (a->pid > 0) {
        kill(a->pid, SIGKILL);
        int status;
        reap(a, &status);
    }
    pthread_mutex_destroy(&a->lock);
    free(a->q);
    free(a);
}
