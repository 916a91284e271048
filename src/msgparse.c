/* msgparse.c - see include/mailgrab/msgparse.h */
#include "mailgrab/msgparse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailgrab/buf.h"
#include "mailgrab/datetime.h"
#include "mailgrab/textdec.h"

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* A field name: printable ASCII except ':', then optional blanks and ':'. */
static size_t field_name_len(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (unsigned char)p[i] > 32 && (unsigned char)p[i] < 127 && p[i] != ':')
        i++;
    if (i == 0)
        return 0;
    size_t name = i;
    while (i < n && is_wsp(p[i]))
        i++;
    if (i >= n || p[i] != ':')
        return 0;
    return name;
}

/*
 * Split at the first empty line. The header block excludes the blank line. If
 * the header would exceed limit, it is cut at limit and the body is empty.
 */
static void split_header(const char *p, size_t n, size_t limit, const char **hdr, size_t *hdrlen,
                         const char **body, size_t *bodylen, unsigned *flags)
{
    size_t pos = 0;
    *hdr = p;
    while (pos < n) {
        if (pos > limit) {
            *hdrlen = limit;
            *body = p + n;
            *bodylen = 0;
            *flags |= MG_MSG_HEADER_LIMIT;
            return;
        }
        const char *nl = memchr(p + pos, '\n', n - pos);
        size_t e = nl ? (size_t)(nl - p) : n;
        size_t linelen = e - pos;
        if (linelen == 0 || (linelen == 1 && p[pos] == '\r')) {
            *hdrlen = pos;
            *body = nl ? nl + 1 : p + n;
            *bodylen = n - (size_t)(*body - p);
            return;
        }
        pos = nl ? e + 1 : n;
    }
    if (n > limit) {
        *hdrlen = limit;
        *flags |= MG_MSG_HEADER_LIMIT;
    } else {
        *hdrlen = n;
    }
    *body = p + n;
    *bodylen = 0;
}

int mg_header_find(const char *hdr, size_t hdrlen, const char *name, const char **val,
                   size_t *vallen)
{
    size_t nlen = strlen(name);
    /* a line whose first byte cannot start name is passed over at a glance:
     * bytes equal but for case are still equal once 0x20 is or-ed in */
    char first = (char)(name[0] | 0x20);
    size_t pos = 0;
    while (pos < hdrlen) {
        const char *nl = memchr(hdr + pos, '\n', hdrlen - pos);
        size_t e = nl ? (size_t)(nl - hdr) : hdrlen;
        if ((char)(hdr[pos] | 0x20) != first) {
            pos = nl ? e + 1 : hdrlen;
            continue;
        }
        size_t fl = field_name_len(hdr + pos, e - pos);
        if (fl == nlen && strncasecmp(hdr + pos, name, nlen) == 0) {
            const char *colon = memchr(hdr + pos, ':', e - pos);
            size_t vs = (size_t)(colon - hdr) + 1;
            /* extend over continuation lines */
            size_t end = e;
            while (end + 1 < hdrlen && is_wsp(hdr[end + 1])) {
                const char *nl2 = memchr(hdr + end + 1, '\n', hdrlen - end - 1);
                end = nl2 ? (size_t)(nl2 - hdr) : hdrlen;
            }
            while (end > vs && (hdr[end - 1] == '\r' || hdr[end - 1] == '\n'))
                end--;
            while (vs < end && is_wsp(hdr[vs]))
                vs++;
            if (end - vs > MG_MSG_MAX_FIELD)
                end = vs + MG_MSG_MAX_FIELD;
            *val = hdr + vs;
            *vallen = end - vs;
            return 0;
        }
        pos = nl ? e + 1 : hdrlen;
    }
    return -1;
}

static char *dup_trimmed(struct mg_buf *b, size_t *len, bool quotes)
{
    size_t s = 0, e = b->len;
    while (s < e && (b->data[s] == ' ' || (quotes && b->data[s] == '"')))
        s++;
    while (e > s && (b->data[e - 1] == ' ' || (quotes && b->data[e - 1] == '"')))
        e--;
    if (e == s)
        return NULL;
    char *r = malloc(e - s + 1);
    if (r == NULL)
        return NULL;
    memcpy(r, b->data + s, e - s);
    r[e - s] = '\0';
    *len = e - s;
    return r;
}

/* Keep an addr-spec only if it looks like local@domain with no controls. */
static bool addr_plausible(const char *a, size_t n)
{
    const char *at = NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c < 32 || c == 127)
            return false;
        if (c == '@')
            at = a + i;
    }
    return at != NULL && at > a && at < a + n - 1 && n <= 512;
}

int mg_address_parse(const char *val, size_t n, char **addr, size_t *addrlen, char **name,
                     size_t *namelen)
{
    struct mg_buf phrase, spec, comment, tmp;
    mg_buf_init(&phrase, MG_MSG_MAX_FIELD);
    mg_buf_init(&spec, MG_MSG_MAX_FIELD);
    mg_buf_init(&comment, MG_MSG_MAX_FIELD);
    mg_buf_init(&tmp, 4 * MG_MSG_MAX_FIELD);
    *addr = NULL;
    *name = NULL;
    *addrlen = 0;
    *namelen = 0;
    const char *found = NULL;
    size_t foundlen = 0;
    bool angle = false;

    size_t i = 0;
    while (i <= n && found == NULL) {
        char c = i < n ? val[i] : ',';
        if (c == '"') {
            mg_buf_putc(&spec, '"');
            for (i++; i < n && val[i] != '"'; i++) {
                if (val[i] == '\\' && i + 1 < n)
                    i++;
                mg_buf_putc(&phrase, (unsigned char)val[i]);
                mg_buf_putc(&spec, (unsigned char)val[i]);
            }
            mg_buf_putc(&spec, '"');
            i++;
        } else if (c == '(') {
            int depth = 1;
            bool keep = comment.len == 0;
            for (i++; i < n && depth > 0; i++) {
                if (val[i] == '\\' && i + 1 < n) {
                    i++;
                } else if (val[i] == '(') {
                    depth++;
                } else if (val[i] == ')') {
                    depth--;
                    if (depth == 0)
                        break;
                }
                if (keep)
                    mg_buf_putc(&comment, (unsigned char)val[i]);
            }
            i++;
        } else if (c == '<') {
            size_t s = i + 1;
            const char *gt = memchr(val + s, '>', n - s);
            size_t e = gt ? (size_t)(gt - val) : n;
            /* drop an obsolete route "@a,@b:" and any blanks or comments */
            mg_buf_reset(&spec);
            int depth = 0;
            for (size_t k = s; k < e; k++) {
                char d = val[k];
                if (d == '(')
                    depth++;
                else if (d == ')' && depth > 0)
                    depth--;
                else if (depth == 0 && (unsigned char)d > 32)
                    mg_buf_putc(&spec, (unsigned char)d);
            }
            if (spec.len > 0 && spec.data[0] == '@') {
                char *colon = memchr(spec.data, ':', spec.len);
                if (colon != NULL) {
                    size_t skip = (size_t)(colon - spec.data) + 1;
                    memmove(spec.data, spec.data + skip, spec.len - skip);
                    spec.len -= skip;
                }
            }
            i = gt ? e + 1 : n + 1;
            if (spec.len > 0) {
                found = spec.data;
                foundlen = spec.len;
                angle = true;
            } else {
                mg_buf_reset(&phrase); /* "<>": an empty mailbox, try the next */
                mg_buf_reset(&comment);
            }
        } else if (c == ':') {
            /* a group name is not a display name */
            mg_buf_reset(&phrase);
            mg_buf_reset(&spec);
            mg_buf_reset(&comment);
            i++;
        } else if (c == ',' || c == ';') {
            if (spec.len > 0 && memchr(spec.data, '@', spec.len) != NULL) {
                found = spec.data;
                foundlen = spec.len;
            } else {
                mg_buf_reset(&phrase);
                mg_buf_reset(&spec);
                mg_buf_reset(&comment);
                i++;
            }
        } else {
            if ((unsigned char)c <= 32) {
                if (phrase.len > 0 && phrase.data[phrase.len - 1] != ' ')
                    mg_buf_putc(&phrase, ' ');
            } else {
                mg_buf_putc(&phrase, (unsigned char)c);
                mg_buf_putc(&spec, (unsigned char)c);
            }
            i++;
        }
    }

    int rc = 0;
    if (found != NULL && foundlen > 0 && addr_plausible(found, foundlen)) {
        mg_buf_reset(&tmp);
        mg_raw_to_utf8(found, foundlen, &tmp);
        for (size_t k = 0; k < tmp.len; k++)
            tmp.data[k] = ascii_lower(tmp.data[k]);
        *addr = dup_trimmed(&tmp, addrlen, false);
        if (*addr == NULL)
            rc = -1;
        /* display name: the phrase before '<', else the comment after a bare spec */
        struct mg_buf *src = angle ? &phrase : &comment;
        if (angle && phrase.len == 0)
            src = &comment;
        mg_buf_reset(&tmp);
        mg_header_decode(src->data ? src->data : "", src->len, &tmp);
        if (tmp.len > 0)
            *name = dup_trimmed(&tmp, namelen, true);
    }
    mg_buf_finish(&phrase);
    mg_buf_finish(&spec);
    mg_buf_finish(&comment);
    mg_buf_finish(&tmp);
    return rc;
}

/* End of the list element starting at pos: the next ',' outside quotes,
 * comments and angle brackets (a group's ':' and ';' stay inside). */
static size_t element_end(const char *v, size_t n, size_t pos)
{
    int depth = 0;
    bool quoted = false, angle = false;
    for (size_t i = pos; i < n; i++) {
        char c = v[i];
        if (c == '\\' && (quoted || depth > 0)) {
            i++;
        } else if (quoted) {
            quoted = c != '"';
        } else if (depth > 0) {
            depth += c == '(' ? 1 : c == ')' ? -1 : 0;
        } else if (c == '"') {
            quoted = true;
        } else if (c == '(') {
            depth = 1;
        } else if (c == '<') {
            angle = true;
        } else if (c == '>') {
            angle = false;
        } else if (c == ',' && !angle) {
            return i;
        }
    }
    return n;
}

long mg_address_list(const char *val, size_t n, mg_address_fn fn, void *ctx)
{
    long count = 0;
    size_t pos = 0;
    while (pos < n) {
        size_t end = element_end(val, n, pos);
        char *addr, *name;
        size_t al, nl;
        if (mg_address_parse(val + pos, end - pos, &addr, &al, &name, &nl) != 0) {
            free(addr);
            free(name);
            return -1;
        }
        int rc = 0;
        if (addr != NULL) {
            count++;
            if (fn != NULL)
                rc = fn(ctx, addr, al);
        }
        free(addr);
        free(name);
        if (rc != 0)
            return -1;
        pos = end + 1;
    }
    return count;
}

bool mg_boundary_valid(const char *b, size_t n)
{
    /*
     * Wider than RFC 2046 bchars (real mail uses '#', '%', '!'...), but quotes,
     * backslashes and controls, the shapes that break parsers, are refused.
     */
    if (n < 1 || n > 70 || b[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c < 32 || c > 126 || c == '"' || c == '\\')
            return false;
    }
    return true;
}

struct ctype {
    char type[32];
    char subtype[64];
    char charset[64];
    size_t charset_len;
    char boundary[128];
    size_t boundary_len;
    bool boundary_seen;
};

static void copy_lower(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = ascii_lower(s[i]);
    dst[n] = '\0';
}

static void parse_ctype(const char *v, size_t n, struct ctype *ct)
{
    memset(ct, 0, sizeof(*ct));
    size_t i = 0;
    while (i < n && is_wsp(v[i]))
        i++;
    size_t s = i;
    while (i < n && v[i] != '/' && v[i] != ';' && (unsigned char)v[i] > 32)
        i++;
    copy_lower(ct->type, sizeof(ct->type), v + s, i - s);
    if (i < n && v[i] == '/') {
        s = ++i;
        while (i < n && v[i] != ';' && (unsigned char)v[i] > 32)
            i++;
        copy_lower(ct->subtype, sizeof(ct->subtype), v + s, i - s);
    }
    /* parameters */
    while (i < n) {
        while (i < n && v[i] != ';')
            i++;
        if (i >= n)
            break;
        i++;
        while (i < n && (unsigned char)v[i] <= 32)
            i++;
        size_t ns = i;
        while (i < n && v[i] != '=' && v[i] != ';' && (unsigned char)v[i] > 32)
            i++;
        size_t nl = i - ns;
        while (i < n && (unsigned char)v[i] <= 32)
            i++;
        if (i >= n || v[i] != '=')
            continue;
        i++;
        while (i < n && (unsigned char)v[i] <= 32)
            i++;
        char val[256];
        size_t vl = 0;
        if (i < n && v[i] == '"') {
            for (i++; i < n && v[i] != '"'; i++) {
                if (v[i] == '\\' && i + 1 < n)
                    i++;
                if (vl < sizeof(val))
                    val[vl++] = v[i];
            }
            i++;
        } else {
            while (i < n && v[i] != ';' && (unsigned char)v[i] > 32) {
                if (vl < sizeof(val))
                    val[vl++] = v[i];
                i++;
            }
        }
        if (nl == 7 && strncasecmp(v + ns, "charset", 7) == 0) {
            if (vl < sizeof(ct->charset)) {
                memcpy(ct->charset, val, vl);
                ct->charset_len = vl;
            }
        } else if (nl == 8 && strncasecmp(v + ns, "boundary", 8) == 0) {
            ct->boundary_seen = true;
            ct->boundary_len = vl < sizeof(ct->boundary) ? vl : sizeof(ct->boundary);
            memcpy(ct->boundary, val, ct->boundary_len);
        }
    }
}

struct walk {
    struct mg_buf text;
    struct mg_buf raw;
    struct mg_buf conv;
    int parts;
    unsigned flags;
    struct mg_msg_attachment *att; /* MG_MSG_MAX_PARTS entries */
    size_t natt;
    unsigned long long att_bytes;
};

/* The decoded size of a part's body, counted without decoding it. */
static unsigned long long decoded_size(const char *cte, size_t ctelen, const char *b, size_t n)
{
    unsigned long long k = 0;
    if (ctelen >= 6 && strncasecmp(cte, "base64", 6) == 0) {
        /* line by line (memchr is fast); each line's characters but its
         * line break, blanks and '=' padding at the end */
        for (size_t i = 0; i < n;) {
            const char *nl = memchr(b + i, '\n', n - i);
            size_t e = nl ? (size_t)(nl - b) : n;
            size_t end = e;
            while (end > i && (b[end - 1] == '\r' || b[end - 1] == '=' || is_wsp(b[end - 1])))
                end--;
            k += end - i;
            i = e + 1;
        }
        return k * 3 / 4;
    }
    if (ctelen >= 16 && strncasecmp(cte, "quoted-printable", 16) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (b[i] == '=' && i + 1 < n && (b[i + 1] == '\n' || b[i + 1] == '\r')) {
                i += (b[i + 1] == '\r' && i + 2 < n && b[i + 2] == '\n') ? 2 : 1;
                continue; /* a soft line break */
            }
            if (b[i] == '=' && i + 2 < n)
                i += 2;
            k++;
        }
        return k;
    }
    return n;
}

static void add_attachment(struct walk *w, const struct ctype *ct, const char *hdr, size_t hdrlen,
                           const char *body, size_t bodylen)
{
    const char *cte = "";
    size_t ctelen = 0;
    mg_header_find(hdr, hdrlen, "Content-Transfer-Encoding", &cte, &ctelen);
    unsigned long long bytes = decoded_size(cte, ctelen, body, bodylen);
    if (w->att == NULL)
        w->att = calloc(MG_MSG_MAX_PARTS, sizeof(*w->att));
    if (w->att == NULL || w->natt >= MG_MSG_MAX_PARTS)
        return;
    struct mg_msg_attachment *a = &w->att[w->natt++];
    snprintf(a->type, sizeof(a->type), "%s/%s", ct->type[0] ? ct->type : "application",
             ct->subtype[0] ? ct->subtype : "octet-stream");
    a->bytes = bytes;
    w->att_bytes += bytes;
}

static void add_text(struct walk *w, const struct ctype *ct, const char *cte, size_t ctelen,
                     const char *body, size_t bodylen)
{
    mg_buf_reset(&w->raw);
    mg_buf_reset(&w->conv);
    const char *data = body;
    size_t dlen = bodylen;
    if (ctelen >= 6 && strncasecmp(cte, "base64", 6) == 0) {
        mg_base64_decode(body, bodylen, &w->raw);
        data = w->raw.data ? w->raw.data : "";
        dlen = w->raw.len;
    } else if (ctelen >= 16 && strncasecmp(cte, "quoted-printable", 16) == 0) {
        mg_qp_decode(body, bodylen, false, &w->raw);
        data = w->raw.data ? w->raw.data : "";
        dlen = w->raw.len;
    }
    int rc = mg_to_utf8(ct->charset, ct->charset_len, data, dlen, &w->conv);
    if (rc == 0 && strcmp(ct->subtype, "html") == 0) {
        mg_buf_reset(&w->raw);
        rc = mg_html_to_text(w->conv.data ? w->conv.data : "", w->conv.len, &w->raw);
        data = w->raw.data ? w->raw.data : "";
        dlen = w->raw.len;
    } else {
        data = w->conv.data ? w->conv.data : "";
        dlen = w->conv.len;
    }
    if (rc != 0)
        w->flags |= MG_MSG_TEXT_LIMIT;
    if (w->text.len > 0 && mg_buf_putc(&w->text, '\n') != 0) {
        w->flags |= MG_MSG_TEXT_LIMIT;
        return;
    }
    if (mg_buf_append(&w->text, data, dlen) != 0) {
        /* keep what fits */
        size_t room = w->text.max - w->text.len;
        mg_buf_append(&w->text, data, room < dlen ? room : dlen);
        w->flags |= MG_MSG_TEXT_LIMIT;
    }
}

/* Find a delimiter line "--boundary" at or after from; returns its start or n. */
static size_t find_delim(const char *p, size_t n, size_t from, const char *b, size_t bl,
                         bool *close, size_t *after)
{
    /* the whole "--boundary" is searched for: a long needle lets memmem
     * skip ahead, where "--" alone stops at every rule of dashes */
    char needle[2 + sizeof(((struct ctype *)0)->boundary)];
    if (bl > sizeof(needle) - 2)
        return n;
    needle[0] = needle[1] = '-';
    memcpy(needle + 2, b, bl);
    while (from < n) {
        const char *hit = memmem(p + from, n - from, needle, bl + 2);
        if (hit == NULL)
            return n;
        size_t pos = (size_t)(hit - p);
        from = pos + 1;
        if (pos > 0 && p[pos - 1] != '\n')
            continue;
        size_t k = pos + 2 + bl;
        *close = (k + 1 < n && p[k] == '-' && p[k + 1] == '-');
        if (*close)
            k += 2;
        while (k < n && (is_wsp(p[k]) || p[k] == '\r'))
            k++;
        if (k < n && p[k] != '\n')
            continue; /* "--boundaryX": a longer boundary, not ours */
        *after = k < n ? k + 1 : n;
        return pos;
    }
    return n;
}

static void walk_part(struct walk *w, const char *hdr, size_t hdrlen, const char *body,
                      size_t bodylen, int depth);

static void walk_entity(struct walk *w, const char *p, size_t n, int depth)
{
    const char *hdr, *body;
    size_t hdrlen, bodylen;
    unsigned flags = 0;
    split_header(p, n, MG_MSG_MAX_HEADER, &hdr, &hdrlen, &body, &bodylen, &flags);
    w->flags |= flags;
    walk_part(w, hdr, hdrlen, body, bodylen, depth);
}

static void walk_part(struct walk *w, const char *hdr, size_t hdrlen, const char *body,
                      size_t bodylen, int depth)
{
    if (++w->parts > MG_MSG_MAX_PARTS) {
        w->flags |= MG_MSG_PART_LIMIT;
        return;
    }
    if (depth > MG_MSG_MAX_DEPTH) {
        w->flags |= MG_MSG_DEPTH_LIMIT;
        return;
    }
    struct ctype ct;
    const char *v;
    size_t vl;
    if (mg_header_find(hdr, hdrlen, "Content-Type", &v, &vl) == 0) {
        parse_ctype(v, vl, &ct);
    } else {
        memset(&ct, 0, sizeof(ct));
        memcpy(ct.type, "text", 5);
        memcpy(ct.subtype, "plain", 6);
    }
    if (mg_header_find(hdr, hdrlen, "Content-Disposition", &v, &vl) == 0 && vl >= 10 &&
        strncasecmp(v, "attachment", 10) == 0) {
        add_attachment(w, &ct, hdr, hdrlen, body, bodylen);
        return;
    }

    if (strcmp(ct.type, "multipart") == 0) {
        if (!mg_boundary_valid(ct.boundary, ct.boundary_len)) {
            w->flags |= MG_MSG_BAD_BOUNDARY;
            return;
        }
        bool close = false;
        size_t after = 0;
        size_t pos = find_delim(body, bodylen, 0, ct.boundary, ct.boundary_len, &close, &after);
        while (pos < bodylen && !close) {
            size_t start = after;
            size_t next =
                find_delim(body, bodylen, start, ct.boundary, ct.boundary_len, &close, &after);
            size_t end = next;
            /* the line break before a delimiter belongs to the delimiter */
            if (end > start && body[end - 1] == '\n')
                end--;
            if (end > start && body[end - 1] == '\r')
                end--;
            if (end < start)
                end = start;
            walk_entity(w, body + start, end - start, depth + 1);
            if (w->flags & MG_MSG_PART_LIMIT)
                return;
            pos = next;
        }
        return;
    }
    if (strcmp(ct.type, "message") == 0 &&
        (strcmp(ct.subtype, "rfc822") == 0 || strcmp(ct.subtype, "global") == 0)) {
        walk_entity(w, body, bodylen, depth + 1);
        return;
    }
    if (strcmp(ct.type, "text") == 0 &&
        (strcmp(ct.subtype, "plain") == 0 || strcmp(ct.subtype, "html") == 0)) {
        const char *cte = "";
        size_t ctelen = 0;
        mg_header_find(hdr, hdrlen, "Content-Transfer-Encoding", &cte, &ctelen);
        add_text(w, &ct, cte, ctelen, body, bodylen);
    } else {
        add_attachment(w, &ct, hdr, hdrlen, body, bodylen);
    }
}

static int add_rcpt(void *ctx, const char *addr, size_t len)
{
    struct mg_buf *b = ctx;
    if (b->len + len + 1 <= b->max && mg_buf_append(b, addr, len) == 0)
        mg_buf_putc(b, '\0');
    return 0;
}

/* An identifier header, unfolded and trimmed; with angle, the text inside <>. */
static char *id_header(const char *hdr, size_t hdrlen, const char *name, bool angle, size_t *len)
{
    const char *v;
    size_t vl;
    if (mg_header_find(hdr, hdrlen, name, &v, &vl) != 0)
        return NULL;
    if (angle) {
        const char *lt = memchr(v, '<', vl);
        const char *gt = lt ? memchr(lt, '>', vl - (size_t)(lt - v)) : NULL;
        if (gt != NULL) {
            vl = (size_t)(gt - lt - 1);
            v = lt + 1;
        }
    }
    char out[MG_MSG_MAX_ID];
    size_t n = 0;
    for (size_t i = 0; i < vl && n < sizeof(out); i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\r' || c == '\n')
            continue;
        out[n++] = (char)(c == '\t' ? ' ' : c);
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    size_t s = 0;
    while (s < n && out[s] == ' ')
        s++;
    if (s == n)
        return NULL;
    /* by length: a NUL inside the value stays (strndup would stop there) */
    char *r = malloc(n - s + 1);
    if (r != NULL) {
        memcpy(r, out + s, n - s);
        r[n - s] = '\0';
        *len = n - s;
    }
    return r;
}

int mg_msg_parse(const char *msg, size_t len, struct mg_msginfo *out)
{
    memset(out, 0, sizeof(*out));
    /* an mbox "From " line before the headers */
    if (len >= 5 && memcmp(msg, "From ", 5) == 0) {
        const char *nl = memchr(msg, '\n', len);
        size_t skip = nl ? (size_t)(nl - msg) + 1 : len;
        msg += skip;
        len -= skip;
    }
    const char *hdr, *body;
    size_t hdrlen, bodylen;
    split_header(msg, len, MG_MSG_MAX_HEADER, &hdr, &hdrlen, &body, &bodylen, &out->flags);
    if (hdrlen == 0 || field_name_len(hdr, hdrlen) == 0) {
        out->flags |= MG_MSG_HEADERS_BAD;
        return 0;
    }

    int rc = 0;
    const char *v;
    size_t vl;
    if (mg_header_find(hdr, hdrlen, "From", &v, &vl) == 0) {
        if (mg_address_parse(v, vl, &out->from_addr, &out->from_addr_len, &out->from_name,
                             &out->from_name_len) != 0)
            rc = -1;
    }
    if (mg_header_find(hdr, hdrlen, "Date", &v, &vl) == 0)
        out->has_date = mg_date_parse(v, vl, &out->date) == 0;
    struct mg_buf rcpt;
    mg_buf_init(&rcpt, MG_MSG_MAX_RCPT);
    static const char *const rcpt_fields[3] = {"To", "Cc", "Bcc"};
    for (int f = 0; f < 3 && rc == 0; f++) {
        if (mg_header_find(hdr, hdrlen, rcpt_fields[f], &v, &vl) != 0)
            continue;
        long k = mg_address_list(v, vl, add_rcpt, &rcpt);
        if (k < 0)
            rc = -1;
        else if (f == 0)
            out->to_count = (size_t)k;
        else if (f == 1)
            out->cc_count = (size_t)k;
    }
    if (rcpt.len > 0)
        out->rcpt = mg_buf_steal(&rcpt, &out->rcpt_len);
    mg_buf_finish(&rcpt);
    out->message_id = id_header(hdr, hdrlen, "Message-ID", false, &out->message_id_len);
    out->in_reply_to = id_header(hdr, hdrlen, "In-Reply-To", false, &out->in_reply_to_len);
    out->list_id = id_header(hdr, hdrlen, "List-Id", true, &out->list_id_len);

    struct walk w;
    memset(&w, 0, sizeof(w));
    mg_buf_init(&w.text, MG_MSG_MAX_TEXT);
    mg_buf_init(&w.raw, MG_MSG_MAX_TEXT);
    mg_buf_init(&w.conv, MG_MSG_MAX_TEXT);
    if (mg_header_find(hdr, hdrlen, "Subject", &v, &vl) == 0) {
        mg_header_decode(v, vl, &w.conv);
        out->subject = dup_trimmed(&w.conv, &out->subject_len, false);
    }
    walk_part(&w, hdr, hdrlen, body, bodylen, 0);
    out->flags |= w.flags;
    out->att = w.att;
    out->attachments = w.natt;
    out->attachment_bytes = w.att_bytes;
    out->text = mg_buf_steal(&w.text, &out->text_len);
    if (out->text == NULL)
        rc = -1;
    mg_buf_finish(&w.text);
    mg_buf_finish(&w.raw);
    mg_buf_finish(&w.conv);
    return rc;
}

void mg_msginfo_finish(struct mg_msginfo *info)
{
    free(info->from_addr);
    free(info->from_name);
    free(info->subject);
    free(info->text);
    free(info->rcpt);
    free(info->message_id);
    free(info->in_reply_to);
    free(info->list_id);
    free(info->att);
    memset(info, 0, sizeof(*info));
}

const char *mg_msginfo_domain(const struct mg_msginfo *info, size_t *len)
{
    if (info->from_addr == NULL)
        return NULL;
    const char *at = NULL;
    for (size_t i = 0; i < info->from_addr_len; i++)
        if (info->from_addr[i] == '@')
            at = info->from_addr + i;
    if (at == NULL)
        return NULL;
    *len = info->from_addr_len - (size_t)(at + 1 - info->from_addr);
    return *len > 0 ? at + 1 : NULL;
}
