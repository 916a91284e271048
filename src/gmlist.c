/* gmlist.c - see include/mailgrab/gmlist.h */
#include "mailgrab/gmlist.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/mboxname.h"

int mg_gmlist_push(struct mg_gmlist *l, const struct mg_gmmsg *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        struct mg_gmmsg *v = reallocarray(l->v, cap, sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *m;
    return 0;
}

static int cmp_uid(const void *a, const void *b)
{
    uint32_t x = ((const struct mg_gmmsg *)a)->uid, y = ((const struct mg_gmmsg *)b)->uid;
    return (x > y) - (x < y);
}

void mg_gmlist_sort(struct mg_gmlist *l)
{
    if (l->n < 2)
        return;
    qsort(l->v, l->n, sizeof(*l->v), cmp_uid);
    size_t o = 1;
    for (size_t i = 1; i < l->n; i++) {
        if (l->v[i].uid == l->v[o - 1].uid) {
            free(l->v[i].labels);
            continue;
        }
        l->v[o++] = l->v[i];
    }
    l->n = o;
}

void mg_gmlist_finish(struct mg_gmlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].labels);
    free(l->v);
    *l = (struct mg_gmlist){0};
}

int mg_gmlabel_decode(const char *label, char *out, size_t cap)
{
    /* System labels (\Inbox, \Sent, \Important ...) are flags, not names. */
    if (label[0] != '\\' && mg_mbox_from_imap(label, out, cap) == 0)
        return 0;
    snprintf(out, cap, "%s", label);
    return label[0] == '\\' ? 0 : -1;
}

static const struct {
    char letter;
    const char *flag;
} system_flags[] = {
    {'D', "\\Draft"}, {'F', "\\Flagged"}, {'R', "\\Answered"}, {'S', "\\Seen"}, {'T', "\\Deleted"},
};

static bool add(json_object *o, const char *key, json_object *v)
{
    if (v == NULL)
        return false;
    json_object_object_add(o, key, v);
    return true;
}

char *mg_gmmsg_json(const struct mg_gmmsg *m, const char *path)
{
    json_object *o = json_object_new_object();
    json_object *labels = json_object_new_array();
    json_object *flags = json_object_new_array();
    char *out = NULL;
    if (o == NULL || labels == NULL || flags == NULL) {
        json_object_put(labels);
        json_object_put(flags);
        goto done;
    }
    /* Ids as decimal strings: 64-bit numbers lose digits in JSON readers
     * that keep numbers as doubles. */
    char id[24], thr[24], when[32] = "";
    snprintf(id, sizeof(id), "%" PRIu64, m->msgid);
    snprintf(thr, sizeof(thr), "%" PRIu64, m->thrid);
    struct tm tm;
    if (m->internaldate != (time_t)-1 && gmtime_r(&m->internaldate, &tm) != NULL)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *l = m->labels;
    bool ok = true;
    for (size_t i = 0; ok && i < m->nlabels; i++) {
        ok = json_object_array_add(labels, json_object_new_string(l)) == 0;
        l += strlen(l) + 1;
    }
    for (size_t i = 0; ok && i < sizeof(system_flags) / sizeof(system_flags[0]); i++)
        if (strchr(m->flags, system_flags[i].letter) != NULL)
            ok = json_object_array_add(flags, json_object_new_string(system_flags[i].flag)) == 0;
    ok = ok && add(o, "msgid", json_object_new_string(id)) &&
         add(o, "thrid", json_object_new_string(thr)) && add(o, "labels", labels);
    if (!ok) {
        json_object_put(flags);
        goto done;
    }
    ok = add(o, "path", json_object_new_string(path)) &&
         add(o, "size", json_object_new_int64(m->size));
    if (ok && when[0])
        ok = add(o, "internaldate", json_object_new_string(when));
    else if (ok)
        json_object_object_add(o, "internaldate", NULL); /* JSON null: none given */
    if (!ok) {
        json_object_put(flags);
        goto done;
    }
    ok = add(o, "flags", flags);
    if (!ok)
        goto done;
    const char *s =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    out = s ? strdup(s) : NULL;
done:
    json_object_put(o);
    return out;
}
