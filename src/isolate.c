/* isolate.c - see include/mailgrab/isolate.h */
#include "mailgrab/isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mailgrab/analyze.h"
#include "mailgrab/buf.h"
#include "mailgrab/ipc.h"
#include "mailgrab/log.h"
#include "mailgrab/msgrow.h"

#if defined(__SANITIZE_ADDRESS__)
#define MG_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MG_UNDER_ASAN 1
#endif
#endif
#ifndef MG_UNDER_ASAN
#define MG_UNDER_ASAN 0
#endif

/* A worker is a throwaway: cap its address space so a memory bomb kills only it. */
#define WORKER_MAX_AS (1024UL * 1024 * 1024)

static int queue_chunk(void *ctx, const char *data, size_t len)
{
    return mg_ipc_append(ctx, MG_IPC_RESULT, data, len);
}

static int read_file(const char *path, struct mg_buf *b, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0) {
        close(fd);
        return -1;
    }
    mg_buf_reset(b);
    /* straight into the buffer, the whole file in one read where it can:
     * room for its size and a byte more, so a short read shows the end */
    size_t size = st->st_size > 0 ? (size_t)st->st_size : 0;
    while (b->len < b->max) { /* analyse the first MG_ISOLATE_MAX_READ bytes */
        size_t ask = size >= b->len ? size - b->len + 1 : 65536;
        if (ask > b->max - b->len)
            ask = b->max - b->len;
        if (mg_buf_reserve(b, ask) != 0)
            break;
        ssize_t r = read(fd, b->data + b->len, ask);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        b->len += (size_t)r;
        b->data[b->len] = '\0';
        if ((size_t)r < ask && b->len >= size)
            break; /* a short read of a regular file at its size: the end */
    }
    close(fd);
    return 0;
}

/* How much of path the table and the largest list leave out. */
static size_t path_skip(const struct mg_isolate_opts *o, const char *path)
{
    size_t n = strlen(path);
    if (o->account_paths)
        return mg_msgrow_account_offset(path, n);
    return o->strip < n ? o->strip : 0;
}

/* The worker: analyse paths in order, one RESULT frame per message. Never returns. */
static void worker(int fd, pid_t parent, const char *const *paths, const bool *sent, size_t n,
                   const struct mg_isolate_opts *o)
{
    /* a worker must not outlive the process waiting for its results */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(2);
    signal(SIGALRM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
#if !MG_UNDER_ASAN
    /* (AddressSanitizer reserves terabytes of shadow memory: no cap there) */
    struct rlimit rl = {WORKER_MAX_AS, WORKER_MAX_AS};
    setrlimit(RLIMIT_AS, &rl);
#endif
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore); /* a poisoned message leaves no core file of mail */
    unsigned timeout = o->timeout_secs ? o->timeout_secs : MG_ISOLATE_TIMEOUT;
    struct mg_analyze_opts ao = {o->stopwords, o->me, o->nme};
    struct mg_buf msg, row, frames;
    mg_buf_init(&msg, MG_ISOLATE_MAX_READ);
    mg_buf_init(&row, MG_MSGROW_MAX);
    /* a message's row and result leave in one write: one wake-up of the reader */
    mg_buf_init(&frames, MG_IPC_MAX + MG_MSGROW_MAX + 2 * MG_IPC_HEADER);
    struct mg_buf *rowp = o->row ? &row : NULL;
    for (size_t i = 0; i < n; i++) {
        struct mg_stats one;
        mg_stats_init(&one);
        struct stat st;
        alarm(timeout);
        int rc;
        mg_buf_reset(&row);
        struct mg_analyze_msg m = {paths[i] + path_skip(o, paths[i]), 0, 0,
                                   sent != NULL && sent[i]};
        if (read_file(paths[i], &msg, &st) != 0) {
            mg_warn("%s: %s (counted as unparseable)", paths[i], strerror(errno));
            m.fallback = time(NULL);
            rc = mg_analyze_failed_full(&m, &one, rowp);
        } else if (o->analyze != NULL) {
            rc = o->analyze(msg.data ? msg.data : "", msg.len, (uint64_t)st.st_size, st.st_mtime,
                            o->stopwords, &one);
        } else {
            m.size = (uint64_t)st.st_size;
            m.fallback = st.st_mtime;
            rc = mg_analyze_full(msg.data ? msg.data : "", msg.len, &m, &ao, &one, rowp);
        }
        alarm(0);
        mg_buf_reset(&frames);
        if (rc == 0 && rowp != NULL && mg_ipc_append(&frames, MG_IPC_ROW, row.data, row.len) != 0)
            rc = -1;
        /* a chunk size of the frame maximum keeps each message in one frame */
        if (rc != 0 || mg_stats_encode(&one, MG_IPC_MAX - 16384, queue_chunk, &frames) != 0 ||
            mg_ipc_send_frames(fd, &frames) != 0)
            _exit(3);
        mg_stats_finish(&one);
    }
    _exit(0);
}

static void describe(int status, char *out, size_t n)
{
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        snprintf(out, n, "took too long");
    else if (WIFSIGNALED(status))
        snprintf(out, n, "crashed the analyzer (%s)", strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status))
        snprintf(out, n, "stopped the analyzer (exit %d)", WEXITSTATUS(status));
    else
        snprintf(out, n, "stopped the analyzer");
}

int mg_isolate_analyze(const char *const *paths, const bool *sent, size_t n,
                       const struct mg_isolate_opts *o, struct mg_stats *out)
{
    struct mg_buf frame, row;
    mg_buf_init(&frame, MG_IPC_MAX);
    mg_buf_init(&row, MG_MSGROW_MAX);
    size_t start = 0;
    int rc = 0;
    while (start < n && rc == 0) {
        /* a socket, not a pipe: mg_ipc_send writes to it in one call (a
         * pipe costs a failed sendmsg first) */
        int p[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0) {
            rc = -1;
            break;
        }
        fflush(NULL);
        pid_t self = getpid();
        pid_t pid = fork();
        if (pid < 0) {
            close(p[0]);
            close(p[1]);
            rc = -1;
            break;
        }
        if (pid == 0) {
            close(p[0]);
            worker(p[1], self, paths + start, sent ? sent + start : NULL, n - start, o);
        }
        close(p[1]);
        size_t done = 0;
        bool broken = false;
        enum mg_ipc_type type;
        int r;
        /* one RESULT frame per message, checked whole before it is added so
         * a bad frame adds nothing */
        bool have_row = false;
        struct mg_ipc_reader rd;
        mg_ipc_reader_init(&rd, p[0]);
        while ((r = mg_ipc_read(&rd, &type, &frame)) == 0) {
            if (type == MG_IPC_ROW && o->row != NULL && !have_row) {
                mg_buf_reset(&row);
                if (mg_buf_append(&row, frame.data, frame.len) != 0) {
                    broken = true;
                    break;
                }
                have_row = true;
                continue;
            }
            if (o->row != NULL && !have_row) {
                broken = true;
                break;
            }
            have_row = false;
            uint64_t msgs = 0;
            if (type != MG_IPC_RESULT || mg_stats_check(frame.data, frame.len, &msgs) != 0 ||
                msgs != 1) {
                broken = true;
                break;
            }
            int mr = mg_stats_decode(out, frame.data, frame.len);
            if (mr == 0 && o->row != NULL && o->row(o->row_ctx, row.data, row.len) != 0)
                mr = -1;
            if (mr != 0) {
                rc = -1;
                break;
            }
            done++;
        }
        mg_ipc_reader_finish(&rd);
        close(p[0]);
        if (broken || r < 0)
            kill(pid, SIGKILL);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        start += done;
        if (rc != 0 || start >= n)
            break;
        if (!broken && r == 1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            break; /* cannot happen: a clean exit reports every message */
        /* the worker died on paths[start]: count it and carry on after it */
        char why[128];
        describe(status, why, sizeof(why));
        mg_warn("%s %s; counted as unparseable", paths[start], why);
        struct stat st;
        if (lstat(paths[start], &st) != 0)
            memset(&st, 0, sizeof(st));
        struct mg_analyze_msg m = {paths[start] + path_skip(o, paths[start]), (uint64_t)st.st_size,
                                   st.st_mtime, sent != NULL && sent[start]};
        mg_buf_reset(&row);
        if (mg_analyze_failed_full(&m, out, o->row ? &row : NULL) != 0 ||
            (o->row != NULL && o->row(o->row_ctx, row.data, row.len) != 0))
            rc = -1;
        start++;
    }
    mg_buf_finish(&frame);
    mg_buf_finish(&row);
    return rc;
}
