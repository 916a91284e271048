/* labels.c - see include/mailgrab/labels.h */
#include "mailgrab/labels.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mg_labels_init(struct mg_labels *l)
{
    memset(l, 0, sizeof(*l));
}

static void entry_free(struct mg_label_entry *e)
{
    free(e->path);
    free(e->labels);
    free(e->thrid);
}

void mg_labels_finish(struct mg_labels *l)
{
    for (size_t i = 0; i < l->n; i++)
        entry_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* "thrid" and "labels" of one object, checked; false when unusable. */
static bool fields(json_object *o, const char **path, const char **thrid, json_object **labels)
{
    json_object *p, *t, *a;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "path", &p) ||
        !json_object_is_type(p, json_type_string) || json_object_get_string_len(p) == 0)
        return false;
    *path = json_object_get_string(p);
    *thrid = "";
    if (json_object_object_get_ex(o, "thrid", &t)) {
        if (!json_object_is_type(t, json_type_string))
            return false;
        *thrid = json_object_get_string(t);
    }
    *labels = NULL;
    if (json_object_object_get_ex(o, "labels", &a)) {
        if (!json_object_is_type(a, json_type_array))
            return false;
        for (size_t i = 0; i < json_object_array_length(a); i++)
            if (!json_object_is_type(json_object_array_get_idx(a, i), json_type_string))
                return false;
        *labels = a;
    }
    return true;
}

int mg_labels_add_line(struct mg_labels *l, const char *line, size_t n)
{
    if (n == 0 || n > MG_LABELS_LINE_MAX || memchr(line, '\0', n) != NULL) {
        l->skipped += n > 0;
        return 0;
    }
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return -1;
    json_object *o = json_tokener_parse_ex(tok, line, (int)n);
    bool whole = o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
                 json_tokener_get_parse_end(tok) == n;
    json_tokener_free(tok);
    const char *path, *thrid;
    json_object *labels;
    if (!whole || !fields(o, &path, &thrid, &labels)) {
        json_object_put(o);
        l->skipped++;
        return 0;
    }
    int rc = 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        struct mg_label_entry *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            rc = -1;
        else {
            l->v = v;
            l->cap = cap;
        }
    }
    if (rc == 0) {
        struct mg_label_entry *e = &l->v[l->n];
        e->path = strdup(path);
        e->thrid = strdup(thrid);
        e->labels =
            strdup(labels ? json_object_to_json_string_ext(
                                labels, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                          : "");
        e->seq = l->n;
        if (e->path == NULL || e->thrid == NULL || e->labels == NULL) {
            entry_free(e);
            rc = -1;
        } else {
            l->n++;
        }
    }
    json_object_put(o);
    return rc;
}

int mg_labels_load(struct mg_labels *l, const char *file)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    int rc = 0;
    while (rc == 0 && (r = getline(&line, &cap, f)) >= 0) {
        size_t n = (size_t)r;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        rc = mg_labels_add_line(l, line, n);
    }
    if (rc == 0 && ferror(f))
        rc = -1;
    free(line);
    fclose(f);
    mg_labels_index(l);
    return rc;
}

/* By path, and for one path the later line first. */
static int cmp_entry(const void *a, const void *b)
{
    const struct mg_label_entry *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    if (c != 0)
        return c;
    return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

void mg_labels_index(struct mg_labels *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), cmp_entry);
}

const struct mg_label_entry *mg_labels_find(const struct mg_labels *l, const char *path, size_t n)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strncmp(l->v[mid].path, path, n);
        if (c == 0 && l->v[mid].path[n] != '\0')
            c = 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < l->n && strncmp(l->v[lo].path, path, n) == 0 && l->v[lo].path[n] == '\0')
        return &l->v[lo];
    return NULL;
}
