/* stats.c - see include/mailgrab/stats.h */
#include "mailgrab/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/buf.h"

enum entry_kind {
    E_TOTALS = 1,
    E_HOUR = 2,
    E_WDAY = 3,
    E_SENDER = 4,
    E_SENDER_NAME = 5,
    E_DOMAIN = 6,
    E_KEYWORD = 7,
    E_MONTH = 8,
    E_RCPT = 9,
    E_ATT = 10,
    E_LIST = 11,
    E_HWD = 12,
    E_LARGE = 13,
    E_TOTALS2 = 14,
};

void mg_stats_init(struct mg_stats *s)
{
    memset(s, 0, sizeof(*s));
    mg_strmap_init(&s->senders);
    mg_strmap_init(&s->domains);
    mg_strmap_init(&s->keywords);
    mg_strmap_init(&s->months);
    mg_strmap_init(&s->recipients);
    mg_strmap_init(&s->att_types);
    mg_strmap_init(&s->lists);
}

void mg_stats_finish(struct mg_stats *s)
{
    mg_strmap_finish(&s->senders);
    mg_strmap_finish(&s->domains);
    mg_strmap_finish(&s->keywords);
    mg_strmap_finish(&s->months);
    mg_strmap_finish(&s->recipients);
    mg_strmap_finish(&s->att_types);
    mg_strmap_finish(&s->lists);
    for (size_t i = 0; i < s->nlargest; i++)
        free(s->largest[i].path);
    memset(s, 0, sizeof(*s));
}

static int add_name(struct mg_strmap_entry *e, const char *name, size_t n, uint64_t count)
{
    if (n > MG_STATS_NAME_MAX) {
        n = MG_STATS_NAME_MAX;
        /* never cut inside a UTF-8 sequence */
        while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
            n--;
    }
    if (e->sub == NULL) {
        e->sub = malloc(sizeof(*e->sub));
        if (e->sub == NULL)
            return -1;
        mg_strmap_init(e->sub);
    }
    struct mg_strmap_entry *ne = mg_strmap_get(e->sub, name, n, true);
    if (ne == NULL)
        return -1;
    ne->count += count;
    return 0;
}

int mg_stats_add_sender(struct mg_stats *s, const char *addr, size_t addrlen, const char *name,
                        size_t namelen, uint64_t bytes)
{
    if (addr == NULL || addrlen == 0) {
        addr = MG_STATS_NONE;
        addrlen = strlen(MG_STATS_NONE);
    }
    if (addrlen > MG_STATS_KEY_MAX)
        addrlen = MG_STATS_KEY_MAX;
    struct mg_strmap_entry *e = mg_strmap_get(&s->senders, addr, addrlen, true);
    if (e == NULL)
        return -1;
    e->count++;
    e->bytes += bytes;
    if (name != NULL && namelen > 0)
        return add_name(e, name, namelen, 1);
    return 0;
}

int mg_stats_add_domain(struct mg_stats *s, const char *dom, size_t n)
{
    if (n > MG_STATS_KEY_MAX)
        n = MG_STATS_KEY_MAX;
    struct mg_strmap_entry *e = mg_strmap_get(&s->domains, dom, n, true);
    if (e == NULL)
        return -1;
    e->count++;
    return 0;
}

int mg_stats_add_keyword(struct mg_stats *s, const char *w, size_t n, uint64_t count)
{
    if (n > MG_STATS_KEY_MAX)
        return 0;
    struct mg_strmap_entry *e = mg_strmap_get(&s->keywords, w, n, true);
    if (e == NULL)
        return -1;
    e->count += count;
    return 0;
}

void mg_stats_add_time(struct mg_stats *s, time_t t)
{
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL)
        return;
    if (tm.tm_hour >= 0 && tm.tm_hour < 24)
        s->hours[tm.tm_hour]++;
    if (tm.tm_wday >= 0 && tm.tm_wday < 7)
        s->weekdays[(tm.tm_wday + 6) % 7]++;
    if (tm.tm_hour >= 0 && tm.tm_hour < 24 && tm.tm_wday >= 0 && tm.tm_wday < 7)
        s->hour_wday[(tm.tm_wday + 6) % 7][tm.tm_hour]++;
    char m[16];
    int n = snprintf(m, sizeof(m), "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
    if (n > 0 && (size_t)n < sizeof(m))
        mg_stats_add_key(&s->months, m, (size_t)n, 1, 0);
}

int mg_stats_add_key(struct mg_strmap *m, const char *key, size_t n, uint64_t count, uint64_t bytes)
{
    if (n > MG_STATS_KEY_MAX)
        n = MG_STATS_KEY_MAX;
    struct mg_strmap_entry *e = mg_strmap_get(m, key, n, true);
    if (e == NULL)
        return -1;
    e->count += count;
    e->bytes += bytes;
    return 0;
}

static bool bigger(uint64_t size, const char *path, const struct mg_stats_large *l)
{
    return size > l->size || (size == l->size && strcmp(path, l->path) < 0);
}

int mg_stats_add_largest(struct mg_stats *s, const char *path, size_t n, uint64_t size)
{
    if (n > MG_STATS_KEY_MAX)
        n = MG_STATS_KEY_MAX;
    char *p = strndup(path, n);
    if (p == NULL)
        return -1;
    size_t at = s->nlargest;
    while (at > 0 && bigger(size, p, &s->largest[at - 1]))
        at--;
    if (at >= MG_STATS_LARGEST) {
        free(p);
        return 0;
    }
    if (s->nlargest == MG_STATS_LARGEST)
        free(s->largest[--s->nlargest].path);
    memmove(&s->largest[at + 1], &s->largest[at], (s->nlargest - at) * sizeof(s->largest[0]));
    s->largest[at].size = size;
    s->largest[at].path = p;
    s->nlargest++;
    return 0;
}

static int merge_map(struct mg_strmap *dst, const struct mg_strmap *src, bool names)
{
    for (size_t i = 0; i < src->cap; i++) {
        const struct mg_strmap_entry *se = &src->slots[i];
        if (se->key == NULL)
            continue;
        struct mg_strmap_entry *de = mg_strmap_get(dst, se->key, se->keylen, true);
        if (de == NULL)
            return -1;
        de->count += se->count;
        de->bytes += se->bytes;
        if (names && se->sub != NULL) {
            for (size_t k = 0; k < se->sub->cap; k++) {
                const struct mg_strmap_entry *n = &se->sub->slots[k];
                if (n->key != NULL && add_name(de, n->key, n->keylen, n->count) != 0)
                    return -1;
            }
        }
    }
    return 0;
}

int mg_stats_merge(struct mg_stats *dst, const struct mg_stats *src)
{
    for (int i = 0; i < 24; i++)
        dst->hours[i] += src->hours[i];
    for (int i = 0; i < 7; i++)
        dst->weekdays[i] += src->weekdays[i];
    dst->messages += src->messages;
    dst->bytes += src->bytes;
    dst->unparseable += src->unparseable;
    dst->date_fallback += src->date_fallback;
    for (int d = 0; d < 7; d++)
        for (int h = 0; h < 24; h++)
            dst->hour_wday[d][h] += src->hour_wday[d][h];
    dst->attachments += src->attachments;
    dst->attachment_bytes += src->attachment_bytes;
    dst->sent += src->sent;
    for (size_t i = 0; i < src->nlargest; i++)
        if (mg_stats_add_largest(dst, src->largest[i].path, strlen(src->largest[i].path),
                                 src->largest[i].size) != 0)
            return -1;
    if (merge_map(&dst->months, &src->months, false) != 0 ||
        merge_map(&dst->recipients, &src->recipients, false) != 0 ||
        merge_map(&dst->att_types, &src->att_types, false) != 0 ||
        merge_map(&dst->lists, &src->lists, false) != 0)
        return -1;
    if (merge_map(&dst->senders, &src->senders, true) != 0)
        return -1;
    if (merge_map(&dst->domains, &src->domains, false) != 0)
        return -1;
    return merge_map(&dst->keywords, &src->keywords, false);
}

const char *const mg_stats_total_names[MG_STATS_TOTALS] = {
    "messages", "bytes", "unparseable", "date_fallback", "attachments", "attachment_bytes", "sent"};

void mg_stats_totals(const struct mg_stats *s, uint64_t v[MG_STATS_TOTALS])
{
    const uint64_t t[MG_STATS_TOTALS] = {s->messages,      s->bytes,       s->unparseable,
                                         s->date_fallback, s->attachments, s->attachment_bytes,
                                         s->sent};
    memcpy(v, t, sizeof(t));
}

const char *mg_stats_top_name(const struct mg_strmap_entry *sender)
{
    if (sender->sub == NULL)
        return NULL;
    const struct mg_strmap_entry *best = NULL;
    for (size_t i = 0; i < sender->sub->cap; i++) {
        const struct mg_strmap_entry *n = &sender->sub->slots[i];
        if (n->key == NULL)
            continue;
        if (best == NULL || n->count > best->count ||
            (n->count == best->count && strcmp(n->key, best->key) < 0))
            best = n;
    }
    return best ? best->key : NULL;
}

struct enc {
    struct mg_buf b;
    size_t chunk;
    mg_emit_fn emit;
    void *ctx;
};

static int flush(struct enc *e, bool force)
{
    if (e->b.len == 0 || (!force && e->b.len < e->chunk))
        return 0;
    int rc = e->emit(e->ctx, e->b.data, e->b.len);
    mg_buf_reset(&e->b);
    return rc;
}

static int enc_map(struct enc *e, const struct mg_strmap *m, uint8_t kind)
{
    for (size_t i = 0; i < m->cap; i++) {
        const struct mg_strmap_entry *x = &m->slots[i];
        if (x->key == NULL)
            continue;
        if (mg_buf_put_u8(&e->b, kind) || mg_buf_put_str(&e->b, x->key, x->keylen) ||
            mg_buf_put_u64(&e->b, x->count))
            return -1;
        if ((kind == E_SENDER || kind == E_ATT) && mg_buf_put_u64(&e->b, x->bytes))
            return -1;
        if (kind == E_SENDER && x->sub != NULL) {
            for (size_t k = 0; k < x->sub->cap; k++) {
                const struct mg_strmap_entry *n = &x->sub->slots[k];
                if (n->key == NULL)
                    continue;
                if (mg_buf_put_u8(&e->b, E_SENDER_NAME) ||
                    mg_buf_put_str(&e->b, x->key, x->keylen) ||
                    mg_buf_put_str(&e->b, n->key, n->keylen) || mg_buf_put_u64(&e->b, n->count))
                    return -1;
                if (flush(e, false) != 0)
                    return -1;
            }
        }
        if (flush(e, false) != 0)
            return -1;
    }
    return 0;
}

int mg_stats_encode(const struct mg_stats *s, size_t chunk, mg_emit_fn emit, void *ctx)
{
    struct enc e;
    /* an entry may end past the chunk size: allow one entry of slack */
    mg_buf_init(&e.b, chunk + 2 * MG_STATS_KEY_MAX + 64);
    e.chunk = chunk;
    e.emit = emit;
    e.ctx = ctx;
    int rc = 0;
    if (mg_buf_put_u8(&e.b, E_TOTALS) || mg_buf_put_u64(&e.b, s->messages) ||
        mg_buf_put_u64(&e.b, s->bytes) || mg_buf_put_u64(&e.b, s->unparseable) ||
        mg_buf_put_u64(&e.b, s->date_fallback))
        rc = -1;
    for (uint8_t i = 0; i < 24 && rc == 0; i++)
        if (s->hours[i] && (mg_buf_put_u8(&e.b, E_HOUR) || mg_buf_put_u8(&e.b, i) ||
                            mg_buf_put_u64(&e.b, s->hours[i])))
            rc = -1;
    for (uint8_t i = 0; i < 7 && rc == 0; i++)
        if (s->weekdays[i] && (mg_buf_put_u8(&e.b, E_WDAY) || mg_buf_put_u8(&e.b, i) ||
                               mg_buf_put_u64(&e.b, s->weekdays[i])))
            rc = -1;
    if (rc == 0)
        rc = enc_map(&e, &s->senders, E_SENDER);
    if (rc == 0)
        rc = enc_map(&e, &s->domains, E_DOMAIN);
    if (rc == 0)
        rc = enc_map(&e, &s->keywords, E_KEYWORD);
    if (rc == 0 && (mg_buf_put_u8(&e.b, E_TOTALS2) || mg_buf_put_u64(&e.b, s->attachments) ||
                    mg_buf_put_u64(&e.b, s->attachment_bytes) || mg_buf_put_u64(&e.b, s->sent)))
        rc = -1;
    for (uint8_t d = 0; d < 7 && rc == 0; d++)
        for (uint8_t h = 0; h < 24 && rc == 0; h++)
            if (s->hour_wday[d][h] &&
                (mg_buf_put_u8(&e.b, E_HWD) || mg_buf_put_u8(&e.b, d) || mg_buf_put_u8(&e.b, h) ||
                 mg_buf_put_u64(&e.b, s->hour_wday[d][h])))
                rc = -1;
    for (size_t i = 0; i < s->nlargest && rc == 0; i++) {
        const struct mg_stats_large *l = &s->largest[i];
        if (mg_buf_put_u8(&e.b, E_LARGE) || mg_buf_put_str(&e.b, l->path, strlen(l->path)) ||
            mg_buf_put_u64(&e.b, l->size) || flush(&e, false) != 0)
            rc = -1;
    }
    if (rc == 0)
        rc = enc_map(&e, &s->months, E_MONTH);
    if (rc == 0)
        rc = enc_map(&e, &s->recipients, E_RCPT);
    if (rc == 0)
        rc = enc_map(&e, &s->att_types, E_ATT);
    if (rc == 0)
        rc = enc_map(&e, &s->lists, E_LIST);
    if (rc == 0)
        rc = flush(&e, true);
    mg_buf_finish(&e.b);
    return rc;
}

/* Decode data into s; with s NULL, only check it and count its messages. */
static int decode(struct mg_stats *s, const char *data, size_t len, uint64_t *messages)
{
    struct mg_reader r = {(const uint8_t *)data, len};
    while (r.left > 0) {
        uint8_t kind, idx, hr;
        uint64_t a, b, c, d;
        const char *k, *n;
        size_t kl, nl;
        struct mg_strmap_entry *e;
        if (mg_read_u8(&r, &kind) != 0)
            return -1;
        switch (kind) {
        case E_TOTALS:
            if (mg_read_u64(&r, &a) || mg_read_u64(&r, &b) || mg_read_u64(&r, &c) ||
                mg_read_u64(&r, &d))
                return -1;
            if (s == NULL) {
                *messages += a;
                break;
            }
            s->messages += a;
            s->bytes += b;
            s->unparseable += c;
            s->date_fallback += d;
            break;
        case E_HOUR:
        case E_WDAY:
            if (mg_read_u8(&r, &idx) || mg_read_u64(&r, &a))
                return -1;
            if ((kind == E_HOUR && idx >= 24) || (kind == E_WDAY && idx >= 7))
                return -1;
            if (s == NULL)
                break;
            if (kind == E_HOUR)
                s->hours[idx] += a;
            else
                s->weekdays[idx] += a;
            break;
        case E_SENDER:
            if (mg_read_str(&r, &k, &kl, MG_STATS_KEY_MAX) || mg_read_u64(&r, &a) ||
                mg_read_u64(&r, &b))
                return -1;
            if (s == NULL)
                break;
            e = mg_strmap_get(&s->senders, k, kl, true);
            if (e == NULL)
                return -1;
            e->count += a;
            e->bytes += b;
            break;
        case E_SENDER_NAME:
            if (mg_read_str(&r, &k, &kl, MG_STATS_KEY_MAX) ||
                mg_read_str(&r, &n, &nl, MG_STATS_NAME_MAX) || mg_read_u64(&r, &a))
                return -1;
            if (s == NULL)
                break;
            e = mg_strmap_get(&s->senders, k, kl, true);
            if (e == NULL || add_name(e, n, nl, a) != 0)
                return -1;
            break;
        case E_DOMAIN:
        case E_KEYWORD:
        case E_MONTH:
        case E_RCPT:
        case E_LIST:
            if (mg_read_str(&r, &k, &kl, MG_STATS_KEY_MAX) || mg_read_u64(&r, &a))
                return -1;
            if (s == NULL)
                break;
            if (mg_stats_add_key(kind == E_DOMAIN    ? &s->domains
                                 : kind == E_KEYWORD ? &s->keywords
                                 : kind == E_MONTH   ? &s->months
                                 : kind == E_RCPT    ? &s->recipients
                                                     : &s->lists,
                                 k, kl, a, 0) != 0)
                return -1;
            break;
        case E_ATT:
            if (mg_read_str(&r, &k, &kl, MG_STATS_KEY_MAX) || mg_read_u64(&r, &a) ||
                mg_read_u64(&r, &b))
                return -1;
            if (s != NULL && mg_stats_add_key(&s->att_types, k, kl, a, b) != 0)
                return -1;
            break;
        case E_TOTALS2:
            if (mg_read_u64(&r, &a) || mg_read_u64(&r, &b) || mg_read_u64(&r, &c))
                return -1;
            if (s == NULL)
                break;
            s->attachments += a;
            s->attachment_bytes += b;
            s->sent += c;
            break;
        case E_HWD:
            if (mg_read_u8(&r, &idx) || mg_read_u8(&r, &hr) || mg_read_u64(&r, &a) || idx >= 7 ||
                hr >= 24)
                return -1;
            if (s != NULL)
                s->hour_wday[idx][hr] += a;
            break;
        case E_LARGE:
            if (mg_read_str(&r, &k, &kl, MG_STATS_KEY_MAX) || mg_read_u64(&r, &a) ||
                memchr(k, '\0', kl) != NULL)
                return -1;
            if (s != NULL && mg_stats_add_largest(s, k, kl, a) != 0)
                return -1;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

int mg_stats_decode(struct mg_stats *s, const char *data, size_t len)
{
    return decode(s, data, len, NULL);
}

int mg_stats_check(const char *data, size_t len, uint64_t *messages)
{
    *messages = 0;
    return decode(NULL, data, len, messages);
}
