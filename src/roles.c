/* roles.c - see include/mailgrab/roles.h */
#include "mailgrab/roles.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mailgrab/buf.h"
#include "mailgrab/fsutil.h"
#include "mailgrab/source.h"

static const struct {
    const char *name;
    unsigned bit;
} names[] = {
    {"\\All", MG_ROLE_ALL},
    {"\\Junk", MG_ROLE_JUNK},
    {"\\Trash", MG_ROLE_TRASH},
    {"\\Sent", MG_ROLE_SENT},
    {"\\Drafts", MG_ROLE_DRAFTS},
    {"\\Flagged", MG_ROLE_FLAGGED},
    {"\\Important", MG_ROLE_IMPORTANT},
    {"\\Archive", MG_ROLE_ARCHIVE},
};

#define NNAMES (sizeof(names) / sizeof(names[0]))

void mg_roles_init(struct mg_roles *r)
{
    memset(r, 0, sizeof(*r));
}

void mg_roles_finish(struct mg_roles *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].dir);
    free(r->v);
    memset(r, 0, sizeof(*r));
}

static bool dir_ok(const char *dir, size_t n)
{
    return n > 0 && memchr(dir, '/', n) == NULL && memchr(dir, '\t', n) == NULL &&
           memchr(dir, '\n', n) == NULL && memchr(dir, '\0', n) == NULL;
}

static int add(struct mg_roles *r, const char *dir, size_t n, unsigned roles)
{
    if (roles == 0)
        return 0;
    struct mg_roles_entry *v = reallocarray(r->v, r->n + 1, sizeof(*v));
    if (v == NULL)
        return -1;
    r->v = v;
    char *d = strndup(dir, n);
    if (d == NULL)
        return -1;
    r->v[r->n++] = (struct mg_roles_entry){d, roles};
    return 0;
}

int mg_roles_add(struct mg_roles *r, const char *dir, unsigned roles)
{
    if (!dir_ok(dir, strlen(dir)))
        return 0;
    return add(r, dir, strlen(dir), roles);
}

int mg_roles_save(const struct mg_roles *r, int dirfd, const char **step)
{
    struct mg_buf b;
    mg_buf_init(&b, MG_ROLES_MAX_BYTES);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        bool first = true;
        for (size_t k = 0; rc == 0 && k < NNAMES; k++) {
            if (!(r->v[i].roles & names[k].bit))
                continue;
            if (!first)
                rc = mg_buf_append(&b, " ", 1);
            if (rc == 0)
                rc = mg_buf_append(&b, names[k].name, strlen(names[k].name));
            first = false;
        }
        if (rc == 0 && !first)
            rc = mg_buf_append(&b, "\t", 1) ||
                 mg_buf_append(&b, r->v[i].dir, strlen(r->v[i].dir)) || mg_buf_append(&b, "\n", 1);
    }
    int e = rc != 0 ? ENOMEM : mg_replace_at(dirfd, MG_ROLES_FILE, b.data, b.len, step);
    if (rc != 0 && step != NULL)
        *step = "prepare";
    mg_buf_finish(&b);
    return e;
}

unsigned mg_role_bit(const char *name, size_t len)
{
    if (len > 0 && name[0] == '\\') {
        name++;
        len--;
    }
    for (size_t k = 0; k < NNAMES; k++)
        if (strlen(names[k].name + 1) == len && strncasecmp(names[k].name + 1, name, len) == 0)
            return names[k].bit;
    return 0;
}

/* The role bits of a space-separated list; unknown words are ignored. */
static unsigned parse_roles(const char *s, size_t n)
{
    unsigned bits = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ' ')
            j++;
        bits |= mg_role_bit(s + i, j - i);
        i = j + 1;
    }
    return bits;
}

int mg_roles_parse(struct mg_roles *r, const char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *line = text + i;
        size_t n = end - i;
        i = end + 1;
        const char *tab = memchr(line, '\t', n);
        if (nl == NULL || tab == NULL) {
            r->skipped += n > 0;
            continue;
        }
        size_t rn = (size_t)(tab - line), dn = n - rn - 1;
        unsigned bits = parse_roles(line, rn);
        if (bits == 0 || !dir_ok(tab + 1, dn)) {
            r->skipped++;
            continue;
        }
        if (add(r, tab + 1, dn, bits) != 0)
            return -1;
    }
    return 0;
}

int mg_roles_load(struct mg_roles *r, int dirfd)
{
    int fd = openat(dirfd, MG_ROLES_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    char *text = malloc(MG_ROLES_MAX_BYTES);
    if (text == NULL) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    size_t len;
    int e = mg_read_upto(fd, text, MG_ROLES_MAX_BYTES, &len);
    close(fd);
    if (e != 0) {
        free(text);
        errno = e;
        return -1;
    }
    int rc = mg_roles_parse(r, text, len);
    free(text);
    if (rc != 0) {
        errno = ENOMEM;
        return -1;
    }
    return 1;
}

unsigned mg_roles_of(const struct mg_roles *r, const char *name)
{
    static const char gen[] = "%uidvalidity=";
    unsigned bits = 0;
    for (size_t i = 0; i < r->n; i++) {
        size_t n = strlen(r->v[i].dir);
        if (strncmp(name, r->v[i].dir, n) == 0 &&
            (name[n] == '\0' || strncmp(name + n, gen, sizeof(gen) - 1) == 0))
            bits |= r->v[i].roles;
    }
    return bits;
}
