/* wordcount.c - see include/mailgrab/wordcount.h */
#include "mailgrab/wordcount.h"

#include "mailgrab/utf8.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailgrab/buf.h"

extern const char mg_default_stopwords[];
extern const size_t mg_default_stopwords_len;

uint32_t mg_cp_lower(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
        return c + 32;
    if (c == 0x130)
        return 'i';
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177))
        return c | 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
        return (c & 1) ? c + 1 : c;
    if (c == 0x178)
        return 0xFF;
    if (c >= 0x1CD && c <= 0x1DC)
        return (c & 1) ? c + 1 : c;
    if (c == 0x386)
        return 0x3AC;
    if (c >= 0x388 && c <= 0x38A)
        return c + 37;
    if (c == 0x38C)
        return 0x3CC;
    if (c == 0x38E || c == 0x38F)
        return c + 63;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2)
        return c + 32;
    if (c >= 0x400 && c <= 0x40F)
        return c + 80;
    if (c >= 0x410 && c <= 0x42F)
        return c + 32;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F))
        return c | 1;
    if (c == 0x4C0)
        return 0x4CF;
    if (c >= 0x4C1 && c <= 0x4CE)
        return (c & 1) ? c + 1 : c;
    if ((c >= 0x1E00 && c <= 0x1E95) || (c >= 0x1EA0 && c <= 0x1EFF))
        return c | 1;
    return c;
}

/* Letters, digits and combining marks; punctuation and symbol blocks are not. */
static bool is_word_cp(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c < 0xC0)
        return c == 0xAA || c == 0xB5 || c == 0xBA;
    if (c == 0xD7 || c == 0xF7)
        return false;
    if (c < 0x370)
        return true; /* Latin Extended, IPA, modifiers, combining marks */
    if (c < 0x400)
        return c != 0x375 && c != 0x37E && c != 0x384 && c != 0x385 && c != 0x387;
    if (c < 0x530)
        return c < 0x482 || c > 0x489;
    if (c >= 0x2000 && c <= 0x2BFF)
        return false; /* punctuation, symbols, arrows, dingbats */
    if (c >= 0x2E00 && c <= 0x2E7F)
        return false;
    if (c >= 0x3000 && c <= 0x303F)
        return false;
    if ((c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFF0F) ||
        (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) ||
        (c >= 0xFF5B && c <= 0xFF65) || c >= 0xFFF0)
        return false;
    if (c >= 0x1F000)
        return false; /* emoji and pictographs */
    return true;
}

/* Decode one UTF-8 code point; invalid bytes read as U+FFFD of length 1. */
static uint32_t next_cp(const unsigned char *s, size_t n, size_t *len)
{
    uint32_t cp;
    *len = mg_utf8_decode(s, n, &cp);
    if (*len == 0) {
        *len = 1;
        return 0xFFFD;
    }
    return cp;
}

static bool is_space_cp(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v' || c == 0xA0 ||
           c == 0x2028 || c == 0x2029 || c == 0x3000 || (c >= 0x2000 && c <= 0x200B);
}

static inline bool ascii_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r'); /* what is_space_cp takes below 0x80 */
}

static inline bool ascii_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Like next_cp, with ASCII (most of any text) decoded in line. */
static inline uint32_t cp_at(const unsigned char *s, size_t n, size_t *len)
{
    if (s[0] < 0x80) {
        *len = 1;
        return s[0];
    }
    return next_cp(s, n, len);
}

/* A whitespace-delimited chunk that is a URL or an address is skipped whole.
 * at and colon: whether the chunk holds an '@' or a ':'. */
static bool chunk_is_link(const char *s, size_t n, bool at, bool colon)
{
    if (at)
        return true;
    for (const char *c = colon ? memchr(s, ':', n) : NULL; c != NULL;
         c = memchr(c + 1, ':', (size_t)(s + n - c - 1)))
        if (s + n - c >= 3 && c[1] == '/' && c[2] == '/')
            return true;
    /* leading punctuation such as '<' or '(' before www. */
    size_t i = 0;
    while (i < n && (s[i] == '<' || s[i] == '(' || s[i] == '[' || s[i] == '"' || s[i] == '\''))
        i++;
    if (n - i >= 4 && (s[i] | 0x20) == 'w' && strncasecmp(s + i, "www.", 4) == 0)
        return true;
    if (colon && n - i >= 7 && strncasecmp(s + i, "mailto:", 7) == 0)
        return true;
    return false;
}

/* The word being read: its lower-cased UTF-8, at most WORD_BYTES bytes; one
 * that would be longer is failed (and dropped as too long). */
#define WORD_BYTES (4 * (MG_WORD_MAX + 2))

struct word {
    char b[WORD_BYTES + 1];
    size_t len;
    bool failed;
};

static int word_put(struct word *w, const char *s, size_t n)
{
    if (w->failed || n > WORD_BYTES - w->len) {
        w->failed = true;
        return -1;
    }
    memcpy(w->b + w->len, s, n);
    w->len += n;
    return 0;
}

static int word_put_cp(struct word *w, uint32_t c)
{
    if (c < 0x80) {
        char ch = (char)c;
        return word_put(w, &ch, 1);
    }
    unsigned char enc[4];
    size_t n = mg_utf8_encode(c, enc);
    return word_put(w, (const char *)enc, n);
}

static int add_word(const struct word *w, size_t cps, bool has_alpha, const struct mg_stopwords *sw,
                    struct mg_strmap *set)
{
    if (cps < MG_WORD_MIN || cps > MG_WORD_MAX || !has_alpha)
        return 0;
    if (sw != NULL && mg_strmap_get((struct mg_strmap *)&sw->words, w->b, w->len, false))
        return 0;
    if (set->len >= MG_WORDS_PER_MSG && mg_strmap_get(set, w->b, w->len, false) == NULL)
        return 0;
    struct mg_strmap_entry *e = mg_strmap_get(set, w->b, w->len, true);
    if (e == NULL)
        return -1;
    e->count = 1;
    return 0;
}

static int collect_chunk(const char *s, size_t n, const struct mg_stopwords *sw,
                         struct mg_strmap *set, struct word *w)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, cps = 0;
    bool has_alpha = false;
    uint32_t prev = 0;
    w->len = 0;
    w->failed = false;
    while (i <= n) {
        if (i < n && ascii_alnum(p[i])) { /* the common case, in line */
            char ch = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
            if (word_put(w, &ch, 1) != 0)
                cps = MG_WORD_MAX + 1;
            cps++;
            if (!(ch >= '0' && ch <= '9'))
                has_alpha = true;
            prev = (uint32_t)ch;
            i++;
            continue;
        }
        size_t l = 1;
        uint32_t c = i < n ? cp_at(p + i, n - i, &l) : ' ';
        if (i < n && is_word_cp(c)) {
            c = mg_cp_lower(c);
            if (word_put_cp(w, c) != 0)
                cps = MG_WORD_MAX + 1; /* absurdly long: just drop it */
            cps++;
            if (!(c >= '0' && c <= '9'))
                has_alpha = true;
            prev = c;
            i += l;
            continue;
        }
        /* an apostrophe between letters stays inside the word: don't, l'homme */
        if ((c == '\'' || c == 0x2019) && cps > 0 && prev != '\'' && i + l < n) {
            size_t l2;
            uint32_t nx = cp_at(p + i + l, n - i - l, &l2);
            if (is_word_cp(nx) && !(nx >= '0' && nx <= '9')) {
                word_put(w, "'", 1);
                prev = '\'';
                i += l;
                continue;
            }
        }
        if (cps > 0 && add_word(w, cps, has_alpha, sw, set) != 0)
            return -1;
        w->len = 0;
        w->failed = false;
        cps = 0;
        has_alpha = false;
        prev = 0;
        i += l;
    }
    return 0;
}

int mg_words_collect(const char *text, size_t n, const struct mg_stopwords *sw,
                     struct mg_strmap *set)
{
    struct word w;
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        size_t l;
        while (i < n && (p[i] < 0x80 ? ascii_space(p[i]) : is_space_cp(cp_at(p + i, n - i, &l))))
            i += p[i] < 0x80 ? 1 : l;
        size_t st = i;
        bool at = false, colon = false;
        while (i < n && !(p[i] < 0x80 ? ascii_space(p[i]) : is_space_cp(cp_at(p + i, n - i, &l)))) {
            at |= p[i] == '@';
            colon |= p[i] == ':';
            i += p[i] < 0x80 ? 1 : l;
        }
        if (i > st && !chunk_is_link(text + st, i - st, at, colon))
            rc = collect_chunk(text + st, i - st, sw, set, &w);
    }
    return rc;
}

int mg_stopwords_load(struct mg_stopwords *sw, const char *text, size_t n)
{
    mg_strmap_init(&sw->words);
    struct mg_buf w;
    mg_buf_init(&w, 4 * (MG_WORD_MAX + 2));
    size_t i = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - text) : n;
        size_t s = i;
        while (s < e && (text[s] == ' ' || text[s] == '\t'))
            s++;
        size_t t = e;
        while (t > s && (text[t - 1] == ' ' || text[t - 1] == '\t' || text[t - 1] == '\r'))
            t--;
        if (t > s && text[s] != '#') {
            mg_buf_reset(&w);
            const unsigned char *p = (const unsigned char *)text;
            for (size_t k = s; k < t;) {
                size_t l;
                uint32_t c = next_cp(p + k, t - k, &l);
                if (c == 0x2019)
                    c = '\'';
                if (mg_buf_put_utf8(&w, mg_cp_lower(c)) != 0)
                    break;
                k += l;
            }
            if (w.len > 0 && mg_strmap_get(&sw->words, w.data, w.len, true) == NULL)
                rc = -1;
        }
        i = e + 1;
    }
    mg_buf_finish(&w);
    if (rc != 0)
        mg_stopwords_finish(sw);
    return rc;
}

int mg_stopwords_default(struct mg_stopwords *sw)
{
    return mg_stopwords_load(sw, mg_default_stopwords, mg_default_stopwords_len);
}

int mg_stopwords_file(struct mg_stopwords *sw, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    struct mg_buf b;
    mg_buf_init(&b, 16 * 1024 * 1024);
    char chunk[8192];
    size_t got;
    int rc = 0;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (mg_buf_append(&b, chunk, got) != 0) {
            rc = -1;
            break;
        }
    if (ferror(f))
        rc = -1;
    fclose(f);
    if (rc == 0)
        rc = mg_stopwords_load(sw, b.data ? b.data : "", b.len);
    mg_buf_finish(&b);
    return rc;
}

void mg_stopwords_finish(struct mg_stopwords *sw)
{
    mg_strmap_finish(&sw->words);
}
