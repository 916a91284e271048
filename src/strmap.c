/* strmap.c - see include/mailgrab/strmap.h */
#include "mailgrab/strmap.h"

#include <stdlib.h>
#include <string.h>

void mg_strmap_init(struct mg_strmap *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void mg_strmap_finish(struct mg_strmap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
        if (m->slots[i].sub != NULL) {
            mg_strmap_finish(m->slots[i].sub);
            free(m->slots[i].sub);
        }
    }
    free(m->slots);
    mg_strmap_init(m);
}

/* Eight bytes a step, each mixed in by a multiply (the slot order this
 * gives is never seen: every output sorts). */
static uint64_t hash(const char *k, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    for (; n >= 8; k += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, k, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) /* the last 0-7 bytes */
        w |= (uint64_t)(unsigned char)k[i] << (8 * i);
    h = (h ^ w) * 0x94D049BB133111EBULL;
    return h ^ (h >> 29);
}

static int grow(struct mg_strmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    struct mg_strmap_entry *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == NULL)
            continue;
        size_t j = hash(m->slots[i].key, m->slots[i].keylen) & (ncap - 1);
        while (ns[j].key != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

struct mg_strmap_entry *mg_strmap_get(struct mg_strmap *m, const char *key, size_t keylen,
                                      bool create)
{
    uint64_t h = hash(key, keylen);
    if (m->cap > 0) {
        size_t j = h & (m->cap - 1);
        while (m->slots[j].key != NULL) {
            if (m->slots[j].keylen == keylen && memcmp(m->slots[j].key, key, keylen) == 0)
                return &m->slots[j];
            j = (j + 1) & (m->cap - 1);
        }
    }
    if (!create)
        return NULL;
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) != 0)
        return NULL;
    char *k = malloc(keylen + 1);
    if (k == NULL)
        return NULL;
    memcpy(k, key, keylen);
    k[keylen] = '\0';
    size_t j = h & (m->cap - 1);
    while (m->slots[j].key != NULL)
        j = (j + 1) & (m->cap - 1);
    memset(&m->slots[j], 0, sizeof(m->slots[j]));
    m->slots[j].key = k;
    m->slots[j].keylen = keylen;
    m->len++;
    return &m->slots[j];
}

static int cmp_entry(const void *a, const void *b)
{
    const struct mg_strmap_entry *x = *(const struct mg_strmap_entry *const *)a;
    const struct mg_strmap_entry *y = *(const struct mg_strmap_entry *const *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return x->keylen < y->keylen ? -1 : (x->keylen > y->keylen);
}

struct mg_strmap_entry **mg_strmap_sorted(const struct mg_strmap *m, size_t *n)
{
    *n = 0;
    if (m->len == 0)
        return NULL;
    struct mg_strmap_entry **v = malloc(m->len * sizeof(*v));
    if (v == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != NULL)
            v[k++] = &m->slots[i];
    qsort(v, k, sizeof(*v), cmp_entry);
    *n = k;
    return v;
}
