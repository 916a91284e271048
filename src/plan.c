/* plan.c - see include/mailgrab/plan.h */
#include "mailgrab/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mg_msglist_push(struct mg_msglist *l, uint32_t uid, uint32_t size)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        struct mg_msg *v = reallocarray(l->v, cap, sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n].uid = uid;
    l->v[l->n].size = size;
    l->n++;
    return 0;
}

static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = ((const struct mg_msg *)a)->uid, y = ((const struct mg_msg *)b)->uid;
    return (x > y) - (x < y);
}

void mg_msglist_sort(struct mg_msglist *l)
{
    if (l->n < 2)
        return;
    qsort(l->v, l->n, sizeof(*l->v), cmp_uid);
    size_t o = 1;
    for (size_t i = 1; i < l->n; i++)
        if (l->v[i].uid != l->v[o - 1].uid)
            l->v[o++] = l->v[i];
    l->n = o;
}

void mg_msglist_filter(struct mg_msglist *l, bool (*keep)(uint32_t uid, void *ctx), void *ctx)
{
    size_t o = 0;
    for (size_t i = 0; i < l->n; i++)
        if (keep(l->v[i].uid, ctx))
            l->v[o++] = l->v[i];
    l->n = o;
}

void mg_msglist_truncate(struct mg_msglist *l, size_t n)
{
    if (n < l->n)
        l->n = n;
}

uint64_t mg_msglist_bytes(const struct mg_msglist *l)
{
    uint64_t b = 0;
    for (size_t i = 0; i < l->n; i++)
        b += l->v[i].size;
    return b;
}

void mg_msglist_finish(struct mg_msglist *l)
{
    free(l->v);
    memset(l, 0, sizeof(*l));
}

size_t mg_uidset_format(const uint32_t *uids, size_t n, char *buf, size_t cap)
{
    size_t len = 0, i = 0;
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && uids[j + 1] == uids[j] + 1)
            j++;
        char item[32];
        int k;
        if (j == i)
            k = snprintf(item, sizeof(item), "%s%u", len ? "," : "", uids[i]);
        else
            k = snprintf(item, sizeof(item), "%s%u:%u", len ? "," : "", uids[i], uids[j]);
        if (k < 0 || len + (size_t)k + 1 > cap)
            break;
        memcpy(buf + len, item, (size_t)k + 1);
        len += (size_t)k;
        i = j + 1;
    }
    return i;
}

int mg_plan_init(struct mg_plan *p, const struct mg_msglist *msgs, size_t nchunks,
                 unsigned max_attempts)
{
    memset(p, 0, sizeof(*p));
    if (nchunks == 0)
        nchunks = 1;
    p->msgs = msgs;
    p->nchunks = nchunks;
    p->max_attempts = max_attempts ? max_attempts : 1;
    p->max_strikes = MG_PLAN_STRIKES;
    p->chunks = calloc(nchunks, sizeof(*p->chunks));
    p->retry = calloc(msgs->n ? msgs->n : 1, sizeof(*p->retry));
    p->attempts = calloc(msgs->n ? msgs->n : 1, sizeof(*p->attempts));
    p->strikes = calloc(msgs->n ? msgs->n : 1, sizeof(*p->strikes));
    p->suspect = calloc(msgs->n ? msgs->n : 1, sizeof(*p->suspect));
    p->order = calloc(msgs->n ? msgs->n : 1, sizeof(*p->order));
    if (p->chunks == NULL || p->retry == NULL || p->attempts == NULL || p->strikes == NULL ||
        p->suspect == NULL || p->order == NULL) {
        mg_plan_finish(p);
        return -1;
    }
    for (size_t k = 0; k < msgs->n; k++)
        p->order[k] = k;

    /* Cut where the running byte total crosses each k/nchunks of the whole
     * (a message goes to the chunk holding its midpoint). Each message weighs
     * at least one byte so empty ones still spread, and while there are enough
     * messages every chunk gets at least one. */
    uint64_t total = 0;
    for (size_t i = 0; i < msgs->n; i++)
        total += (uint64_t)msgs->v[i].size + 1;
    size_t i = 0;
    uint64_t run = 0;
    for (size_t c = 0; c < nchunks; c++) {
        size_t after = nchunks - c - 1;
        uint64_t goal = total * (c + 1) / nchunks;
        p->chunks[c].lo = i;
        while (i < msgs->n) {
            uint64_t w = (uint64_t)msgs->v[i].size + 1;
            bool first = i == p->chunks[c].lo;
            if (after > 0 && !first && msgs->n - i <= after)
                break;
            if (after > 0 && !first && run + w / 2 >= goal)
                break;
            run += w;
            p->chunks[c].bytes += msgs->v[i].size;
            i++;
        }
        p->chunks[c].hi = i;
    }
    return 0;
}

void mg_plan_finish(struct mg_plan *p)
{
    free(p->chunks);
    free(p->retry);
    free(p->attempts);
    free(p->strikes);
    free(p->suspect);
    free(p->order);
    memset(p, 0, sizeof(*p));
}

/* Give worker w the back half of the chunk with the most bytes left. */
static bool steal(struct mg_plan *p, size_t w)
{
    size_t best = p->nchunks;
    for (size_t c = 0; c < p->nchunks; c++)
        if (p->chunks[c].hi > p->chunks[c].lo &&
            (best == p->nchunks || p->chunks[c].bytes > p->chunks[best].bytes))
            best = c;
    if (best == p->nchunks)
        return false;
    struct mg_chunk *v = &p->chunks[best];
    size_t n = v->hi - v->lo;
    size_t mid = v->lo + n / 2; /* a single message moves whole */
    uint64_t moved = 0;
    for (size_t i = mid; i < v->hi; i++)
        moved += p->msgs->v[p->order[i]].size;
    p->chunks[w].lo = mid;
    p->chunks[w].hi = v->hi;
    p->chunks[w].bytes = moved;
    v->hi = mid;
    v->bytes -= moved;
    return true;
}

size_t mg_plan_take(struct mg_plan *p, size_t w, size_t max_n, uint64_t max_bytes, size_t *out)
{
    size_t n = 0;
    uint64_t bytes = 0;
    if (max_n == 0 || w >= p->nchunks)
        return 0;

    /* A suspect first, alone: fetched with others it could take them down
     * with it again. */
    for (size_t i = p->nretry; p->nsuspect > 0 && i-- > 0;) {
        size_t idx = p->retry[i];
        if (!p->suspect[idx])
            continue;
        p->retry[i] = p->retry[--p->nretry];
        p->nsuspect--;
        out[0] = idx;
        return 1;
    }

    /* Retries next: they are the oldest work. */
    while (p->nretry > 0 && n < max_n && (n == 0 || bytes < max_bytes)) {
        size_t idx = p->retry[--p->nretry];
        out[n++] = idx;
        bytes += p->msgs->v[idx].size;
    }
    if (n > 0)
        return n;

    struct mg_chunk *c = &p->chunks[w];
    if (c->lo == c->hi && !steal(p, w))
        return 0;
    while (c->lo < c->hi && n < max_n && (n == 0 || bytes < max_bytes)) {
        uint32_t sz = p->msgs->v[p->order[c->lo]].size;
        if (n > 0 && bytes + sz > max_bytes)
            break;
        out[n++] = p->order[c->lo];
        bytes += sz;
        c->bytes -= sz;
        c->lo++;
    }
    return n;
}

size_t mg_plan_take_big(struct mg_plan *p, size_t w, uint32_t min_size, size_t *out)
{
    if (w >= p->nchunks)
        return 0;
    struct mg_chunk *c = &p->chunks[w];
    size_t best = c->hi;
    for (size_t i = c->lo; i < c->hi; i++) {
        uint32_t sz = p->msgs->v[p->order[i]].size;
        if (sz >= min_size && (best == c->hi || sz > p->msgs->v[p->order[best]].size))
            best = i;
    }
    if (best == c->hi)
        return 0;
    /* Swap it to the front of the chunk and hand it out from there. */
    size_t idx = p->order[best];
    p->order[best] = p->order[c->lo];
    p->order[c->lo] = idx;
    c->bytes -= p->msgs->v[idx].size;
    c->lo++;
    out[0] = idx;
    return 1;
}

bool mg_plan_requeue(struct mg_plan *p, size_t idx)
{
    if (++p->attempts[idx] >= p->max_attempts)
        return false;
    mg_plan_return(p, idx);
    return true;
}

void mg_plan_return(struct mg_plan *p, size_t idx)
{
    p->retry[p->nretry++] = idx;
    if (p->suspect[idx])
        p->nsuspect++;
}

void mg_plan_suspect(struct mg_plan *p, size_t idx)
{
    p->suspect[idx] = true;
    mg_plan_return(p, idx);
}

bool mg_plan_is_suspect(const struct mg_plan *p, size_t idx)
{
    return p->suspect[idx];
}

bool mg_plan_strike(struct mg_plan *p, size_t idx)
{
    if (++p->strikes[idx] >= p->max_strikes)
        return false;
    mg_plan_suspect(p, idx);
    return true;
}

unsigned mg_plan_strikes(const struct mg_plan *p, size_t idx)
{
    return p->strikes[idx];
}

size_t mg_plan_pending(const struct mg_plan *p)
{
    size_t n = p->nretry;
    for (size_t c = 0; c < p->nchunks; c++)
        n += p->chunks[c].hi - p->chunks[c].lo;
    return n;
}

void mg_plan_size_init(struct mg_plan_size *s, size_t first_msgs, uint64_t first_bytes,
                       size_t max_msgs, uint64_t max_bytes)
{
    s->max_msgs = max_msgs ? max_msgs : 1;
    s->max_bytes = max_bytes ? max_bytes : 1;
    s->msgs = first_msgs < s->max_msgs ? first_msgs : s->max_msgs;
    s->bytes = first_bytes < s->max_bytes ? first_bytes : s->max_bytes;
    if (s->msgs == 0)
        s->msgs = 1;
    if (s->bytes == 0)
        s->bytes = 1;
}

void mg_plan_size_grow(struct mg_plan_size *s)
{
    s->msgs = s->msgs <= s->max_msgs / 2 ? s->msgs * 2 : s->max_msgs;
    s->bytes = s->bytes <= s->max_bytes / 2 ? s->bytes * 2 : s->max_bytes;
}

void mg_plan_size_halve(struct mg_plan_size *s)
{
    uint64_t floor = MG_PLAN_MIN_BYTES < s->max_bytes ? MG_PLAN_MIN_BYTES : s->max_bytes;
    s->msgs = s->msgs > 1 ? s->msgs / 2 : 1;
    s->bytes = s->bytes / 2 > floor ? s->bytes / 2 : floor;
}
