/* estimate.c - see include/mailgrab/estimate.h */
#include "mailgrab/estimate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailgrab/backup.h"
#include "mailgrab/gmail.h"
#include "mailgrab/imap.h"
#include "mailgrab/log.h"
#include "mailgrab/pool.h"
#include "mailgrab/store.h"
#include "mailgrab/tls.h"

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

struct uids {
    uint32_t *v;
    size_t n, cap;
};

/* The UIDs stored in dir (either layout), read without changing anything. */
static void scan_uids(const char *dir, struct uids *u)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint32_t uid = mg_store_name_uid(MG_FORMAT_EML, de->d_name);
        if (uid == 0)
            uid = mg_store_name_uid(MG_FORMAT_MAILDIR, de->d_name);
        if (uid == 0)
            continue;
        if (u->n == u->cap) {
            size_t cap = u->cap ? u->cap * 2 : 256;
            uint32_t *v = reallocarray(u->v, cap, sizeof(*v));
            if (v == NULL)
                break;
            u->v = v;
            u->cap = cap;
        }
        u->v[u->n++] = uid;
    }
    closedir(d);
}

static void stored_uids(const char *output, const char *component, uint32_t uidvalidity,
                        struct uids *u)
{
    char dir[PATH_MAX], sub[PATH_MAX + 8];
    if (mg_store_locate(output, component, uidvalidity, dir, sizeof(dir)) != 1)
        return;
    scan_uids(dir, u);
    snprintf(sub, sizeof(sub), "%s/cur", dir);
    scan_uids(sub, u);
    snprintf(sub, sizeof(sub), "%s/new", dir);
    scan_uids(sub, u);
    if (u->n > 1)
        qsort(u->v, u->n, sizeof(*u->v), cmp_u32);
}

static bool has(const struct uids *u, uint32_t uid)
{
    return u->n > 0 && bsearch(&uid, u->v, u->n, sizeof(*u->v), cmp_u32) != NULL;
}

/* One mailbox: what is listed and not stored; on Gmail, each message id
 * once (seen holds the ids counted or stored already). */
static enum mg_code estimate_box(const char *output, struct mg_pool *pool,
                                 const struct mg_backup_box *x, struct mg_gmail_index *seen,
                                 struct mg_estimate_box *r, struct mg_error *err)
{
    struct mg_mailbox_info mi;
    struct uids u = {0};
    snprintf(r->name, sizeof(r->name), "%s", x->utf8);
    enum mg_code rc;
    if (seen != NULL) {
        struct mg_gmlist l = {0};
        rc = mg_pool_gmlist(pool, x->imap, 1, 0, &mi, &l, err);
        if (rc == MG_OK)
            stored_uids(output, x->path, mi.uidvalidity, &u);
        for (size_t i = 0; rc == MG_OK && i < l.n; i++) {
            const struct mg_gmmsg *m = &l.v[i];
            r->listed++;
            struct mg_gmail_entry *e = mg_gmail_index_get(seen, m->msgid, false);
            if (has(&u, m->uid) || (e != NULL && e->seen)) {
                r->stored++;
            } else {
                r->messages++;
                r->bytes += m->size;
            }
            /* Stored here or fetched by the backup: later folders link it. */
            e = mg_gmail_index_get(seen, m->msgid, true);
            if (e != NULL)
                e->seen = true;
        }
        mg_gmlist_finish(&l);
    } else {
        struct mg_msglist l = {0};
        rc = mg_pool_list(pool, x->imap, 1, &mi, &l, err);
        if (rc == MG_OK) {
            mg_msglist_sort(&l);
            stored_uids(output, x->path, mi.uidvalidity, &u);
        }
        for (size_t i = 0; rc == MG_OK && i < l.n; i++) {
            r->listed++;
            if (has(&u, l.v[i].uid)) {
                r->stored++;
            } else {
                r->messages++;
                r->bytes += l.v[i].size;
            }
        }
        mg_msglist_finish(&l);
    }
    free(u.v);
    return rc;
}

/* labels.jsonl of earlier runs: the ids stored already count as seen. */
static void load_stored_ids(const char *output, struct mg_gmail_index *ix)
{
    int fd = open(output, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    size_t bad;
    struct mg_error err;
    if (mg_gmail_index_load(ix, fd, &bad, &err) != MG_OK)
        mg_warn("%s", err.msg);
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->v[i].msgid != 0 && ix->v[i].path != NULL) {
            struct stat sb;
            ix->v[i].seen =
                fstatat(fd, ix->v[i].path, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode);
        }
    close(fd);
}

enum mg_code mg_estimate_account(const struct mg_account *a, const struct mg_creds *cr,
                                 struct mg_estimate *e, struct mg_error *err)
{
    memset(e, 0, sizeof(*e));
    e->account = a->name;
    struct mg_backup_conn c = {0};
    struct mg_backup_box *boxes = NULL;
    size_t n = 0;
    struct mg_gmail_index seen;
    mg_gmail_index_init(&seen);
    char output[PATH_MAX];
    enum mg_code rc = mg_backup_dir(a, output, sizeof(output)) == 0
                          ? MG_OK
                          : mg_error_set(err, MG_E_USAGE, "output path too long: %s", a->output);
    if (rc == MG_OK)
        rc = mg_backup_connect(a, cr, &c, err);
    struct mg_pool *pool = c.pool;
    if (rc == MG_OK)
        rc = mg_backup_mailboxes(a, pool, &boxes, &n, &e->gmail, err);
    if (rc == MG_OK && n > 0 && (e->boxes = calloc(n, sizeof(*e->boxes))) == NULL)
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    if (rc == MG_OK && e->gmail)
        load_stored_ids(output, &seen);
    for (size_t i = 0; rc == MG_OK && i < n; i++) {
        struct mg_estimate_box *r = &e->boxes[e->nboxes++];
        rc = estimate_box(output, pool, &boxes[i], e->gmail ? &seen : NULL, r, err);
        if (rc == MG_E_MAILBOX && a->all_mailboxes) {
            mg_warn("skipped: %s", err->msg); /* as a backup would */
            mg_error_clear(err);
            rc = MG_OK;
        }
        e->messages += r->messages;
        e->bytes += r->bytes;
    }
    mg_gmail_index_finish(&seen);
    free(boxes);
    mg_backup_disconnect(&c);
    return rc;
}

void mg_estimate_finish(struct mg_estimate *e)
{
    free(e->boxes);
    e->boxes = NULL;
    e->nboxes = 0;
}

uint64_t mg_estimate_days(const struct mg_estimate *e)
{
    if (e->bytes == 0)
        return 0;
    if (e->daily_limit == 0)
        return 1;
    return (e->bytes + e->daily_limit - 1) / e->daily_limit;
}

static json_object *box_json(const struct mg_estimate_box *b)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(b->name));
    json_object_object_add(o, "listed", json_object_new_int64((int64_t)b->listed));
    json_object_object_add(o, "stored", json_object_new_int64((int64_t)b->stored));
    json_object_object_add(o, "messages", json_object_new_int64((int64_t)b->messages));
    json_object_object_add(o, "bytes", json_object_new_int64((int64_t)b->bytes));
    return o;
}

static int print_json(FILE *f, const struct mg_estimate *v, size_t n)
{
    json_object *top = json_object_new_object();
    json_object *accounts = json_object_new_array();
    uint64_t bytes = 0, days = 0;
    size_t messages = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *a = json_object_new_object();
        json_object_object_add(a, "account", json_object_new_string(v[i].account));
        json_object_object_add(a, "gmail", json_object_new_boolean(v[i].gmail));
        json_object_object_add(a, "messages", json_object_new_int64((int64_t)v[i].messages));
        json_object_object_add(a, "bytes", json_object_new_int64((int64_t)v[i].bytes));
        json_object_object_add(a, "days", json_object_new_int64((int64_t)mg_estimate_days(&v[i])));
        json_object_object_add(a, "daily_limit",
                               v[i].daily_limit ? json_object_new_int64((int64_t)v[i].daily_limit)
                                                : NULL);
        json_object *boxes = json_object_new_array();
        for (size_t k = 0; k < v[i].nboxes; k++)
            json_object_array_add(boxes, box_json(&v[i].boxes[k]));
        json_object_object_add(a, "mailboxes", boxes);
        json_object_array_add(accounts, a);
        messages += v[i].messages;
        bytes += v[i].bytes;
        if (mg_estimate_days(&v[i]) > days)
            days = mg_estimate_days(&v[i]);
    }
    json_object_object_add(top, "messages", json_object_new_int64((int64_t)messages));
    json_object_object_add(top, "bytes", json_object_new_int64((int64_t)bytes));
    json_object_object_add(top, "days", json_object_new_int64((int64_t)days));
    json_object_object_add(top, "accounts", accounts);
    const char *s = json_object_to_json_string_ext(top, JSON_C_TO_STRING_PLAIN |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE);
    int rc = s != NULL && fprintf(f, "%s\n", s) > 0 ? 0 : -1;
    json_object_put(top);
    return rc;
}

int mg_estimate_print(FILE *f, const struct mg_estimate *v, size_t n, bool json)
{
    if (json)
        return print_json(f, v, n) == 0 && fflush(f) == 0 ? 0 : -1;
    for (size_t i = 0; i < n; i++) {
        const struct mg_estimate *e = &v[i];
        char b[32], lim[32];
        fprintf(f, "%s%s\n", e->account, e->gmail ? " (Gmail: each message once)" : "");
        for (size_t k = 0; k < e->nboxes; k++) {
            mg_human_bytes(e->boxes[k].bytes, b, sizeof(b));
            fprintf(f, "  %-40s %8zu to download  %10s  (%zu listed, %zu stored%s)\n",
                    e->boxes[k].name, e->boxes[k].messages, b, e->boxes[k].listed,
                    e->boxes[k].stored, e->gmail ? " or linked" : "");
        }
        mg_human_bytes(e->bytes, b, sizeof(b));
        if (e->daily_limit > 0) {
            mg_human_bytes(e->daily_limit, lim, sizeof(lim));
            fprintf(f,
                    "  total: %zu messages, %s to download: %llu day%s at the daily limit of "
                    "%s\n",
                    e->messages, b, (unsigned long long)mg_estimate_days(e),
                    mg_estimate_days(e) == 1 ? "" : "s", lim);
        } else {
            fprintf(f, "  total: %zu messages, %s to download (no daily limit)\n", e->messages, b);
        }
    }
    return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}
