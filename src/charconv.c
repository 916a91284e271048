/* charconv.c - see include/mailgrab/charconv.h */
#include "mailgrab/charconv.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char name[MG_CHARCONV_NAME_MAX]; /* upper case; "" marks a free slot */
    size_t len;
    iconv_t cd; /* (iconv_t)-1: a name iconv does not know */
    bool busy;
    unsigned long used; /* tick of the last acquire, for eviction */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct slot slots[MG_CHARCONV_MAX];
static unsigned long tick;
static struct mg_charconv_counts counts;

static void at_exit(void)
{
    mg_charconv_clear();
}

static void register_exit(void)
{
    atexit(at_exit);
}

static void slot_empty(struct slot *s)
{
    if (s->cd != (iconv_t)-1)
        iconv_close(s->cd);
    memset(s, 0, sizeof(*s));
    s->cd = (iconv_t)-1;
}

/*
 * Unicode encodings with a byte-order mark remember the byte order a mark
 * announced even after iconv's reset (glibc): a cached one would read the
 * next text without a mark in the previous text's order. They are opened
 * for each use instead; mail rarely declares them.
 */
static bool keeps_byte_order(const char *key)
{
    static const char *const prefixes[] = {"UTF16",     "UTF32",  "UCS2",     "UCS4",  "UNICODE",
                                           "CSUNICODE", "CSUCS4", "ISO10646", "10646", "WCHART"};
    char sq[MG_CHARCONV_NAME_MAX];
    size_t n = 0;
    for (const char *p = key; *p != '\0'; p++)
        if ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
            sq[n++] = *p;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t l = strlen(prefixes[i]);
        if (n >= l && memcmp(sq, prefixes[i], l) == 0)
            return true;
    }
    return false;
}

/* A free slot, else the least recently used idle one (emptied); NULL when
 * every slot is in use. Called with the lock held. */
static struct slot *slot_for_new(void)
{
    struct slot *lru = NULL;
    for (size_t i = 0; i < MG_CHARCONV_MAX; i++) {
        struct slot *s = &slots[i];
        if (s->len == 0)
            return s;
        if (!s->busy && (lru == NULL || s->used < lru->used))
            lru = s;
    }
    if (lru != NULL) {
        slot_empty(lru);
        counts.evictions++;
    }
    return lru;
}

int mg_charconv_acquire(const char *name, size_t n, struct mg_charconv *c)
{
    c->cd = (iconv_t)-1;
    c->slot = -1;
    if (n == 0 || n >= MG_CHARCONV_NAME_MAX)
        return -1;
    char key[MG_CHARCONV_NAME_MAX];
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch == '\0')
            return -1;
        key[i] = (ch >= 'a' && ch <= 'z') ? (char)(ch - 'a' + 'A') : ch;
    }
    key[n] = '\0';
    if (keeps_byte_order(key)) {
        pthread_mutex_lock(&lock);
        counts.opens++;
        pthread_mutex_unlock(&lock);
        c->cd = iconv_open("UTF-8", key);
        return c->cd == (iconv_t)-1 ? -1 : 0;
    }
    pthread_once(&once, register_exit);

    pthread_mutex_lock(&lock);
    tick++;
    struct slot *hit = NULL;
    for (size_t i = 0; i < MG_CHARCONV_MAX && hit == NULL; i++)
        if (slots[i].len == n && memcmp(slots[i].name, key, n) == 0)
            hit = &slots[i];
    if (hit != NULL && (hit->cd == (iconv_t)-1 || !hit->busy)) {
        counts.hits++;
        hit->used = tick;
        int rc = -1;
        if (hit->cd != (iconv_t)-1) {
            hit->busy = true;
            c->cd = hit->cd;
            c->slot = (int)(hit - slots);
            rc = 0;
        }
        pthread_mutex_unlock(&lock);
        return rc;
    }
    /* not cached, or in use by another thread: open one */
    counts.opens++;
    iconv_t cd = iconv_open("UTF-8", key);
    struct slot *s = hit == NULL ? slot_for_new() : NULL;
    if (s != NULL) {
        memcpy(s->name, key, n + 1);
        s->len = n;
        s->cd = cd;
        s->used = tick;
        s->busy = cd != (iconv_t)-1;
        c->slot = cd != (iconv_t)-1 ? (int)(s - slots) : -1;
    }
    pthread_mutex_unlock(&lock);
    c->cd = cd;
    return cd == (iconv_t)-1 ? -1 : 0;
}

void mg_charconv_release(struct mg_charconv *c)
{
    if (c->cd == (iconv_t)-1)
        return;
    if (c->slot < 0) {
        iconv_close(c->cd);
    } else {
        /* back to the initial shift state for the next user */
        iconv(c->cd, NULL, NULL, NULL, NULL);
        pthread_mutex_lock(&lock);
        slots[c->slot].busy = false;
        pthread_mutex_unlock(&lock);
    }
    c->cd = (iconv_t)-1;
    c->slot = -1;
}

void mg_charconv_clear(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < MG_CHARCONV_MAX; i++)
        if (slots[i].len > 0 && !slots[i].busy)
            slot_empty(&slots[i]);
    memset(&counts, 0, sizeof(counts));
    pthread_mutex_unlock(&lock);
}

void mg_charconv_counts(struct mg_charconv_counts *out)
{
    pthread_mutex_lock(&lock);
    *out = counts;
    out->cached = 0;
    for (size_t i = 0; i < MG_CHARCONV_MAX; i++)
        if (slots[i].len > 0)
            out->cached++;
    pthread_mutex_unlock(&lock);
}
