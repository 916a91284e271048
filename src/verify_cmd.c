/* verify_cmd.c - see include/mailgrab/verify.h: accounts, the server, the summary */
#include "mailgrab/verify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailgrab/backup.h"
#include "mailgrab/cancel.h"
#include "mailgrab/log.h"
#include "mailgrab/mboxname.h"
#include "mailgrab/imap.h"
#include "mailgrab/pool.h"
#include "mailgrab/store.h"
#include "mailgrab/tls.h"

#define WALK_DEPTH 2 /* OUTPUT/<mailbox>, or OUTPUT/<account>/<mailbox> */

struct dirs {
    char **v;
    size_t n;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Does the directory name base belong to one of the mailboxes a names
 * (itself, or one of its older generations)? Every one without names. */
static bool wanted(const struct mg_account *a, const char *base)
{
    if (a->all_mailboxes == 1 || a->nmailboxes == 0)
        return true;
    for (size_t i = 0; i < a->nmailboxes; i++) {
        char p[MG_MBOX_PATH_MAX + 1];
        mg_mbox_to_path(a->mailboxes[i], p, sizeof(p));
        size_t n = strlen(p);
        if (strncmp(base, p, n) == 0 &&
            (base[n] == '\0' || strncmp(base + n, "%uidvalidity=", 13) == 0))
            return true;
    }
    return false;
}

/* Mailbox directories (those with a state file) under rel, relative to the
 * output; a mailbox directory is not searched further. */
static enum mg_code find_boxes(const struct mg_account *a, const char *rel, int depth,
                               struct dirs *out, struct mg_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s%s%s", a->output, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (d == NULL)
        return mg_error_set(err, MG_E_IO, "cannot read %s: %s", path, strerror(errno));
    enum mg_code rc = MG_OK;
    struct dirent *de;
    while (rc == MG_OK && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char sub[PATH_MAX], full[PATH_MAX + 32];
        if (snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >=
            (int)sizeof(sub))
            continue;
        snprintf(full, sizeof(full), "%s/%s", a->output, sub);
        struct stat sb;
        if (lstat(full, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        snprintf(full, sizeof(full), "%s/%s/.mailgrab-state", a->output, sub);
        if (lstat(full, &sb) != 0) {
            if (depth < WALK_DEPTH)
                rc = find_boxes(a, sub, depth + 1, out, err);
            continue;
        }
        if (!wanted(a, de->d_name))
            continue;
        char **v = reallocarray(out->v, out->n + 1, sizeof(*v));
        if (v == NULL || (v[out->n] = strdup(sub)) == NULL) {
            out->v = v != NULL ? v : out->v;
            rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
            break;
        }
        out->v = v;
        out->n++;
    }
    closedir(d);
    return rc;
}

/* How lines name a mailbox directory: relative to the output the user
 * gave, so with accounts sharing it, "<account>/<mailbox>". */
static void label_of(const char *sub, const char *rel, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", sub, sub[0] ? "/" : "", rel);
}

static enum mg_code verify_offline(const struct mg_account *a, const char *sub,
                                   struct mg_verify_tally *t, struct mg_error *err)
{
    struct dirs d = {0};
    enum mg_code rc = find_boxes(a, "", 1, &d, err);
    if (rc == MG_OK && d.n > 1)
        qsort(d.v, d.n, sizeof(*d.v), cmp_str);
    for (size_t i = 0; rc == MG_OK && i < d.n; i++) {
        char dir[PATH_MAX + 8];
        char label[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/%s", a->output, d.v[i]);
        label_of(sub, d.v[i], label, sizeof(label));
        rc = mg_verify_dir(dir, label, NULL, stdout, t, err);
    }
    if (rc == MG_OK && d.n == 0 && a->nmailboxes > 0 && a->all_mailboxes != 1)
        rc = mg_error_set(err, MG_E_MAILBOX, "no backup of %s%s in %s", a->mailboxes[0],
                          a->nmailboxes > 1 ? " (or the other mailboxes named)" : "", a->output);
    for (size_t i = 0; i < d.n; i++)
        free(d.v[i]);
    free(d.v);
    return rc;
}

/* One mailbox against the server's listing of it. */
static enum mg_code verify_box(const struct mg_account *a, const char *sub, struct mg_pool *pool,
                               const struct mg_backup_box *x, struct mg_verify_tally *t,
                               struct mg_error *err)
{
    struct mg_mailbox_info mi;
    struct mg_msglist msgs = {0};
    enum mg_code rc = mg_pool_list(pool, x->imap, 1, &mi, &msgs, err);
    if (rc != MG_OK)
        goto out;
    mg_msglist_sort(&msgs);
    char dir[PATH_MAX];
    int r = mg_store_locate(a->output, x->path, mi.uidvalidity, dir, sizeof(dir));
    if (r < 0) {
        rc = mg_error_set(err, MG_E_IO, "cannot read the state of %s/%s", a->output, x->path);
        goto out;
    }
    /* Lines name the directory as it is under the output. */
    char label[PATH_MAX];
    label_of(sub, r == 1 ? dir + strlen(a->output) + 1 : x->path, label, sizeof(label));
    if (r == 1) {
        rc = mg_verify_dir(dir, label, &msgs, stdout, t, err);
        goto out;
    }
    t->mailboxes++;
    for (size_t i = 0; i < msgs.n; i++) {
        printf("missing %s uid %u\n", label, msgs.v[i].uid);
        t->missing++;
    }
out:
    mg_msglist_finish(&msgs);
    return rc;
}

static enum mg_code verify_online(const struct mg_account *a, const char *sub,
                                  const struct mg_creds *cr, struct mg_verify_tally *t,
                                  struct mg_error *err)
{
    struct mg_backup_conn c;
    struct mg_backup_box *boxes = NULL;
    size_t n = 0;
    bool gmail = false;
    enum mg_code rc = mg_backup_connect(a, cr, &c, err);
    struct mg_pool *pool = c.pool;
    if (rc == MG_OK)
        rc = mg_backup_mailboxes(a, pool, &boxes, &n, &gmail, err);
    enum mg_code worst = rc;
    for (size_t i = 0; rc == MG_OK && i < n; i++) {
        struct mg_error e;
        mg_error_clear(&e);
        enum mg_code brc = verify_box(a, sub, pool, &boxes[i], t, &e);
        brc = mg_cancel_check(brc, &e);
        if (brc == MG_OK)
            continue;
        if (brc != MG_E_MAILBOX) { /* the account cannot go on */
            *err = e;
            worst = brc;
            break;
        }
        mg_backup_err(a, e.msg);
        worst = brc;
    }
    if (worst == MG_E_MAILBOX)
        mg_error_set(err, MG_E_MAILBOX, "%s: some mailboxes could not be verified", a->name);
    free(boxes);
    mg_backup_disconnect(&c);
    return worst;
}

enum mg_code mg_verify_account(const struct mg_account *a, const struct mg_creds *cr, bool offline,
                               struct mg_verify_tally *t)
{
    struct mg_error err;
    mg_error_clear(&err);
    struct stat sb;
    int lockfd = -1;
    enum mg_code rc = MG_OK;
    if (stat(a->output, &sb) != 0 || !S_ISDIR(sb.st_mode))
        rc = mg_error_set(&err, MG_E_IO, "no backup to verify in %s: %s", a->output,
                          stat(a->output, &sb) != 0 ? strerror(errno) : "not a directory");
    /* A backup running now would show files it has named but not yet
     * recorded: wait for it instead. */
    if (rc == MG_OK)
        rc = mg_store_lock(a->output, &lockfd, &err);
    /* Accounts sharing an output each keep their backup below it. */
    struct mg_account own = *a;
    char dir[PATH_MAX];
    if (rc == MG_OK && mg_backup_dir(a, dir, sizeof(dir)) != 0)
        rc = mg_error_set(&err, MG_E_USAGE, "output path too long: %s", a->output);
    own.output = dir;
    const char *sub = rc == MG_OK ? dir + strlen(a->output) : "";
    sub += sub[0] == '/';
    if (rc == MG_OK)
        rc = offline ? verify_offline(&own, sub, t, &err) : verify_online(&own, sub, cr, t, &err);
    if (rc != MG_OK && rc != MG_E_MAILBOX)
        mg_backup_err(a, err.msg);
    if (lockfd >= 0)
        close(lockfd);
    return rc;
}

int mg_verify_finish(const struct mg_verify_tally *t, enum mg_code rc)
{
    size_t problems = mg_verify_problems(t);
    if (mg_log_level() >= MG_NORMAL) {
        fprintf(stderr,
                "mailgrab: verify: %zu mailbox%s, %zu stored message%s checked: ", t->mailboxes,
                t->mailboxes == 1 ? "" : "es", t->checked, t->checked == 1 ? "" : "s");
        if (problems == 0) {
            fprintf(stderr, "%s\n", rc == MG_OK ? "whole" : "no problem found in what was read");
        } else {
            fprintf(stderr, "%zu problem%s:", problems, problems == 1 ? "" : "s");
            const struct {
                const char *what;
                size_t n;
            } kinds[] = {{"missing", t->missing},       {"deleted", t->deleted},
                         {"altered", t->altered},       {"size", t->size},
                         {"unexpected", t->unexpected}, {"unrecorded", t->unrecorded},
                         {"damaged", t->damaged}};
            for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
                if (kinds[i].n > 0)
                    fprintf(stderr, " %zu %s", kinds[i].n, kinds[i].what);
            fputc('\n', stderr);
        }
    }
    if (rc != MG_OK && rc != MG_E_MAILBOX)
        return rc;
    return problems > 0 ? MG_E_VERIFY : rc;
}
