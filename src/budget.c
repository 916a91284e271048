/* budget.c - see include/mailgrab/budget.h */
#include "mailgrab/budget.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/fsutil.h"
#include "mailgrab/log.h"

#define LINE_MAX_LEN 80

static int cmp_entry(const void *a, const void *b)
{
    const struct mg_ledger_entry *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

int mg_ledger_add(struct mg_ledger *l, int64_t t, uint64_t bytes)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        struct mg_ledger_entry *v = reallocarray(l->v, cap, sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (struct mg_ledger_entry){t, bytes};
    return 0;
}

void mg_ledger_finish(struct mg_ledger *l)
{
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* One line "K TIME BYTES" (K is f or w), by length; false if it is not one. */
static bool parse_line(const char *p, size_t len, char *kind, int64_t *t, uint64_t *bytes)
{
    char line[LINE_MAX_LEN];
    if (len < 5 || len >= sizeof(line))
        return false;
    memcpy(line, p, len);
    line[len] = '\0';
    if ((line[0] != 'f' && line[0] != 'w') || line[1] != ' ')
        return false;
    *kind = line[0];
    char *end;
    errno = 0;
    long long tv = strtoll(line + 2, &end, 10);
    if (errno != 0 || end == line + 2 || *end != ' ' || tv <= 0)
        return false;
    const char *b = end + 1;
    if (*b < '0' || *b > '9')
        return false;
    unsigned long long bv = strtoull(b, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *t = tv;
    *bytes = bv;
    return true;
}

int mg_ledger_parse(const char *buf, size_t len, int64_t now, struct mg_ledger *l, size_t *bad)
{
    memset(l, 0, sizeof(*l));
    *bad = 0;
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - buf) : len;
        char kind;
        int64_t t;
        uint64_t bytes;
        if (!nl || !parse_line(buf + i, end - i, &kind, &t, &bytes)) {
            /* A line cut short has no newline yet: a crash mid-append. */
            if (end > i)
                (*bad)++;
        } else {
            if (t > now)
                t = now; /* the clock went back: count it from now */
            if (t > now - MG_LEDGER_WINDOW) {
                if (kind == 'w') {
                    l->wait_t = t;
                    l->wait = bytes;
                } else if (mg_ledger_add(l, t, bytes) != 0) {
                    mg_ledger_finish(l);
                    return -1;
                }
            }
        }
        i = end + 1;
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), cmp_entry);
    return 0;
}

uint64_t mg_ledger_used(const struct mg_ledger *l, int64_t now)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].t > now - MG_LEDGER_WINDOW)
            sum = sum + l->v[i].bytes < sum ? UINT64_MAX : sum + l->v[i].bytes;
    return sum;
}

int64_t mg_ledger_free_at(const struct mg_ledger *l, uint64_t limit, uint64_t need, int64_t now)
{
    if (need > limit)
        need = limit; /* bigger than a whole day: when the window is empty */
    uint64_t used = mg_ledger_used(l, now);
    if (used <= limit - need)
        return now;
    /* Entries leave the window one by one, oldest first. */
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].t <= now - MG_LEDGER_WINDOW)
            continue;
        used -= l->v[i].bytes < used ? l->v[i].bytes : used;
        if (used <= limit - need)
            return l->v[i].t + MG_LEDGER_WINDOW;
    }
    return now + MG_LEDGER_WINDOW;
}

size_t mg_ledger_format(const struct mg_ledger *l, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i <= l->n; i++) {
        int k;
        if (i < l->n)
            k = snprintf(buf + n, cap - n, "f %" PRId64 " %" PRIu64 "\n", l->v[i].t, l->v[i].bytes);
        else if (l->wait_t > 0)
            k = snprintf(buf + n, cap - n, "w %" PRId64 " %" PRIu64 "\n", l->wait_t, l->wait);
        else
            break;
        if (k < 0 || (size_t)k >= cap - n)
            return cap;
        n += (size_t)k;
    }
    return n;
}

struct unit {
    char c;
    uint64_t mul;
};

/* Digits, then at most one unit letter of units[], then `tail` if given
 * (may be absent). */
static int parse_scaled(const char *s, const struct unit *units, size_t n, char tail, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    uint64_t mul = 1;
    for (size_t i = 0; i < n; i++)
        if (*end == units[i].c) {
            mul = units[i].mul;
            end++;
            break;
        }
    if (tail != '\0' && (*end == tail || *end == tail + ('a' - 'A')))
        end++;
    if (*end != '\0' || (v > 0 && mul > UINT64_MAX / v))
        return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

int mg_size_parse(const char *s, uint64_t *out)
{
    static const struct unit units[] = {
        {'k', 1000},    {'K', 1000},       {'m', 1000000},
        {'M', 1000000}, {'g', 1000000000}, {'G', 1000000000},
    };
    if (strcmp(s, "none") == 0) {
        *out = 0;
        return 0;
    }
    return parse_scaled(s, units, sizeof(units) / sizeof(units[0]), 'B', out);
}

int mg_duration_parse(const char *s, uint64_t *secs)
{
    static const struct unit units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    return parse_scaled(s, units, sizeof(units) / sizeof(units[0]), '\0', secs);
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void mg_run_limits_init(struct mg_run_limits *r, uint64_t max_bytes, uint64_t max_time)
{
    memset(r, 0, sizeof(*r));
    r->max_bytes = max_bytes;
    r->max_time = max_time;
    if (max_time > 0)
        r->deadline = mono_now() + (double)max_time;
}

enum why { WHY_NONE, WHY_DAILY, WHY_BYTES, WHY_TIME };

struct mg_budget {
    pthread_mutex_t mu;
    char path[PATH_MAX];
    uint64_t daily; /* 0: none */
    struct mg_ledger ledger;
    int fd; /* the ledger, for appending; -1 without a daily limit */
    struct mg_run_limits *run;
    enum why why; /* stopped, and why */
    uint64_t need;
};

static enum mg_code ledger_rewrite(struct mg_budget *b, struct mg_error *err)
{
    size_t cap = 64 + (b->ledger.n + 1) * 48;
    char *text = malloc(cap);
    if (text == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    size_t len = mg_ledger_format(&b->ledger, text, cap);
    const char *step = "write";
    int e = len < cap ? mg_replace_file(b->path, text, len, &step) : ENOSPC;
    free(text);
    if (e != 0)
        return mg_error_set(err, MG_E_IO, "cannot %s %s: %s", step, b->path, strerror(e));
    return MG_OK;
}

enum mg_code mg_budget_create(const char *dir, uint64_t daily_limit, struct mg_run_limits *run,
                              struct mg_budget **out, struct mg_error *err)
{
    *out = NULL;
    struct mg_budget *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    pthread_mutex_init(&b->mu, NULL);
    b->fd = -1;
    b->daily = daily_limit;
    b->run = run;
    if (snprintf(b->path, sizeof(b->path), "%s/%s", dir, MG_LEDGER_NAME) >= (int)sizeof(b->path)) {
        mg_budget_destroy(b);
        return mg_error_set(err, MG_E_USAGE, "output path too long: %s", dir);
    }
    if (daily_limit == 0) {
        *out = b;
        return MG_OK;
    }
    int fd = open(b->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    char *text = malloc(MG_LEDGER_MAX);
    size_t len = 0;
    if (text == NULL) {
        if (fd >= 0)
            close(fd);
        mg_budget_destroy(b);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    if (fd < 0 && errno != ENOENT) {
        int e = errno;
        free(text);
        mg_budget_destroy(b);
        return mg_error_set(err, MG_E_IO, "cannot read %s: %s", b->path, strerror(e));
    }
    if (fd >= 0) {
        (void)mg_read_upto(fd, text, MG_LEDGER_MAX, &len); /* what was read counts */
        close(fd);
    }
    size_t bad = 0;
    int prc = mg_ledger_parse(text, len, (int64_t)time(NULL), &b->ledger, &bad);
    free(text);
    if (prc != 0) {
        mg_budget_destroy(b);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    if (bad > 0)
        mg_warn("%s: %zu line%s not understood and left out", b->path, bad, bad == 1 ? "" : "s");
    /* Keep only what is still in the window; then append to it. */
    enum mg_code rc = ledger_rewrite(b, err);
    if (rc == MG_OK) {
        b->fd = open(b->path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        if (b->fd < 0)
            rc = mg_error_set(err, MG_E_IO, "cannot open %s: %s", b->path, strerror(errno));
    }
    if (rc != MG_OK) {
        mg_budget_destroy(b);
        return rc;
    }
    *out = b;
    return MG_OK;
}

void mg_budget_destroy(struct mg_budget *b)
{
    if (b == NULL)
        return;
    if (b->fd >= 0) {
        close(b->fd);
        /* Remember what the next run waits for, or that nothing waits. */
        struct mg_error err;
        if (b->why == WHY_DAILY) {
            b->ledger.wait_t = (int64_t)time(NULL);
            b->ledger.wait = b->need;
        } else {
            b->ledger.wait_t = 0;
        }
        if (ledger_rewrite(b, &err) != MG_OK)
            mg_warn("%s", err.msg);
    }
    mg_ledger_finish(&b->ledger);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* Caller holds mu. The run's deadline passed: stop. */
static bool past_deadline(struct mg_budget *b)
{
    if (b->why == WHY_NONE && b->run != NULL && b->run->deadline > 0 &&
        mono_now() >= b->run->deadline)
        b->why = WHY_TIME;
    return b->why != WHY_NONE;
}

/* Would `more` bytes on top of `spent` stay under `limit`? A message over
 * the whole limit fits when nothing was spent. */
static bool fits(uint64_t spent, uint64_t more, uint64_t limit)
{
    if (limit == 0)
        return true;
    if (spent == 0)
        return true;
    return spent <= limit && more <= limit - spent;
}

enum mg_code mg_budget_check(struct mg_budget *b, struct mg_error *err)
{
    if (b == NULL)
        return MG_OK;
    pthread_mutex_lock(&b->mu);
    int64_t now = (int64_t)time(NULL);
    if (!past_deadline(b) && b->run != NULL && b->run->max_bytes > 0 &&
        b->run->spent >= b->run->max_bytes)
        b->why = WHY_BYTES;
    if (b->why == WHY_NONE && b->daily > 0) {
        uint64_t need = b->ledger.wait_t > 0 && b->ledger.wait > 0 ? b->ledger.wait : 1;
        if (mg_ledger_free_at(&b->ledger, b->daily, need, now) > now) {
            b->why = WHY_DAILY;
            b->need = need;
        }
    }
    bool stopped = b->why != WHY_NONE;
    pthread_mutex_unlock(&b->mu);
    return stopped ? mg_budget_error(b, err) : MG_OK;
}

enum mg_code mg_budget_take(struct mg_budget *b, const uint32_t *sizes, size_t n, size_t *granted,
                            struct mg_error *err)
{
    *granted = 0;
    if (b == NULL) {
        *granted = n;
        return MG_OK;
    }
    pthread_mutex_lock(&b->mu);
    if (past_deadline(b)) {
        pthread_mutex_unlock(&b->mu);
        return MG_OK;
    }
    int64_t now = (int64_t)time(NULL);
    uint64_t day = b->daily > 0 ? mg_ledger_used(&b->ledger, now) : 0;
    uint64_t run = b->run != NULL ? b->run->spent : 0;
    uint64_t sum = 0;
    size_t k = 0;
    for (; k < n; k++) {
        if (!fits(day + sum, sizes[k], b->daily)) {
            b->why = WHY_DAILY;
            break;
        }
        if (b->run != NULL && !fits(run + sum, sizes[k], b->run->max_bytes)) {
            b->why = WHY_BYTES;
            break;
        }
        sum += sizes[k];
    }
    if (k < n)
        b->need = sizes[k];
    if (sum > 0 && b->fd >= 0) {
        /* On disk before a byte of it is asked for. */
        char line[LINE_MAX_LEN];
        int len = snprintf(line, sizeof(line), "f %" PRId64 " %" PRIu64 "\n", now, sum);
        int e = mg_write_all(b->fd, line, (size_t)len);
        if (e == 0 && fdatasync(b->fd) != 0)
            e = errno;
        if (e == 0 && mg_ledger_add(&b->ledger, now, sum) != 0)
            e = ENOMEM;
        if (e != 0) {
            pthread_mutex_unlock(&b->mu);
            return mg_error_set(err, MG_E_IO, "cannot record the day's downloads in %s: %s",
                                b->path, strerror(e));
        }
    }
    if (b->run != NULL)
        b->run->spent += sum;
    *granted = k;
    pthread_mutex_unlock(&b->mu);
    return MG_OK;
}

bool mg_budget_stopped(struct mg_budget *b)
{
    if (b == NULL)
        return false;
    pthread_mutex_lock(&b->mu);
    bool stopped = past_deadline(b);
    pthread_mutex_unlock(&b->mu);
    return stopped;
}

enum mg_code mg_budget_error(struct mg_budget *b, struct mg_error *err)
{
    pthread_mutex_lock(&b->mu);
    int64_t now = (int64_t)time(NULL);
    char lim[32], left[32], need[32];
    switch (b->why) {
    case WHY_DAILY: {
        uint64_t used = mg_ledger_used(&b->ledger, now);
        mg_human_bytes(b->daily, lim, sizeof(lim));
        mg_human_bytes(used < b->daily ? b->daily - used : 0, left, sizeof(left));
        mg_human_bytes(b->need, need, sizeof(need));
        time_t at = (time_t)mg_ledger_free_at(&b->ledger, b->daily, b->need, now);
        struct tm tm;
        char when[32] = "?";
        if (gmtime_r(&at, &tm) != NULL)
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        mg_error_retry(err, MG_E_LIMIT, MG_RETRY_LATER,
                       "daily limit of %s reached: %s left in the last 24 h, the next message "
                       "needs %s; nothing is lost, run again at %s UTC or later",
                       lim, left, need, when);
        break;
    }
    case WHY_BYTES:
        mg_human_bytes(b->run->max_bytes, lim, sizeof(lim));
        mg_human_bytes(b->run->spent, left, sizeof(left));
        mg_error_retry(err, MG_E_LIMIT, MG_RETRY_LATER,
                       "--max-bytes %s reached (%s fetched in this run); nothing is lost, run "
                       "again to continue",
                       lim, left);
        break;
    case WHY_TIME:
        mg_error_retry(err, MG_E_LIMIT, MG_RETRY_LATER,
                       "--max-time of %" PRIu64 " s reached; nothing is lost, run again to "
                       "continue",
                       b->run->max_time);
        break;
    case WHY_NONE:
        mg_error_clear(err);
        break;
    }
    pthread_mutex_unlock(&b->mu);
    return err->code;
}
