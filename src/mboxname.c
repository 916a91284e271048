/* mboxname.c - see include/mailgrab/mboxname.h */
#include "mailgrab/mboxname.h"

#include "mailgrab/buf.h"
#include "mailgrab/utf8.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* One UTF-8 sequence of the NUL-terminated s: its length, 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    return mg_utf8_decode(s, strnlen((const char *)s, 4), cp);
}

int mg_mbox_to_imap(const char *name, char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    struct mg_buf o;
    mg_buf_init_fixed(&o, out, cap); /* a failure sticks: checked at the end */
    const unsigned char *s = (const unsigned char *)name;
    while (*s != '\0') {
        if (*s >= 0x20 && *s < 0x7f) {
            mg_buf_putc(&o, *s);
            if (*s == '&')
                mg_buf_putc(&o, '-');
            s++;
            continue;
        }
        /* A run of non-printable-ASCII characters becomes one &...- block. */
        uint32_t bits = 0;
        int nbits = 0;
        mg_buf_putc(&o, '&');
        while (*s != '\0' && !(*s >= 0x20 && *s < 0x7f)) {
            uint32_t cp;
            size_t n = utf8_decode(s, &cp);
            if (n == 0)
                return -1;
            s += n;
            uint16_t units[2];
            int nu = 1;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                units[0] = (uint16_t)(0xd800 | (cp >> 10));
                units[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
                nu = 2;
            } else {
                units[0] = (uint16_t)cp;
            }
            for (int u = 0; u < nu; u++) {
                bits = (bits << 16) | units[u];
                nbits += 16;
                while (nbits >= 6) {
                    nbits -= 6;
                    mg_buf_putc(&o, (unsigned char)b64[(bits >> nbits) & 0x3f]);
                }
            }
        }
        if (nbits > 0)
            mg_buf_putc(&o, (unsigned char)b64[(bits << (6 - nbits)) & 0x3f]);
        mg_buf_putc(&o, '-');
    }
    return o.failed ? -1 : 0;
}

static int b64_value(unsigned char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

int mg_mbox_from_imap(const char *imap, char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    struct mg_buf o;
    mg_buf_init_fixed(&o, out, cap); /* a failure sticks: checked at the end */
    const unsigned char *s = (const unsigned char *)imap;
    while (*s != '\0') {
        if (*s != '&') {
            if (*s < 0x20 || *s >= 0x7f)
                return -1;
            mg_buf_putc(&o, *s++);
            continue;
        }
        s++;
        if (*s == '-') {
            mg_buf_putc(&o, '&');
            s++;
            continue;
        }
        uint32_t bits = 0, high = 0;
        int nbits = 0;
        while (*s != '-') {
            int v = b64_value(*s);
            if (v < 0)
                return -1;
            s++;
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            if (nbits >= 16) {
                nbits -= 16;
                uint32_t u = (bits >> nbits) & 0xffff;
                if (u >= 0xd800 && u <= 0xdbff) {
                    if (high)
                        return -1;
                    high = u;
                } else if (u >= 0xdc00 && u <= 0xdfff) {
                    if (!high)
                        return -1;
                    mg_buf_put_utf8(&o, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
                    high = 0;
                } else {
                    if (high)
                        return -1;
                    mg_buf_put_utf8(&o, u);
                }
            }
        }
        if (high || nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0)
            return -1;
        s++;
    }
    return o.failed ? -1 : 0;
}

/* FNV-1a: a stable suffix that keeps cut names apart, not a security hash. */
static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

int mg_mbox_to_path(const char *name, char *out, size_t cap)
{
    char buf[4 * MG_MBOX_PATH_MAX];
    size_t len = 0;
    const unsigned char *s = (const unsigned char *)name;
    bool cut = false;

    while (*s != '\0') {
        uint32_t cp;
        size_t n = utf8_decode(s, &cp);
        bool plain = n > 1 || (n == 1 && cp >= 0x20 && cp < 0x7f && cp != '/' && cp != '\\' &&
                               cp != '%' && !(len == 0 && cp == '.'));
        size_t need = plain ? n : 3;
        if (len + need > MG_MBOX_PATH_MAX - 9) {
            cut = true;
            break;
        }
        if (plain) {
            memcpy(buf + len, s, n);
            len += n;
            s += n;
        } else {
            snprintf(buf + len, 4, "%%%02X", *s);
            len += 3;
            s++;
        }
    }
    buf[len] = '\0';
    if (len == 0)
        snprintf(buf, sizeof(buf), "%%00");
    if (cut)
        snprintf(buf + len, sizeof(buf) - len, "~%08x", fnv1a(name));
    snprintf(out, cap, "%s", buf);
    return 0;
}

struct ranked {
    const char *name;
    size_t idx;
};

static int cmp_ranked(const void *a, const void *b)
{
    return strcmp(((const struct ranked *)a)->name, ((const struct ranked *)b)->name);
}

/* Is dir taken, case-insensitively, by one of the first k assignments? */
static bool taken(const char *dir, char (*out)[MG_MBOX_DIR_MAX + 1], const bool *done, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (done[i] && strcasecmp(out[i], dir) == 0)
            return true;
    return false;
}

int mg_mbox_dir_names(const char *const *names, size_t n, const char *const *existing,
                      size_t nexisting, char (*out)[MG_MBOX_DIR_MAX + 1])
{
    struct ranked *r = calloc(n ? n : 1, sizeof(*r));
    bool *done = calloc(n ? n : 1, sizeof(*done));
    if (r == NULL || done == NULL) {
        free(r);
        free(done);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        r[i] = (struct ranked){names[i], i};
        mg_mbox_to_path(names[i], out[i], MG_MBOX_DIR_MAX + 1);
    }
    qsort(r, n, sizeof(*r), cmp_ranked);
    /* First, mailboxes whose own directory exists keep it. */
    for (size_t k = 0; k < n; k++) {
        size_t i = r[k].idx;
        for (size_t e = 0; e < nexisting && !done[i]; e++)
            if (strcmp(existing[e], out[i]) == 0 && !taken(out[i], out, done, n))
                done[i] = true;
    }
    /* Then the others, in byte order: the plain path if it is free. */
    for (size_t k = 0; k < n; k++) {
        size_t i = r[k].idx;
        if (done[i])
            continue;
        if (taken(out[i], out, done, n)) {
            size_t len = strlen(out[i]);
            snprintf(out[i] + len, MG_MBOX_DIR_MAX + 1 - len, "~%08x", fnv1a(names[i]));
        }
        done[i] = true;
    }
    free(r);
    free(done);
    return 0;
}

int mg_mbox_from_path(const char *path, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; path[i] != '\0'; i++) {
        char c = path[i];
        if (c == '%' && isxdigit((unsigned char)path[i + 1]) &&
            isxdigit((unsigned char)path[i + 2])) {
            char hex[3] = {path[i + 1], path[i + 2], '\0'};
            c = (char)strtol(hex, NULL, 16);
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    if (cap == 0)
        return -1;
    out[o] = '\0';
    return 0;
}
