/* textdec.c - see include/mailgrab/textdec.h */
#include "mailgrab/textdec.h"

#include "mailgrab/charconv.h"
#include "mailgrab/utf8.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* windows-1252 0x80..0x9F; 0 marks the five unassigned bytes. */
static const uint16_t cp1252_hi[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178,
};

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    uint32_t cp;
    return mg_utf8_decode(s, n, &cp);
}

/* Length of the run of ASCII bytes at p, eight at a time where it can. */
static size_t ascii_run(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, sizeof(w));
        if (w & 0x8080808080808080ULL)
            break;
        i += 8;
    }
    while (i < n && p[i] < 0x80)
        i++;
    return i;
}

bool mg_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        i += ascii_run(p + i, n - i);
        if (i == n)
            break;
        size_t l = utf8_seq(p + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

static int put_cp1252(struct mg_buf *out, unsigned char c)
{
    if (c == 0)
        return mg_buf_putc(out, ' ');
    if (c < 0x80)
        return mg_buf_putc(out, c);
    if (c < 0xA0) {
        uint16_t cp = cp1252_hi[c - 0x80];
        return mg_buf_put_utf8(out, cp ? cp : 0xFFFD);
    }
    return mg_buf_put_utf8(out, c);
}

/* Copy UTF-8 (validated piecewise) with NUL mapped to space. */
static int put_utf8_clean(const char *in, size_t n, struct mg_buf *out)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        const char *nul = memchr(in + i, '\0', n - i);
        i = nul ? (size_t)(nul - in) : n;
        if (mg_buf_append(out, in + start, i - start) != 0)
            return -1;
        if (i < n) {
            if (mg_buf_putc(out, ' ') != 0)
                return -1;
            i++;
        }
    }
    return 0;
}

int mg_raw_to_utf8(const char *in, size_t n, struct mg_buf *out)
{
    if (mg_utf8_valid(in, n))
        return put_utf8_clean(in, n, out);
    for (size_t i = 0; i < n; i++)
        if (put_cp1252(out, (unsigned char)in[i]) != 0)
            return -1;
    return 0;
}

int mg_base64_decode(const char *in, size_t n, struct mg_buf *out)
{
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+' || c == '-')
            v = 62;
        else if (c == '/' || c == '_')
            v = 63;
        else if (c == '=')
            break;
        else
            continue; /* line breaks and junk are skipped, as readers do */
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (mg_buf_putc(out, (unsigned char)(acc >> bits)) != 0)
                return -1;
            acc &= (1u << bits) - 1;
        }
    }
    return 0;
}

int mg_hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int mg_qp_decode(const char *in, size_t n, bool header_q, struct mg_buf *out)
{
    const unsigned char *p = (const unsigned char *)in;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '_' && header_q) {
            c = ' ';
        } else if (c == '=') {
            if (i + 2 < n && mg_hex_digit(p[i + 1]) >= 0 && mg_hex_digit(p[i + 2]) >= 0) {
                c = (unsigned char)(mg_hex_digit(p[i + 1]) * 16 + mg_hex_digit(p[i + 2]));
                i += 2;
            } else {
                /* soft line break: "=" then optional blanks then (CR)LF */
                size_t j = i + 1;
                while (j < n && (p[j] == ' ' || p[j] == '\t'))
                    j++;
                if (j < n && p[j] == '\r')
                    j++;
                if (j < n && p[j] == '\n') {
                    i = j;
                    continue;
                }
                if (j >= n) {
                    i = n;
                    continue;
                }
                /* a lone '=' stays literal */
            }
        }
        if (mg_buf_putc(out, c) != 0)
            return -1;
    }
    return 0;
}

/* Charset labels that need mapping to what glibc iconv knows, or widening. */
static const char *charset_alias(const char *name)
{
    static const struct {
        const char *label;
        const char *iconv_name;
    } aliases[] = {
        {"iso-8859-1", "WINDOWS-1252"}, /* senders mislabel cp1252 as latin-1 */
        {"latin1", "WINDOWS-1252"},
        {"us-ascii", "WINDOWS-1252"},
        {"ascii", "WINDOWS-1252"},
        {"gb2312", "GB18030"},
        {"gbk", "GB18030"},
        {"ks_c_5601-1987", "CP949"},
        {"euc-kr", "CP949"},
        {"iso-8859-8-i", "ISO-8859-8"},
        {"utf8", "UTF-8"},
        {"x-sjis", "SHIFT_JIS"},
        {"shift-jis", "SHIFT_JIS"},
    };
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcasecmp(name, aliases[i].label) == 0)
            return aliases[i].iconv_name;
    return name;
}

/* Charsets whose bytes below 0x80 are ASCII, one byte a character: text
 * without a byte above converts to itself. */
static bool ascii_superset(const char *cs)
{
    return strncasecmp(cs, "WINDOWS-125", 11) == 0 || strncasecmp(cs, "ISO-8859-", 9) == 0 ||
           strncasecmp(cs, "KOI8-", 5) == 0;
}

int mg_to_utf8(const char *charset, size_t charset_len, const char *in, size_t n,
               struct mg_buf *out)
{
    char name[64];
    if (charset == NULL || charset_len == 0 || charset_len >= sizeof(name))
        return mg_raw_to_utf8(in, n, out);
    for (size_t i = 0; i < charset_len; i++) {
        unsigned char c = (unsigned char)charset[i];
        /* only plausible label characters reach iconv_open */
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return mg_raw_to_utf8(in, n, out);
        name[i] = (char)c;
    }
    name[charset_len] = '\0';
    const char *cs = charset_alias(name);
    if (strcasecmp(cs, "UTF-8") == 0) {
        /* invalid bytes in declared UTF-8 fall back per byte below */
        if (mg_utf8_valid(in, n))
            return put_utf8_clean(in, n, out);
    } else if (ascii_superset(cs) && ascii_run((const unsigned char *)in, n) == n) {
        return put_utf8_clean(in, n, out);
    }
    struct mg_charconv conv;
    if (mg_charconv_acquire(cs, strlen(cs), &conv) != 0)
        return mg_raw_to_utf8(in, n, out);
    iconv_t cd = conv.cd;

    int rc = 0;
    char *ip = (char *)in;
    size_t ileft = n;
    char tmp[4096];
    while (ileft > 0) {
        char *op = tmp;
        size_t oleft = sizeof(tmp);
        size_t r = iconv(cd, &ip, &ileft, &op, &oleft);
        int e = errno;
        if (put_utf8_clean(tmp, (size_t)(op - tmp), out) != 0) {
            rc = -1;
            break;
        }
        if (r != (size_t)-1)
            break;
        if (e == E2BIG)
            continue;
        /* EILSEQ or EINVAL (truncated): replace one byte and go on */
        if (mg_buf_put_utf8(out, 0xFFFD) != 0) {
            rc = -1;
            break;
        }
        ip++;
        ileft--;
    }
    /* flush any shift state (ISO-2022-JP) */
    char *op = tmp;
    size_t oleft = sizeof(tmp);
    iconv(cd, NULL, NULL, &op, &oleft);
    if (rc == 0 && put_utf8_clean(tmp, (size_t)(op - tmp), out) != 0)
        rc = -1;
    mg_charconv_release(&conv);
    return rc;
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Try to read "=?charset?E?text?=" at in[0..n). On success fill the parts and
 * return the word's length; 0 if this is not a well-formed encoded word.
 */
static size_t encoded_word(const char *in, size_t n, const char **cs, size_t *cslen, char *enc,
                           const char **txt, size_t *txtlen)
{
    if (n < 8 || in[0] != '=' || in[1] != '?')
        return 0;
    size_t i = 2;
    while (i < n && in[i] != '?' && !is_ws((unsigned char)in[i]))
        i++;
    if (i >= n || in[i] != '?' || i == 2)
        return 0;
    *cs = in + 2;
    *cslen = i - 2;
    /* RFC 2231 language suffix: charset*lang */
    for (size_t k = 0; k < *cslen; k++)
        if ((*cs)[k] == '*') {
            *cslen = k;
            break;
        }
    i++;
    if (i + 2 >= n || in[i + 1] != '?')
        return 0;
    char e = in[i];
    if (e == 'b' || e == 'B')
        *enc = 'B';
    else if (e == 'q' || e == 'Q')
        *enc = 'Q';
    else
        return 0;
    i += 2;
    size_t start = i;
    while (i + 1 < n && !(in[i] == '?' && in[i + 1] == '=')) {
        /* a space ends a word; real mail violates this rarely enough */
        if (is_ws((unsigned char)in[i]))
            return 0;
        i++;
    }
    if (i + 1 >= n)
        return 0;
    *txt = in + start;
    *txtlen = i - start;
    return i + 2;
}

/*
 * Decoded bytes of a run of adjacent encoded words in one charset. They are
 * converted together because senders split multi-byte characters (and
 * ISO-2022-JP escape sequences) across words.
 */
struct ew_run {
    struct mg_buf bytes;
    char charset[64];
    size_t charset_len;
};

static int run_flush(struct ew_run *r, struct mg_buf *out)
{
    if (r->charset_len == 0 && r->bytes.len == 0)
        return 0;
    int rc = mg_to_utf8(r->charset, r->charset_len, r->bytes.data ? r->bytes.data : "",
                        r->bytes.len, out);
    mg_buf_reset(&r->bytes);
    r->charset_len = 0;
    return rc;
}

int mg_header_decode(const char *in, size_t n, struct mg_buf *out)
{
    size_t i = 0;
    bool prev_encoded = false;
    bool pending_space = false;
    struct ew_run run;
    mg_buf_init(&run.bytes, 64 * 1024);
    run.charset_len = 0;
    int rc = 0;
    size_t lit = 0; /* start of the pending literal run */

    while (i <= n && rc == 0) {
        if (i == n) {
            if (run_flush(&run, out) != 0 || mg_raw_to_utf8(in + lit, i - lit, out) != 0)
                rc = -1;
            break;
        }
        unsigned char c = (unsigned char)in[i];
        if (is_ws(c)) {
            /* flush literal text, then remember one space */
            if (i > lit && mg_raw_to_utf8(in + lit, i - lit, out) != 0) {
                rc = -1;
                break;
            }
            if (i > lit)
                prev_encoded = false;
            while (i < n && is_ws((unsigned char)in[i]))
                i++;
            lit = i;
            pending_space = true;
            continue;
        }
        const char *cs, *txt;
        size_t cslen, txtlen;
        char enc;
        size_t wl = (c == '=') ? encoded_word(in + i, n - i, &cs, &cslen, &enc, &txt, &txtlen) : 0;
        /* a word counts only at a token start, per RFC 2047 section 5 */
        if (wl > 0 && i == lit && cslen < sizeof(run.charset)) {
            bool same = prev_encoded && run.charset_len == cslen &&
                        strncasecmp(run.charset, cs, cslen) == 0;
            if (!same && run_flush(&run, out) != 0) {
                rc = -1;
                break;
            }
            /* whitespace between adjacent encoded words is dropped */
            if (pending_space && !prev_encoded && out->len > 0 && mg_buf_putc(out, ' ') != 0) {
                rc = -1;
                break;
            }
            pending_space = false;
            memcpy(run.charset, cs, cslen);
            run.charset_len = cslen;
            if (enc == 'B')
                mg_base64_decode(txt, txtlen, &run.bytes);
            else
                mg_qp_decode(txt, txtlen, true, &run.bytes);
            prev_encoded = true;
            i += wl;
            lit = i;
            continue;
        }
        if (i == lit && run_flush(&run, out) != 0) {
            rc = -1;
            break;
        }
        if (pending_space) {
            if (out->len > 0 && mg_buf_putc(out, ' ') != 0) {
                rc = -1;
                break;
            }
            pending_space = false;
        }
        prev_encoded = false;
        i++;
    }
    mg_buf_finish(&run.bytes);
    return rc;
}

static const struct {
    const char *name;
    uint32_t cp;
} html_entities[] = {
    {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
    {"nbsp", 0xA0},    {"copy", 0xA9},    {"reg", 0xAE},     {"euro", 0x20AC},  {"hellip", 0x2026},
    {"ndash", 0x2013}, {"mdash", 0x2014}, {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C},
    {"rdquo", 0x201D}, {"auml", 0xE4},    {"ouml", 0xF6},    {"uuml", 0xFC},    {"Auml", 0xC4},
    {"Ouml", 0xD6},    {"Uuml", 0xDC},    {"szlig", 0xDF},   {"eacute", 0xE9},  {"egrave", 0xE8},
    {"ecirc", 0xEA},   {"agrave", 0xE0},  {"aacute", 0xE1},  {"ccedil", 0xE7},  {"ntilde", 0xF1},
    {"oacute", 0xF3},  {"iacute", 0xED},  {"uacute", 0xFA},  {"Eacute", 0xC9},  {"bull", 0x2022},
};

/* Decode an entity at in[0] == '&'; returns bytes consumed (0 = not an entity). */
static size_t html_entity(const char *in, size_t n, uint32_t *cp)
{
    size_t i = 1;
    if (i < n && in[i] == '#') {
        i++;
        bool hex = false;
        if (i < n && (in[i] == 'x' || in[i] == 'X')) {
            hex = true;
            i++;
        }
        uint32_t v = 0;
        size_t digits = 0;
        while (i < n && digits < 8) {
            int d = mg_hex_digit((unsigned char)in[i]);
            if (d < 0 || (!hex && d > 9))
                break;
            v = v * (hex ? 16 : 10) + (uint32_t)d;
            i++;
            digits++;
        }
        if (digits == 0)
            return 0;
        if (i < n && in[i] == ';')
            i++;
        *cp = (v == 0 || v > 0x10FFFF) ? 0xFFFD : v;
        return i;
    }
    size_t start = i;
    while (i < n && i - start < 10 &&
           ((in[i] >= 'a' && in[i] <= 'z') || (in[i] >= 'A' && in[i] <= 'Z')))
        i++;
    if (i == start || i >= n || in[i] != ';')
        return 0;
    for (size_t k = 0; k < sizeof(html_entities) / sizeof(html_entities[0]); k++) {
        if (strlen(html_entities[k].name) == i - start &&
            memcmp(html_entities[k].name, in + start, i - start) == 0) {
            *cp = html_entities[k].cp;
            return i + 1;
        }
    }
    *cp = ' ';
    return i + 1; /* unknown named entity: drop it */
}

static bool starts_ci(const char *p, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && strncasecmp(p, lit, l) == 0;
}

/* Find needle (ASCII, case-insensitive) in p[0..n); returns offset or n. */
static size_t find_ci(const char *p, size_t n, const char *needle)
{
    size_t l = strlen(needle);
    for (size_t i = 0; i + l <= n; i++)
        if (strncasecmp(p + i, needle, l) == 0)
            return i;
    return n;
}

int mg_html_to_text(const char *in, size_t n, struct mg_buf *out)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)in[i];
        if (c == '<') {
            if (starts_ci(in + i, n - i, "<!--")) {
                size_t e = find_ci(in + i + 4, n - i - 4, "-->");
                i = (e >= n - i - 4) ? n : i + 4 + e + 3;
            } else if (starts_ci(in + i, n - i, "<script") || starts_ci(in + i, n - i, "<style")) {
                const char *end = (in[i + 2] == 'c' || in[i + 2] == 'C') ? "</script" : "</style";
                size_t e = find_ci(in + i, n - i, end);
                i += e;
                size_t gt = i;
                while (gt < n && in[gt] != '>')
                    gt++;
                i = gt < n ? gt + 1 : n;
            } else {
                /* a tag: skip to '>' honouring quoted attribute values */
                char q = 0;
                i++;
                while (i < n) {
                    char d = in[i++];
                    if (q != 0) {
                        if (d == q)
                            q = 0;
                    } else if (d == '"' || d == '\'') {
                        q = d;
                    } else if (d == '>') {
                        break;
                    }
                }
            }
            if (mg_buf_putc(out, ' ') != 0)
                return -1;
            continue;
        }
        if (c == '&') {
            uint32_t cp;
            size_t used = html_entity(in + i, n - i, &cp);
            if (used > 0) {
                if (mg_buf_put_utf8(out, cp) != 0)
                    return -1;
                i += used;
                continue;
            }
        }
        if (mg_buf_putc(out, c == 0 ? ' ' : c) != 0)
            return -1;
        i++;
    }
    return 0;
}
