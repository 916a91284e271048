/* gmail.c - see include/mailgrab/gmail.h */
#include "mailgrab/gmail.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mailgrab/fsutil.h"

#define LINE_MAX_BYTES (64u << 10)

void mg_gmail_index_init(struct mg_gmail_index *ix)
{
    *ix = (struct mg_gmail_index){0};
}

void mg_gmail_index_finish(struct mg_gmail_index *ix)
{
    for (size_t i = 0; i < ix->cap; i++) {
        free(ix->v[i].path);
        free(ix->v[i].line);
    }
    free(ix->v);
    *ix = (struct mg_gmail_index){0};
}

static size_t slot_of(uint64_t msgid, size_t cap)
{
    uint64_t h = msgid * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static int grow(struct mg_gmail_index *ix)
{
    size_t cap = ix->cap ? ix->cap * 2 : 1024;
    struct mg_gmail_entry *v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < ix->cap; i++) {
        if (ix->v[i].msgid == 0)
            continue;
        size_t j = slot_of(ix->v[i].msgid, cap);
        while (v[j].msgid != 0)
            j = (j + 1) & (cap - 1);
        v[j] = ix->v[i];
    }
    free(ix->v);
    ix->v = v;
    ix->cap = cap;
    return 0;
}

struct mg_gmail_entry *mg_gmail_index_get(struct mg_gmail_index *ix, uint64_t msgid, bool add)
{
    if (msgid == 0)
        return NULL; /* not a Gmail message id */
    if (ix->cap > 0) {
        size_t j = slot_of(msgid, ix->cap);
        while (ix->v[j].msgid != 0) {
            if (ix->v[j].msgid == msgid)
                return &ix->v[j];
            j = (j + 1) & (ix->cap - 1);
        }
    }
    if (!add)
        return NULL;
    if ((ix->n + 1) * 2 > ix->cap && grow(ix) != 0)
        return NULL;
    size_t j = slot_of(msgid, ix->cap);
    while (ix->v[j].msgid != 0)
        j = (j + 1) & (ix->cap - 1);
    ix->v[j] = (struct mg_gmail_entry){.msgid = msgid};
    ix->n++;
    return &ix->v[j];
}

/* A path from the file is used only if it stays inside the output. */
static bool safe_path(const char *p)
{
    if (p[0] == '\0' || p[0] == '/' || strlen(p) >= PATH_MAX)
        return false;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += n + (e ? 1 : 0);
    }
    return true;
}

static bool take_line(struct mg_gmail_index *ix, const char *line, size_t len)
{
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return false;
    json_object *o = json_tokener_parse_ex(tok, line, (int)len);
    bool ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
              json_object_is_type(o, json_type_object);
    json_tokener_free(tok);
    json_object *id = NULL, *path = NULL;
    ok = ok && json_object_object_get_ex(o, "msgid", &id) &&
         json_object_is_type(id, json_type_string) && json_object_object_get_ex(o, "path", &path) &&
         json_object_is_type(path, json_type_string);
    uint64_t msgid = 0;
    if (ok) {
        const char *s = json_object_get_string(id);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        ok = s[0] >= '1' && s[0] <= '9' && *end == '\0' && errno == 0;
        msgid = v;
    }
    ok = ok && safe_path(json_object_get_string(path));
    struct mg_gmail_entry *e = ok ? mg_gmail_index_get(ix, msgid, true) : NULL;
    if (e != NULL && e->line == NULL) {
        e->path = strdup(json_object_get_string(path));
        e->line = strndup(line, len);
    }
    json_object_put(o);
    return e != NULL;
}

enum mg_code mg_gmail_index_load(struct mg_gmail_index *ix, int dirfd, size_t *bad,
                                 struct mg_error *err)
{
    *bad = 0;
    int fd = openat(dirfd, MG_LABELS_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? MG_OK
                               : mg_error_set(err, MG_E_IO, "cannot read " MG_LABELS_FILE ": %s",
                                              strerror(errno));
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if ((size_t)len > LINE_MAX_BYTES || !take_line(ix, line, (size_t)len))
            (*bad)++;
    }
    free(line);
    fclose(f);
    return MG_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    uint64_t x = (*(const struct mg_gmail_entry *const *)a)->msgid;
    uint64_t y = (*(const struct mg_gmail_entry *const *)b)->msgid;
    return (x > y) - (x < y);
}

enum mg_code mg_gmail_index_save(const struct mg_gmail_index *ix, int dirfd, const char *dir,
                                 struct mg_error *err)
{
    const struct mg_gmail_entry **v = calloc(ix->n ? ix->n : 1, sizeof(*v));
    if (v == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->v[i].msgid != 0 && ix->v[i].line != NULL) {
            v[n++] = &ix->v[i];
            bytes += strlen(ix->v[i].line) + 1;
        }
    qsort(v, n, sizeof(*v), cmp_entry);
    char *text = malloc(bytes + 1);
    if (text == NULL) {
        free(v);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(v[i]->line);
        memcpy(text + len, v[i]->line, k);
        len += k;
        text[len++] = '\n';
    }
    free(v);
    const char *step = NULL;
    int e = mg_replace_at(dirfd, MG_LABELS_FILE, text, len, &step);
    free(text);
    if (e != 0)
        return mg_error_set(err, MG_E_IO, "cannot %s %s/" MG_LABELS_FILE ": %s",
                            step ? step : "write", dir, strerror(e));
    return MG_OK;
}

size_t mg_gmail_line_labels(const char *line, char *buf, size_t cap, const char **out, size_t max)
{
    json_object *o = json_tokener_parse(line), *arr = NULL;
    size_t n = 0, used = 0;
    if (o != NULL && json_object_object_get_ex(o, "labels", &arr) &&
        json_object_is_type(arr, json_type_array))
        for (size_t i = 0; i < json_object_array_length(arr) && n < max; i++) {
            json_object *v = json_object_array_get_idx(arr, i);
            const char *t =
                json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
            size_t k = t ? strlen(t) : 0;
            if (k == 0 || used + k + 1 > cap)
                continue;
            memcpy(buf + used, t, k + 1);
            out[n++] = buf + used;
            used += k + 1;
        }
    json_object_put(o);
    return n;
}
