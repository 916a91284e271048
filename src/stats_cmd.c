/* stats_cmd.c - see include/mailgrab/stats_cmd.h */
#include "mailgrab/stats_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mailgrab/isolate.h"
#include "mailgrab/csv.h"
#include "mailgrab/error.h"
#include "mailgrab/ipc.h"
#include "mailgrab/log.h"
#include "mailgrab/settings.h"
#include "mailgrab/stats.h"
#include "mailgrab/wordcount.h"

#define MAX_DEPTH 64
#define MAX_JOBS 256

struct file_list {
    char **v;
    size_t n;
    size_t cap;
};

static void usage(FILE *f)
{
    fputs("usage: mailgrab stats DIR [options]\n"
          "\n"
          "Statistics of the messages stored in DIR (.eml files or Maildirs, searched\n"
          "recursively): senders, domains, keywords, hours and weekdays.\n"
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
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int walk(const char *dir, bool maildir_sub, int depth, struct file_list *l,
                struct mg_error *err)
{
    if (depth > MAX_DEPTH)
        return MG_OK;
    DIR *d = opendir(dir);
    if (d == NULL)
        return mg_error_set(err, MG_E_IO, "cannot read %s: %s", dir, strerror(errno));
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
            rc = walk(path, sub, depth + 1, l, err);
        } else if (S_ISREG(st.st_mode) && (maildir_sub || ends_with(e->d_name, ".eml"))) {
            if (list_add(l, path) != 0)
                rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        }
    }
    closedir(d);
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

/* Run share j of `jobs` in forked processes and merge their counts. */
static int run_jobs(struct file_list *l, unsigned long jobs, const struct mg_isolate_opts *bo,
                    struct mg_stats *total, struct mg_error *err)
{
    pid_t pids[MAX_JOBS];
    int fds[MAX_JOBS];
    unsigned long started = 0;
    int rc = MG_OK;
    for (unsigned long j = 0; j < jobs; j++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            rc = mg_error_set(err, MG_E_INTERNAL, "pipe: %s", strerror(errno));
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
                close(fds[k]);
            /* striped shares even out runs of large and small files */
            size_t mine = 0;
            for (size_t i = j; i < l->n; i += jobs)
                l->v[mine++] = l->v[i];
            struct mg_stats s;
            mg_stats_init(&s);
            int r = mg_isolate_analyze((const char *const *)l->v, mine, bo, &s);
            if (r != 0 || mg_stats_encode(&s, 1024 * 1024, send_chunk, &p[1]) != 0 ||
                mg_ipc_send(p[1], MG_IPC_STATS_END, NULL, 0) != 0)
                _exit(1);
            _exit(0);
        }
        close(p[1]);
        pids[started] = pid;
        fds[started] = p[0];
        started++;
    }
    struct mg_buf frame;
    mg_buf_init(&frame, MG_IPC_MAX);
    for (unsigned long j = 0; j < started; j++) {
        bool complete = false;
        enum mg_ipc_type type;
        while (mg_ipc_recv(fds[j], &type, &frame) == 0) {
            if (type == MG_IPC_STATS_END) {
                complete = true;
                break;
            }
            if (type != MG_IPC_STATS || mg_stats_decode(total, frame.data, frame.len) != 0)
                break;
        }
        close(fds[j]);
        int status;
        while (waitpid(pids[j], &status, 0) < 0 && errno == EINTR)
            ;
        if (!complete && rc == MG_OK)
            rc = mg_error_set(err, MG_E_INTERNAL, "stats job %lu failed; counts are incomplete",
                              j + 1);
    }
    mg_buf_finish(&frame);
    return rc;
}

enum mg_code mg_stats_output(const struct mg_stats *s, const char *csv, bool tables, size_t top,
                             struct mg_error *err)
{
    if (csv == NULL || tables) {
        /* tables and CSV both on stdout would interleave: tables go to stderr then */
        FILE *tf = (csv != NULL && strcmp(csv, "-") == 0) ? stderr : stdout;
        if (mg_stats_tables_write(tf, s, top ? top : 10, top ? top : 20) != 0)
            return mg_error_set(err, MG_E_IO, "writing the statistics failed: %s", strerror(errno));
    }
    if (csv == NULL)
        return MG_OK;
    bool to_stdout = strcmp(csv, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(csv, "w");
    if (f == NULL)
        return mg_error_set(err, MG_E_IO, "cannot write %s: %s", csv, strerror(errno));
    int rc = mg_csv_write(f, s, top);
    int e = errno;
    if (!to_stdout && fclose(f) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0)
        return mg_error_set(err, MG_E_IO, "writing %s failed: %s", csv, strerror(e));
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
    const char *csv = o.out.csv, *tz = o.out.tz, *stopwords = o.out.stopwords;
    unsigned long top = o.out.top, jobs = o.jobs;
    bool top_set = top > 0;
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

    struct file_list l = {NULL, 0, 0};
    struct stat st;
    int rc;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode))
        rc = list_add(&l, dir) == 0 ? MG_OK : MG_E_INTERNAL;
    else
        rc = walk(dir, false, 0, &l, &err);
    if (rc != MG_OK) {
        mg_err("stats: %s", err.msg);
        mg_stopwords_finish(&sw);
        list_free(&l);
        return rc;
    }
    qsort(l.v, l.n, sizeof(*l.v), cmp_str);
    if (jobs > l.n)
        jobs = l.n ? l.n : 1;

    struct mg_isolate_opts bo = {&sw, 0, NULL};
    struct mg_stats total;
    mg_stats_init(&total);
    rc = run_jobs(&l, jobs, &bo, &total, &err);
    if (rc != MG_OK)
        mg_err("stats: %s", err.msg);

    if (rc == MG_OK) {
        rc = mg_stats_output(&total, csv, false, top_set ? top : 0, &err);
        if (rc != MG_OK)
            mg_err("stats: %s", err.msg);
    }
    mg_stats_finish(&total);
    mg_stopwords_finish(&sw);
    list_free(&l);
    return rc;
}
