/* log.c - see include/mailgrab/log.h */
#include "mailgrab/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static enum mg_verbosity level = MG_NORMAL;
static bool progress_on;
static bool progress_drawn;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static mg_log_sink warn_sink;
static void *warn_ctx;

void mg_log_set_warn_sink(mg_log_sink fn, void *ctx)
{
    warn_sink = fn;
    warn_ctx = ctx;
}

void mg_log_set_level(enum mg_verbosity l)
{
    level = l;
}

enum mg_verbosity mg_log_level(void)
{
    return level;
}

static void emit(const char *prefix, bool show, mg_log_sink sink, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void emit(const char *prefix, bool show, mg_log_sink sink, const char *fmt, va_list ap)
{
    char line[1024];
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    if (n < 0)
        return;
    /* Server text can carry control bytes; a log line must stay one line. */
    for (char *p = line; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    if (sink != NULL)
        sink(warn_ctx, line);
    if (!show)
        return;
    pthread_mutex_lock(&lock);
    if (progress_drawn) {
        fputs("\r\033[K", stderr);
        progress_drawn = false;
    }
    fprintf(stderr, "mailgrab: %s%s\n", prefix, line);
    pthread_mutex_unlock(&lock);
}

#define DEFINE_LOG(name, min, prefix)                                                              \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        if (level < (min))                                                                         \
            return;                                                                                \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        emit(prefix, true, NULL, fmt, ap);                                                         \
        va_end(ap);                                                                                \
    }

DEFINE_LOG(mg_err, MG_QUIET, "error: ")
DEFINE_LOG(mg_info, MG_VERBOSE, "")
DEFINE_LOG(mg_debug, MG_DEBUG, "")

/* A warning also goes to the sink, if any, whatever the level. */
void mg_warn(const char *fmt, ...)
{
    mg_log_sink sink = warn_sink;
    if (level < MG_NORMAL && sink == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    emit("warning: ", level >= MG_NORMAL, sink, fmt, ap);
    va_end(ap);
}

void mg_progress_enable(bool on)
{
    progress_on = on;
}

bool mg_progress_enabled(void)
{
    return progress_on;
}

void mg_progress_show(const char *fmt, ...)
{
    if (!progress_on)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lock);
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    progress_drawn = true;
    pthread_mutex_unlock(&lock);
}

void mg_progress_end(void)
{
    pthread_mutex_lock(&lock);
    if (progress_drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        progress_drawn = false;
    }
    pthread_mutex_unlock(&lock);
}

void mg_human_bytes(uint64_t b, char *buf, size_t cap)
{
    if (b >= 1000000000)
        snprintf(buf, cap, "%.2f GB", (double)b / 1e9);
    else if (b >= 1000000)
        snprintf(buf, cap, "%.1f MB", (double)b / 1e6);
    else if (b >= 1000)
        snprintf(buf, cap, "%.1f kB", (double)b / 1e3);
    else
        snprintf(buf, cap, "%u B", (unsigned)b);
}
