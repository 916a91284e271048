/* metrics.c - see include/mailgrab/metrics.h */
#include "mailgrab/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mailgrab/fsutil.h"

#define METRICS_MAX (8u << 20) /* the file as it was, read for last success times */
#define LAST_SUCCESS "mailgrab_last_success_timestamp_seconds"

/* A growing text with a hard maximum. */
struct text {
    char *p;
    size_t len, cap;
    bool full;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->full = true;
            return;
        }
        if (t->p != NULL && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t want = t->cap ? t->cap * 2 : 4096;
        while (want < t->len + (size_t)n + 1)
            want *= 2;
        char *q = want <= METRICS_MAX ? realloc(t->p, want) : NULL;
        if (q == NULL) {
            t->full = true;
            return;
        }
        t->p = q;
        t->cap = want;
    }
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void put_label(struct text *t, const char *v)
{
    for (const char *c = v; *c; c++) {
        if (*c == '\\')
            put(t, "\\\\");
        else if (*c == '"')
            put(t, "\\\"");
        else if (*c == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *c);
    }
}

/* The last success time of account, from the file as it was: 0 if none. */
static double old_success(const char *old, const char *account)
{
    if (old == NULL)
        return 0;
    struct text want = {0};
    put(&want, LAST_SUCCESS "{account=\"");
    put_label(&want, account);
    put(&want, "\"} ");
    double v = 0;
    for (const char *line = old; !want.full && line != NULL && *line;) {
        if (strncmp(line, want.p, want.len) == 0) {
            char *end;
            double d = strtod(line + want.len, &end);
            if (end != line + want.len && d > 0)
                v = d;
        }
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    free(want.p);
    return v;
}

static char *read_old(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(METRICS_MAX + 1);
    size_t len = 0;
    if (buf != NULL)
        (void)mg_read_upto(fd, buf, METRICS_MAX, &len); /* what was read counts */
    close(fd);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

struct figures {
    unsigned long long fetched, failed, bytes;
};

static struct figures sum(const struct mg_report *rep)
{
    struct figures f = {0, 0, 0};
    for (size_t i = 0; i < rep->nboxes; i++) {
        f.fetched += rep->boxes[i].fetched;
        f.failed += rep->boxes[i].failed;
        f.bytes += rep->boxes[i].bytes;
    }
    return f;
}

enum metric { M_RUN, M_SUCCESS, M_DURATION, M_FETCHED, M_BYTES, M_FAILED, M_EXIT, M_COUNT };

static const struct {
    const char *name, *help;
} metric[M_COUNT] = {
    {"mailgrab_last_run_timestamp_seconds", "When the last backup run of the account ended."},
    {LAST_SUCCESS, "When a backup run of the account last ended with exit code 0."},
    {"mailgrab_last_run_duration_seconds", "How long the last backup run of the account took."},
    {"mailgrab_last_run_messages_fetched", "Messages stored by the last run of the account."},
    {"mailgrab_last_run_fetched_bytes", "Bytes of the messages stored by the last run."},
    {"mailgrab_last_run_messages_failed", "Messages the last run could not download."},
    {"mailgrab_last_run_exit_code", "Exit code of the last run of the account (0: success)."},
};

struct mg_metrics {
    char *path;
    char *old; /* the file as it was, or NULL */
};

enum mg_code mg_metrics_open(const char *path, struct mg_metrics **out, struct mg_error *err)
{
    struct mg_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->path = strdup(path)) == NULL) {
        free(m);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    m->old = read_old(path);
    *out = m;
    return MG_OK;
}

void mg_metrics_close(struct mg_metrics *m)
{
    if (m == NULL)
        return;
    free(m->old);
    free(m->path);
    free(m);
}

enum mg_code mg_metrics_write(struct mg_metrics *m, const struct mg_metrics_run *runs, size_t n,
                              struct mg_error *err)
{
    const char *old = m->old, *path = m->path;
    struct text t = {0};
    for (int k = 0; k < M_COUNT; k++) {
        put(&t, "# HELP %s %s\n# TYPE %s gauge\n", metric[k].name, metric[k].help, metric[k].name);
        for (size_t i = 0; i < n; i++) {
            const struct mg_report *rep = runs[i].rep;
            struct figures f = sum(rep);
            double v = 0;
            switch (k) {
            case M_RUN:
                v = runs[i].ended;
                break;
            case M_SUCCESS:
                v = rep->code == MG_OK ? runs[i].ended : old_success(old, rep->account);
                if (v <= 0)
                    continue; /* never succeeded: no sample */
                break;
            case M_DURATION:
                v = runs[i].ended - runs[i].started;
                break;
            case M_FETCHED:
                v = (double)f.fetched;
                break;
            case M_BYTES:
                v = (double)f.bytes;
                break;
            case M_FAILED:
                v = (double)f.failed;
                break;
            case M_EXIT:
                v = rep->code;
                break;
            }
            put(&t, "%s{account=\"", metric[k].name);
            put_label(&t, rep->account);
            if (k == M_RUN || k == M_SUCCESS || k == M_DURATION)
                put(&t, "\"} %.3f\n", v);
            else
                put(&t, "\"} %.0f\n", v);
        }
    }
    if (t.full) {
        free(t.p);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory writing --metrics");
    }
    mg_mkdirs_parent(path, 0700); /* a failure shows when writing */
    const char *step = "write";
    /* 0644: node_exporter reads it as a user of its own; it holds no secret. */
    int e = mg_replace_file_mode(path, t.p, t.len, 0644, &step);
    free(t.p);
    if (e != 0)
        return mg_error_set(err, e == ENAMETOOLONG ? MG_E_USAGE : MG_E_IO, "cannot %s %s: %s", step,
                            path, strerror(e));
    return MG_OK;
}
