/* stats_cmd.c - see include/mailgrab/stats_cmd.h */
#include "mailgrab/stats_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mailgrab/isolate.h"
#include "mailgrab/csv.h"
#include "mailgrab/labels.h"
#include "mailgrab/msgrow.h"
#include "mailgrab/report.h"
#include "mailgrab/statsjson.h"
#include "mailgrab/error.h"
#include "mailgrab/ipc.h"
#include "mailgrab/log.h"
#include "mailgrab/roles.h"
#include "mailgrab/settings.h"
#include "mailgrab/source.h"
#include "mailgrab/stats.h"
#include "mailgrab/strmap.h"
#include "mailgrab/wordcount.h"

#define MAX_DEPTH 64
#define MAX_JOBS 256

struct file_list {
    char **v;
    size_t n;
    size_t cap;
    /* Files with more than one link (a Gmail backup links a message into
     * each of its label folders): path -> inode (count) and device (bytes). */
    struct mg_strmap linked;
    /* Paths in a mailbox with the \Sent role (roles.h), and, once the list
     * is sorted, v's flags: sent[i] for v[i]. */
    struct mg_strmap in_sent;
    bool *sent;
};

static void usage(FILE *f)
{
    fputs("usage: mailgrab stats DIR [options]\n"
          "\n"
          "Statistics of the messages stored in DIR (.eml files or Maildirs, searched\n"
          "recursively): senders, domains, keywords, hours, weekdays, months,\n"
          "recipients of sent mail (\\Sent mailboxes, --me), attachment types, lists and\n"
          "the largest messages; as tables, CSV, one row per message, JSON or an HTML\n"
          "report.\n"
          "\n",
          f);
    mg_settings_help(MG_CMD_STATS, f);
}

static int list_add(struct file_list *l, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = strdup(path);
    if (l->v[l->n] == NULL)
        return -1;
    l->n++;
    return 0;
}

static void list_free(struct file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->sent);
    mg_strmap_finish(&l->linked);
    mg_strmap_finish(&l->in_sent);
}

/* Keep one path per linked file, the first in (sorted) order, so a message
 * linked into several folders counts once; it is sent mail when any of its
 * links is in a \Sent mailbox (Gmail's Sent Mail links to All Mail). */
static int list_dedup(struct file_list *l)
{
    struct mg_strmap seen;
    mg_strmap_init(&seen);
    size_t out = 0;
    int rc = 0;
    l->sent = calloc(l->n ? l->n : 1, sizeof(*l->sent));
    if (l->sent == NULL)
        return -1;
    for (size_t i = 0; i < l->n; i++) {
        bool sent = mg_strmap_get(&l->in_sent, l->v[i], strlen(l->v[i]), false) != NULL;
        const struct mg_strmap_entry *e =
            mg_strmap_get(&l->linked, l->v[i], strlen(l->v[i]), false);
        if (e != NULL && rc == 0) {
            char key[48];
            int kn = snprintf(key, sizeof(key), "%llx:%llx", (unsigned long long)e->bytes,
                              (unsigned long long)e->count);
            struct mg_strmap_entry *first = mg_strmap_get(&seen, key, (size_t)kn, true);
            if (first == NULL) {
                rc = -1;
            } else if (first->count++ > 0) {
                l->sent[first->bytes] |= sent;
                free(l->v[i]);
                continue;
            } else {
                first->bytes = out; /* where this file is kept */
            }
        }
        l->sent[out] = sent;
        l->v[out++] = l->v[i];
    }
    l->n = out;
    mg_strmap_finish(&seen);
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Files under dir; sent: dir is (in) a mailbox with the \Sent role. A
 * backup's roles file says which of its mailboxes have it. */
static int walk(const char *dir, bool maildir_sub, bool sent, int depth, struct file_list *l,
                struct mg_error *err)
{
    if (depth > MAX_DEPTH)
        return MG_OK;
    DIR *d = opendir(dir);
    if (d == NULL)
        return mg_error_set(err, MG_E_IO, "cannot read %s: %s", dir, strerror(errno));
    struct mg_roles roles;
    mg_roles_init(&roles);
    if (!maildir_sub && mg_roles_load(&roles, dirfd(d)) < 0)
        mg_warn("%s/" MG_ROLES_FILE ": %s; its sent mail is known by --me only", dir,
                strerror(errno));
    /* a Maildir's tmp/ holds deliveries in progress */
    char probe[PATH_MAX];
    int pn = snprintf(probe, sizeof(probe), "%s/cur", dir);
    struct stat pst;
    bool is_maildir =
        pn > 0 && (size_t)pn < sizeof(probe) && stat(probe, &pst) == 0 && S_ISDIR(pst.st_mode);
    int rc = MG_OK;
    struct dirent *e;
    while (rc == MG_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            mg_warn("path too long under %s, skipped", dir);
            continue;
        }
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (is_maildir && strcmp(e->d_name, "tmp") == 0)
                continue;
            bool sub =
                is_maildir && (strcmp(e->d_name, "cur") == 0 || strcmp(e->d_name, "new") == 0);
            bool in_sent = sent || (mg_roles_of(&roles, e->d_name) & MG_ROLE_SENT) != 0;
            rc = walk(path, sub, in_sent, depth + 1, l, err);
        } else if (S_ISREG(st.st_mode) && (maildir_sub || ends_with(e->d_name, ".eml"))) {
            struct mg_strmap_entry *link = NULL;
            if (st.st_nlink > 1 &&
                (link = mg_strmap_get(&l->linked, path, strlen(path), true)) != NULL) {
                link->count = (uint64_t)st.st_ino;
                link->bytes = (uint64_t)st.st_dev;
            }
            if ((st.st_nlink > 1 && link == NULL) || list_add(l, path) != 0 ||
                (sent && mg_strmap_get(&l->in_sent, path, strlen(path), true) == NULL))
                rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        }
    }
    closedir(d);
    mg_roles_finish(&roles);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int send_chunk(void *ctx, const char *data, size_t len)
{
    return mg_ipc_send(*(int *)ctx, MG_IPC_STATS, data, len);
}

/* A job's rows on their way to the stats process, sent 64 KiB at a time. */
struct row_batch {
    int fd;
    struct mg_buf frames;
};

static int row_batch_flush(struct row_batch *rb)
{
    int rc = mg_ipc_send_frames(rb->fd, &rb->frames);
    mg_buf_reset(&rb->frames);
    return rc;
}

static int send_row(void *ctx, const char *data, size_t len)
{
    struct row_batch *rb = ctx;
    if (mg_ipc_append(&rb->frames, MG_IPC_ROW, data, len) != 0)
        return -1;
    return rb->frames.len >= 65536 ? row_batch_flush(rb) : 0;
}

/* The per-message table being written (--messages-csv). */
struct rows_out {
    FILE *f;
    const char *name;
    struct mg_buf line;
    int failed;              /* errno of the first write error */
    struct mg_labels labels; /* DIR/labels.jsonl, if any */
};

static int write_row(struct rows_out *ro, const char *data, size_t len)
{
    struct mg_msgrow r;
    if (mg_msgrow_decode(data, len, &r) != 0)
        return -1;
    const struct mg_label_entry *e =
        mg_labels_find(&ro->labels, r.path.p ? r.path.p : "", r.path.n);
    if (e != NULL) {
        r.labels = (struct mg_msgrow_str){e->labels, strlen(e->labels)};
        r.thrid = (struct mg_msgrow_str){e->thrid, strlen(e->thrid)};
    }
    if (ro->failed == 0 && mg_msgrow_csv_write(ro->f, &r, &ro->line) != 0)
        ro->failed = errno ? errno : EIO;
    return 0;
}

static int row_here(void *ctx, const char *data, size_t len)
{
    return write_row(ctx, data, len);
}

/* Run share j of `jobs` in forked processes and merge their counts; rows
 * (when ro is set) are written as they come from any job. One job runs in
 * this process (its worker is still a process of its own): a process in
 * between would only relay every row and result once more. */
static int run_jobs(struct file_list *l, unsigned long jobs, const struct mg_isolate_opts *bo,
                    struct rows_out *ro, struct mg_stats *total, struct mg_error *err)
{
    if (jobs == 1) {
        struct mg_isolate_opts o = *bo;
        if (ro != NULL) {
            o.row = row_here;
            o.row_ctx = ro;
        }
        if (mg_isolate_analyze((const char *const *)l->v, l->sent, l->n, &o, total) != 0)
            return mg_error_set(err, MG_E_INTERNAL, "stats job 1 failed; counts are incomplete");
        return MG_OK;
    }
    pid_t pids[MAX_JOBS];
    struct pollfd pfds[MAX_JOBS];
    bool complete[MAX_JOBS];
    unsigned long started = 0;
    int rc = MG_OK;
    for (unsigned long j = 0; j < jobs; j++) {
        int p[2]; /* a socket: mg_ipc_send writes to it in one call */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0) {
            rc = mg_error_set(err, MG_E_INTERNAL, "socketpair: %s", strerror(errno));
            break;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            close(p[0]);
            close(p[1]);
            rc = mg_error_set(err, MG_E_INTERNAL, "fork: %s", strerror(errno));
            break;
        }
        if (pid == 0) {
            close(p[0]);
            for (unsigned long k = 0; k < started; k++)
                close(pfds[k].fd);
            /* striped shares even out runs of large and small files */
            size_t mine = 0;
            for (size_t i = j; i < l->n; i += jobs, mine++) {
                l->v[mine] = l->v[i];
                l->sent[mine] = l->sent[i];
            }
            struct mg_isolate_opts o = *bo;
            struct row_batch rb = {p[1], {0}};
            mg_buf_init(&rb.frames, 65536 + MG_MSGROW_MAX + MG_IPC_HEADER);
            if (ro != NULL) {
                o.row = send_row;
                o.row_ctx = &rb;
            }
            struct mg_stats s;
            mg_stats_init(&s);
            int r = mg_isolate_analyze((const char *const *)l->v, l->sent, mine, &o, &s);
            if (r != 0 || row_batch_flush(&rb) != 0 ||
                mg_stats_encode(&s, 1024 * 1024, send_chunk, &p[1]) != 0 ||
                mg_ipc_send(p[1], MG_IPC_STATS_END, NULL, 0) != 0)
                _exit(1);
            _exit(0);
        }
        close(p[1]);
        pids[started] = pid;
        pfds[started].fd = p[0];
        pfds[started].events = POLLIN;
        complete[started] = false;
        started++;
    }
    struct mg_buf frame;
    mg_buf_init(&frame, MG_IPC_MAX);
    unsigned long open_fds = started;
    while (open_fds > 0) {
        if (poll(pfds, started, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (unsigned long j = 0; j < started; j++) {
            if (pfds[j].fd < 0 || pfds[j].revents == 0)
                continue;
            enum mg_ipc_type type;
            bool done = mg_ipc_recv(pfds[j].fd, &type, &frame) != 0;
            if (!done && type == MG_IPC_STATS_END)
                complete[j] = done = true;
            else if (!done && type == MG_IPC_ROW && ro != NULL)
                done = write_row(ro, frame.data, frame.len) != 0;
            else if (!done)
                done = type != MG_IPC_STATS || mg_stats_decode(total, frame.data, frame.len) != 0;
            if (done) {
                close(pfds[j].fd);
                pfds[j].fd = -1; /* poll skips it */
                open_fds--;
            }
        }
    }
    for (unsigned long j = 0; j < started; j++) {
        if (pfds[j].fd >= 0)
            close(pfds[j].fd);
        int status;
        while (waitpid(pids[j], &status, 0) < 0 && errno == EINTR)
            ;
        if (!complete[j] && rc == MG_OK)
            rc = mg_error_set(err, MG_E_INTERNAL, "stats job %lu failed; counts are incomplete",
                              j + 1);
    }
    mg_buf_finish(&frame);
    return rc;
}

static bool is_stdout(const char *path)
{
    return path != NULL && strcmp(path, "-") == 0;
}

typedef int (*write_fn)(FILE *f, const struct mg_stats *s, const struct mg_stats_settings *st);

static int write_csv(FILE *f, const struct mg_stats *s, const struct mg_stats_settings *st)
{
    return mg_csv_write(f, s, st->top);
}

static int write_json(FILE *f, const struct mg_stats *s, const struct mg_stats_settings *st)
{
    return mg_stats_json_write(f, s, st->top);
}

static int write_html(FILE *f, const struct mg_stats *s, const struct mg_stats_settings *st)
{
    return mg_report_html_write(f, s, st->top, st->tz);
}

static enum mg_code write_file(const char *path, write_fn fn, const struct mg_stats *s,
                               const struct mg_stats_settings *st, struct mg_error *err)
{
    if (path == NULL)
        return MG_OK;
    bool to_stdout = is_stdout(path);
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (f == NULL)
        return mg_error_set(err, MG_E_IO,
                            "cannot write %s: %s; check the directory exists "
                            "and is writable",
                            path, strerror(errno));
    int rc = fn(f, s, st);
    int e = errno;
    if (!to_stdout && fclose(f) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0)
        return mg_error_set(err, MG_E_IO, "writing %s failed: %s", path, strerror(e));
    return MG_OK;
}

bool mg_stats_wanted(const struct mg_stats_settings *st)
{
    return st->csv != NULL || st->json != NULL || st->html != NULL || st->messages_csv != NULL;
}

enum mg_code mg_stats_settings_check(const struct mg_stats_settings *st, struct mg_error *err)
{
    int outs = is_stdout(st->csv) + is_stdout(st->json) + is_stdout(st->html) +
               is_stdout(st->messages_csv);
    if (outs > 1)
        return mg_error_set(err, MG_E_USAGE,
                            "only one of --csv, --messages-csv, --json and --html can be - "
                            "(standard output); give the others a FILE");
    if (st->nme > MG_STATS_ME_MAX)
        return mg_error_set(err, MG_E_USAGE, "at most %d --me addresses", MG_STATS_ME_MAX);
    return MG_OK;
}

enum mg_code mg_stats_output(const struct mg_stats *s, const struct mg_stats_settings *st,
                             bool tables, struct mg_error *err)
{
    bool any_stdout = is_stdout(st->csv) || is_stdout(st->json) || is_stdout(st->html) ||
                      is_stdout(st->messages_csv);
    if (!mg_stats_wanted(st) || tables) {
        /* tables and a file on stdout would interleave: tables go to stderr then */
        FILE *tf = any_stdout ? stderr : stdout;
        size_t top = st->top;
        if (mg_stats_tables_write(tf, s, top ? top : 10, top ? top : 20) != 0)
            return mg_error_set(err, MG_E_IO, "writing the statistics failed: %s", strerror(errno));
    }
    enum mg_code rc = write_file(st->csv, write_csv, s, st, err);
    if (rc == MG_OK)
        rc = write_file(st->json, write_json, s, st, err);
    if (rc == MG_OK)
        rc = write_file(st->html, write_html, s, st, err);
    return rc;
}

/* --me addresses as analyze.h compares them: lowercase. */
int mg_stats_me_lower(const struct mg_stats_settings *st, char **out)
{
    for (size_t i = 0; i < st->nme; i++) {
        out[i] = strdup(st->me[i]);
        if (out[i] == NULL)
            return -1;
        for (char *c = out[i]; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
    }
    return 0;
}

/* Open the per-message table (header written). */
enum mg_code mg_stats_rows_open(const char *path, FILE **f, struct mg_error *err)
{
    *f = is_stdout(path) ? stdout : fopen(path, "w");
    if (*f == NULL)
        return mg_error_set(err, MG_E_IO,
                            "cannot write %s: %s; check the directory exists "
                            "and is writable",
                            path, strerror(errno));
    if (mg_msgrow_csv_header(*f) != 0)
        return mg_error_set(err, MG_E_IO, "writing %s failed: %s", path, strerror(errno));
    return MG_OK;
}

bool mg_stats_setting(struct mg_stats_settings *st, const struct mg_setting *s,
                      const struct mg_value *v)
{
    switch (s->id) {
    case MG_SET_CSV:
        st->csv = v->text;
        return true;
    case MG_SET_STOPWORDS:
        st->stopwords = v->text;
        return true;
    case MG_SET_TOP:
        st->top = v->num;
        return true;
    case MG_SET_TZ:
        st->tz = v->text;
        return true;
    case MG_SET_MESSAGES_CSV:
        st->messages_csv = v->text;
        return true;
    case MG_SET_JSON:
        st->json = v->text;
        return true;
    case MG_SET_HTML:
        st->html = v->text;
        return true;
    case MG_SET_ME:
        if (st->nme < MG_STATS_ME_MAX)
            st->me[st->nme] = v->text;
        st->nme++; /* too many: mg_stats_settings_check says so */
        return true;
    default:
        return false;
    }
}

struct stats_opts {
    struct mg_stats_settings out;
    unsigned long jobs;
    bool help;
    enum mg_verbosity verbosity;
};

static enum mg_code apply(void *ctx, const struct mg_setting *s, const struct mg_value *v,
                          struct mg_error *err)
{
    struct stats_opts *o = ctx;
    if (mg_stats_setting(&o->out, s, v) || mg_verbosity_setting(&o->verbosity, s))
        return MG_OK;
    if (s->id == MG_SET_HELP)
        o->help = true;
    else if (s->id == MG_SET_JOBS)
        o->jobs = v->num;
    else
        return mg_error_set(err, MG_E_INTERNAL, "--%s has no use here", s->name);
    return MG_OK;
}

int mg_stats_main(int argc, char **argv)
{
    struct stats_opts o = {.verbosity = MG_NORMAL};
    const char *dir = NULL;
    size_t nops = 0;
    struct mg_error err;
    mg_error_clear(&err);

    if (mg_settings_parse(MG_CMD_STATS, argc, argv, apply, &o, &dir, 1, &nops, &err) != MG_OK) {
        mg_err("stats: %s", err.msg);
        return MG_E_USAGE;
    }
    if (o.help) {
        usage(stdout);
        return MG_OK;
    }
    mg_log_set_level(o.verbosity);
    if (dir == NULL) {
        mg_err("stats: which directory? (mailgrab stats DIR; see --help)");
        return MG_E_USAGE;
    }
    if (mg_stats_settings_check(&o.out, &err) != MG_OK) {
        mg_err("stats: %s", err.msg);
        return MG_E_USAGE;
    }
    const char *tz = o.out.tz, *stopwords = o.out.stopwords;
    unsigned long jobs = o.jobs;
    if (tz != NULL)
        setenv("TZ", tz, 1);
    tzset();
    if (jobs == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        jobs = cpus < 1 ? 1 : cpus > MAX_JOBS ? MAX_JOBS : (unsigned long)cpus;
    }

    struct mg_stopwords sw;
    if ((stopwords ? mg_stopwords_file(&sw, stopwords) : mg_stopwords_default(&sw)) != 0) {
        mg_err("stats: cannot read stopwords %s: %s", stopwords ? stopwords : "(built-in)",
               strerror(errno));
        return MG_E_IO;
    }

    struct file_list l = {0};
    mg_strmap_init(&l.linked);
    mg_strmap_init(&l.in_sent);
    struct stat st;
    int rc;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode))
        rc = list_add(&l, dir) == 0 ? MG_OK : MG_E_INTERNAL;
    else
        rc = walk(dir, false, false, 0, &l, &err);
    if (rc != MG_OK) {
        mg_err("stats: %s", err.msg);
        mg_stopwords_finish(&sw);
        list_free(&l);
        return rc;
    }
    qsort(l.v, l.n, sizeof(*l.v), cmp_str);
    if (list_dedup(&l) != 0) {
        mg_err("stats: out of memory");
        mg_stopwords_finish(&sw);
        list_free(&l);
        return MG_E_INTERNAL;
    }
    if (jobs > l.n)
        jobs = l.n ? l.n : 1;

    char *me[MG_STATS_ME_MAX] = {NULL};
    /* paths in the table and the largest list are relative to DIR */
    size_t strip = S_ISDIR(st.st_mode) ? strlen(dir) : 0;
    while (strip > 0 && dir[strip - 1] == '/')
        strip--;
    if (strip > 0 || (S_ISDIR(st.st_mode) && dir[0] == '/'))
        strip++; /* and the '/' after it */
    struct mg_isolate_opts bo = {
        .stopwords = &sw, .me = (const char *const *)me, .nme = o.out.nme, .strip = strip};
    struct rows_out ro = {NULL, o.out.messages_csv, {0}, 0, {0}};
    mg_buf_init(&ro.line, 4 * MG_MSGROW_MAX);
    mg_labels_init(&ro.labels);
    if (o.out.messages_csv != NULL && S_ISDIR(st.st_mode)) {
        char lp[PATH_MAX];
        int ln = snprintf(lp, sizeof(lp), "%s/labels.jsonl", dir);
        if (ln > 0 && (size_t)ln < sizeof(lp) && mg_labels_load(&ro.labels, lp) != 0)
            rc = mg_error_set(&err, MG_E_IO, "cannot read %s: %s", lp, strerror(errno));
        if (ro.labels.skipped > 0)
            mg_warn("%s: %zu lines are not label records and were skipped", lp, ro.labels.skipped);
    }
    struct mg_stats total;
    mg_stats_init(&total);
    if (mg_stats_me_lower(&o.out, me) != 0)
        rc = mg_error_set(&err, MG_E_INTERNAL, "out of memory");
    if (rc == MG_OK && o.out.messages_csv != NULL)
        rc = mg_stats_rows_open(o.out.messages_csv, &ro.f, &err);
    if (rc == MG_OK)
        rc = run_jobs(&l, jobs, &bo, ro.f ? &ro : NULL, &total, &err);
    if (rc == MG_OK && ro.f != NULL) {
        if (fflush(ro.f) != 0 && ro.failed == 0)
            ro.failed = errno;
        if (ro.failed != 0)
            rc = mg_error_set(&err, MG_E_IO, "writing %s failed: %s", ro.name, strerror(ro.failed));
    }
    if (ro.f != NULL && ro.f != stdout)
        fclose(ro.f);
    mg_buf_finish(&ro.line);
    mg_labels_finish(&ro.labels);
    for (size_t i = 0; i < MG_STATS_ME_MAX; i++)
        free(me[i]);
    if (rc != MG_OK)
        mg_err("stats: %s", err.msg);

    if (rc == MG_OK) {
        rc = mg_stats_output(&total, &o.out, false, &err);
        if (rc != MG_OK)
            mg_err("stats: %s", err.msg);
    }
    mg_stats_finish(&total);
    mg_stopwords_finish(&sw);
    list_free(&l);
    return rc;
}
