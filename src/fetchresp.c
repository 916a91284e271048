/* fetchresp.c - see include/mailgrab/fetchresp.h */
#include "mailgrab/fetchresp.h"

#include <string.h>
#include <strings.h>

struct cur {
    const char *p, *end;
};

static bool at(const struct cur *c, char ch)
{
    return c->p < c->end && *c->p == ch;
}

static bool eat(struct cur *c, char ch)
{
    if (!at(c, ch))
        return false;
    c->p++;
    return true;
}

/* An atom's characters, as servers use them in FETCH items: flags (\Seen),
 * item names (RFC822.SIZE, X-GM-LABELS) and Gmail's unquoted labels. */
static bool atom_char(char ch)
{
    unsigned char u = (unsigned char)ch;
    return u > 0x20 && u < 0x7f && ch != '(' && ch != ')' && ch != '{' && ch != '"' && ch != '%' &&
           ch != '*' && ch != ']';
}

static bool atom(struct cur *c, const char **s, size_t *n)
{
    const char *b = c->p;
    while (c->p < c->end && atom_char(*c->p))
        c->p++;
    *s = b;
    *n = (size_t)(c->p - b);
    return *n > 0;
}

static bool number64(struct cur *c, uint64_t *v)
{
    const char *b = c->p;
    uint64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        c->p++;
    }
    *v = x;
    return c->p > b;
}

static bool number32(struct cur *c, uint32_t *v)
{
    uint64_t x;
    if (!number64(c, &x) || x > UINT32_MAX)
        return false;
    *v = (uint32_t)x;
    return true;
}

/* A quoted string or a literal, unescaped into out (cap, NUL added), or
 * skipped when out is NULL. */
static bool string(struct cur *c, char *out, size_t cap, size_t *len)
{
    size_t n = 0;
    if (eat(c, '"')) {
        for (;;) {
            if (c->p >= c->end)
                return false;
            char ch = *c->p++;
            if (ch == '"')
                break;
            if (ch == '\\') {
                if (c->p >= c->end || (*c->p != '\\' && *c->p != '"'))
                    return false;
                ch = *c->p++;
            }
            if (ch == '\r' || ch == '\n')
                return false;
            if (out != NULL) {
                if (n + 1 >= cap)
                    return false;
                out[n] = ch;
            }
            n++;
        }
    } else if (eat(c, '{')) {
        uint64_t size;
        if (!number64(c, &size) || !eat(c, '}') || !eat(c, '\r') || !eat(c, '\n') ||
            size > (uint64_t)(c->end - c->p))
            return false;
        if (out != NULL) {
            if (size + 1 > cap)
                return false;
            memcpy(out, c->p, (size_t)size);
        }
        c->p += size;
        n = (size_t)size;
    } else {
        return false;
    }
    if (out != NULL)
        out[n] = '\0';
    if (len != NULL)
        *len = n;
    return true;
}

/* Skip one value of an item we do not use. */
static bool skip(struct cur *c, unsigned depth)
{
    if (depth > 8)
        return false;
    if (eat(c, '(')) {
        if (eat(c, ')'))
            return true;
        for (;;) {
            if (!skip(c, depth + 1))
                return false;
            if (eat(c, ')'))
                return true;
            if (!eat(c, ' '))
                return false;
        }
    }
    if (at(c, '"') || at(c, '{'))
        return string(c, NULL, 0, NULL);
    const char *s;
    size_t n;
    return atom(c, &s, &n);
}

static bool flags(struct cur *c, char *out)
{
    static const struct {
        const char *name;
        char letter;
    } map[] = {{"\\Draft", 'D'},
               {"\\Flagged", 'F'},
               {"\\Answered", 'R'},
               {"\\Seen", 'S'},
               {"\\Deleted", 'T'}};
    bool has[5] = {false};
    if (!eat(c, '('))
        return false;
    while (!eat(c, ')')) {
        const char *s;
        size_t n;
        if (!atom(c, &s, &n))
            return false;
        for (size_t i = 0; i < 5; i++)
            if (strlen(map[i].name) == n && strncasecmp(s, map[i].name, n) == 0)
                has[i] = true;
        if (!at(c, ')') && !eat(c, ' '))
            return false;
    }
    size_t k = 0;
    for (size_t i = 0; i < 5; i++)
        if (has[i])
            out[k++] = map[i].letter;
    out[k] = '\0';
    return true;
}

static bool labels(struct cur *c, struct mg_fetchresp *r, char *buf, size_t cap)
{
    if (!eat(c, '('))
        return false;
    r->labels = buf;
    r->nlabels = 0;
    r->labels_len = 0;
    while (!eat(c, ')')) {
        size_t room = cap - r->labels_len, n;
        if (at(c, '"') || at(c, '{')) {
            if (!string(c, buf + r->labels_len, room, &n) || memchr(buf + r->labels_len, 0, n))
                return false;
        } else {
            const char *s;
            if (!atom(c, &s, &n) || n + 1 > room)
                return false;
            memcpy(buf + r->labels_len, s, n);
            buf[r->labels_len + n] = '\0';
        }
        r->labels_len += n + 1;
        r->nlabels++;
        if (!at(c, ')') && !eat(c, ' '))
            return false;
    }
    return true;
}

static int month(const char *s)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (strncasecmp(s, names + 3 * i, 3) == 0)
            return i;
    return -1;
}

static bool digits(const char *s, size_t n, int *v)
{
    int x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return true;
}

time_t mg_imap_datetime(const char *s, size_t len)
{
    /* date-day-fixed "-" date-month "-" date-year SP time SP zone:
     * " 2-Jan-2024 03:04:05 +0000" or "02-Jan-2024 ..." (26 chars). */
    if (len != 26)
        return (time_t)-1;
    int day, year, hh, mm, ss, zh, zm;
    int mon = month(s + 3);
    bool ok = (s[0] == ' ' ? digits(s + 1, 1, &day) : digits(s, 2, &day)) && s[2] == '-' &&
              mon >= 0 && s[6] == '-' && digits(s + 7, 4, &year) && s[11] == ' ' &&
              digits(s + 12, 2, &hh) && s[14] == ':' && digits(s + 15, 2, &mm) && s[17] == ':' &&
              digits(s + 18, 2, &ss) && s[20] == ' ' && (s[21] == '+' || s[21] == '-') &&
              digits(s + 22, 2, &zh) && digits(s + 24, 2, &zm);
    if (!ok || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zm > 59 || year < 1970)
        return (time_t)-1;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = mon,
                    .tm_mday = day,
                    .tm_hour = hh,
                    .tm_min = mm,
                    .tm_sec = ss};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return t;
    long off = (zh * 60L + zm) * 60L;
    return s[21] == '+' ? t - off : t + off;
}

static bool item_is(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

enum mg_fetchresp_result mg_fetchresp_parse(const char *p, size_t len, struct mg_fetchresp *out,
                                            char *lbuf, size_t cap)
{
    memset(out, 0, sizeof(*out));
    out->internaldate = (time_t)-1;
    struct cur c = {p, p + len};
    if (!eat(&c, '*') || !eat(&c, ' '))
        return MG_FETCHRESP_MALFORMED;
    const char *s;
    size_t n;
    if (!number32(&c, &out->seq) || !eat(&c, ' ') || !atom(&c, &s, &n) || !item_is(s, n, "FETCH")) {
        return MG_FETCHRESP_OTHER;
    }
    if (!eat(&c, ' ') || !eat(&c, '('))
        return MG_FETCHRESP_MALFORMED;
    while (!eat(&c, ')')) {
        if (!atom(&c, &s, &n) || !eat(&c, ' '))
            return MG_FETCHRESP_MALFORMED;
        bool ok;
        if (item_is(s, n, "UID"))
            ok = out->has_uid = number32(&c, &out->uid);
        else if (item_is(s, n, "RFC822.SIZE"))
            ok = out->has_size = number32(&c, &out->size);
        else if (item_is(s, n, "X-GM-MSGID"))
            ok = out->has_msgid = number64(&c, &out->msgid);
        else if (item_is(s, n, "X-GM-THRID"))
            ok = out->has_thrid = number64(&c, &out->thrid);
        else if (item_is(s, n, "MODSEQ"))
            ok = out->has_modseq = eat(&c, '(') && number64(&c, &out->modseq) && eat(&c, ')');
        else if (item_is(s, n, "FLAGS"))
            ok = out->has_flags = flags(&c, out->flags);
        else if (item_is(s, n, "X-GM-LABELS"))
            ok = out->has_labels = labels(&c, out, lbuf, cap);
        else if (item_is(s, n, "INTERNALDATE")) {
            char d[32];
            size_t dl;
            ok = string(&c, d, sizeof(d), &dl);
            if (ok) {
                out->internaldate = mg_imap_datetime(d, dl);
                out->has_date = out->internaldate != (time_t)-1;
            }
        } else
            ok = skip(&c, 0);
        if (!ok)
            return MG_FETCHRESP_MALFORMED;
        if (!at(&c, ')') && !eat(&c, ' '))
            return MG_FETCHRESP_MALFORMED;
    }
    return c.p == c.end ? MG_FETCHRESP_OK : MG_FETCHRESP_MALFORMED;
}
