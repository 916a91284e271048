/* events.c - see include/mailgrab/events.h */
#include "mailgrab/events.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/fsutil.h"
#include "mailgrab/log.h"

struct mg_events {
    FILE *f;
    bool own; /* f is ours to close (not stdout) */
    bool broken;
    uint64_t seq;
    double last_progress; /* CLOCK_MONOTONIC of the last throttled progress line */
    pthread_mutex_t mu;
};

enum mg_code mg_events_open(const char *path, struct mg_events **out, struct mg_error *err)
{
    *out = NULL;
    struct mg_events *ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    if (strcmp(path, "-") == 0) {
        ev->f = stdout;
    } else {
        mg_mkdirs_parent(path, 0700); /* a failure shows when opening */
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0 && (ev->f = fdopen(fd, "w")) == NULL)
            close(fd);
        if (ev->f == NULL) {
            int e = errno;
            free(ev);
            return mg_error_set(err, MG_E_IO, "cannot open --events file %s: %s", path,
                                strerror(e));
        }
        ev->own = true;
    }
    pthread_mutex_init(&ev->mu, NULL);
    *out = ev;
    return MG_OK;
}

void mg_events_close(struct mg_events *ev)
{
    if (ev == NULL)
        return;
    if (ev->own && fclose(ev->f) != 0 && !ev->broken)
        mg_err("cannot write the --events file: %s", strerror(errno));
    else if (!ev->own)
        fflush(ev->f);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static json_object *begin(const char *type)
{
    json_object *o = json_object_new_object();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);
    json_object_object_add(o, "schema", json_object_new_int(MG_EVENTS_SCHEMA));
    json_object_object_add(o, "time", json_object_new_string(when));
    json_object_object_add(o, "event", json_object_new_string(type));
    return o;
}

/* One line, numbered under the lock so that seq follows the lines. */
static void emit(struct mg_events *ev, json_object *o)
{
    pthread_mutex_lock(&ev->mu);
    if (!ev->broken) {
        json_object_object_add(o, "seq", json_object_new_int64((int64_t)++ev->seq));
        const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE);
        if (fputs(text, ev->f) == EOF || fputc('\n', ev->f) == EOF || fflush(ev->f) != 0) {
            ev->broken = true;
            /* Not mg_warn: that would come back here. */
            fprintf(stderr,
                    "mailgrab: warning: cannot write the --events stream (%s); going on "
                    "without it\n",
                    strerror(errno));
        }
    }
    pthread_mutex_unlock(&ev->mu);
    json_object_put(o);
}

static json_object *str_or_null(const char *s)
{
    return s != NULL ? json_object_new_string(s) : NULL;
}

void mg_events_run_start(struct mg_events *ev, const char *version, size_t accounts,
                         const char *shard)
{
    if (ev == NULL)
        return;
    json_object *o = begin("run_start");
    json_object_object_add(o, "version", json_object_new_string(version));
    json_object_object_add(o, "pid", json_object_new_int((int)getpid()));
    json_object_object_add(o, "accounts", json_object_new_int64((int64_t)accounts));
    json_object_object_add(o, "shard", str_or_null(shard));
    emit(ev, o);
}

void mg_events_account_start(struct mg_events *ev, const char *account, const char *server,
                             const char *user)
{
    if (ev == NULL)
        return;
    json_object *o = begin("account_start");
    json_object_object_add(o, "account", json_object_new_string(account));
    json_object_object_add(o, "server", str_or_null(server));
    json_object_object_add(o, "user", str_or_null(user));
    emit(ev, o);
}

void mg_events_mailbox_start(struct mg_events *ev, const char *account, const char *mailbox)
{
    if (ev == NULL)
        return;
    json_object *o = begin("mailbox_start");
    json_object_object_add(o, "account", json_object_new_string(account));
    json_object_object_add(o, "mailbox", json_object_new_string(mailbox));
    emit(ev, o);
}

void mg_events_progress(struct mg_events *ev, const char *account, const struct mg_progress *pr)
{
    if (ev == NULL)
        return;
    double now = mono_now();
    pthread_mutex_lock(&ev->mu);
    bool due = pr->done || now - ev->last_progress >= MG_EVENTS_PROGRESS_SECS;
    if (due)
        ev->last_progress = now;
    pthread_mutex_unlock(&ev->mu);
    if (!due)
        return;
    double rate = pr->seconds > 0 ? (double)pr->stored / pr->seconds : 0;
    double brate = pr->seconds > 0 ? (double)pr->bytes / pr->seconds : 0;
    json_object *o = begin("progress");
    json_object_object_add(o, "account", json_object_new_string(account));
    json_object_object_add(o, "mailbox", json_object_new_string(pr->mailbox));
    json_object_object_add(o, "messages", json_object_new_int64((int64_t)pr->stored));
    json_object_object_add(o, "messages_total", json_object_new_int64((int64_t)pr->total));
    json_object_object_add(o, "bytes", json_object_new_int64((int64_t)pr->bytes));
    json_object_object_add(o, "bytes_total", json_object_new_int64((int64_t)pr->total_bytes));
    json_object_object_add(o, "seconds", json_object_new_double(pr->seconds));
    json_object_object_add(o, "messages_per_second", json_object_new_double(rate));
    json_object_object_add(o, "bytes_per_second", json_object_new_double(brate));
    json_object *eta = NULL;
    if (pr->done)
        eta = json_object_new_double(0);
    else if (brate > 0 && pr->total_bytes >= pr->bytes)
        eta = json_object_new_double((double)(pr->total_bytes - pr->bytes) / brate);
    json_object_object_add(o, "eta_seconds", eta);
    json_object_object_add(o, "done", json_object_new_boolean(pr->done));
    emit(ev, o);
}

void mg_events_mailbox_end(struct mg_events *ev, const char *account,
                           const struct mg_mailbox_report *r)
{
    if (ev == NULL)
        return;
    json_object *o = begin("mailbox_end");
    json_object_object_add(o, "account", json_object_new_string(account));
    json_object_object_add(o, "class", json_object_new_string(mg_code_class(r->code)));
    json_object_object_add(o, "report", mg_summary_box_json(r));
    emit(ev, o);
}

void mg_events_account_end(struct mg_events *ev, const struct mg_report *rep)
{
    if (ev == NULL)
        return;
    json_object *o = begin("account_end");
    json_object_object_add(o, "account", json_object_new_string(rep->account));
    json_object_object_add(o, "class", json_object_new_string(mg_code_class(rep->code)));
    json_object_object_add(o, "report", mg_summary_account_json(rep));
    emit(ev, o);
}

void mg_events_warning(struct mg_events *ev, const char *message)
{
    if (ev == NULL)
        return;
    json_object *o = begin("warning");
    json_object_object_add(o, "message", json_object_new_string(message));
    emit(ev, o);
}

void mg_events_error(struct mg_events *ev, const char *account, const char *mailbox, int code,
                     const char *message)
{
    if (ev == NULL)
        return;
    json_object *o = begin("error");
    json_object_object_add(o, "account", str_or_null(account));
    json_object_object_add(o, "mailbox", str_or_null(mailbox));
    json_object_object_add(o, "exit_code", json_object_new_int(code));
    json_object_object_add(o, "status", json_object_new_string(mg_code_name(code)));
    json_object_object_add(o, "class", json_object_new_string(mg_code_class(code)));
    json_object_object_add(o, "message", json_object_new_string(message));
    emit(ev, o);
}

void mg_events_run_end(struct mg_events *ev, const struct mg_report *reps, size_t n, int exit_code)
{
    if (ev == NULL)
        return;
    json_object *o = begin("run_end");
    json_object_object_add(o, "exit_code", json_object_new_int(exit_code));
    json_object_object_add(o, "class", json_object_new_string(mg_code_class(exit_code)));
    json_object_object_add(o, "summary", mg_summary_json(reps, n, exit_code));
    emit(ev, o);
}
