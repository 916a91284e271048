/*
 * summary.c - the --summary-json report (declared in backup.h): one JSON
 * document per run, built with json-c and written atomically, mode 0600.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailgrab/backup.h"

/* Create the directories above path (0700), like mkdir -p; failures show
 * up when the file itself cannot be created. */
static void make_parents(const char *path)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
        return;
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(dir, 0700);
        *p = '/';
    }
}

static json_object *box_json(const struct mg_mailbox_report *r)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(r->name));
    json_object_object_add(o, "path", json_object_new_string(r->dir));
    json_object_object_add(o, "uidvalidity", json_object_new_int64(r->uidvalidity));
    json_object_object_add(o, "listed", json_object_new_int64((int64_t)r->listed));
    json_object_object_add(o, "new", json_object_new_int64((int64_t)r->fetched));
    json_object_object_add(o, "skipped", json_object_new_int64((int64_t)r->skipped));
    json_object_object_add(o, "failed", json_object_new_int64((int64_t)r->failed));
    json_object_object_add(o, "vanished", json_object_new_int64((int64_t)r->vanished));
    json_object_object_add(o, "bytes", json_object_new_int64((int64_t)r->bytes));
    json_object_object_add(o, "seconds", json_object_new_double(r->seconds));
    json_object_object_add(o, "status", json_object_new_string(mg_code_name(r->code)));
    json_object_object_add(o, "error", r->error[0] ? json_object_new_string(r->error) : NULL);
    return o;
}

enum mg_code mg_summary_write(const char *path, const struct mg_report *reps, size_t n,
                              int exit_code, struct mg_error *err)
{
    json_object *root = json_object_new_object();
    json_object *accounts = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        const struct mg_report *rep = &reps[i];
        json_object *a = json_object_new_object();
        json_object_object_add(a, "account", json_object_new_string(rep->account));
        json_object_object_add(a, "server",
                               rep->server ? json_object_new_string(rep->server) : NULL);
        json_object_object_add(a, "user", rep->user ? json_object_new_string(rep->user) : NULL);
        json_object_object_add(a, "status", json_object_new_string(mg_code_name(rep->code)));
        json_object_object_add(a, "exit_code", json_object_new_int(rep->code));
        json_object_object_add(a, "error",
                               rep->error[0] ? json_object_new_string(rep->error) : NULL);
        json_object *boxes = json_object_new_array();
        for (size_t j = 0; j < rep->nboxes; j++)
            json_object_array_add(boxes, box_json(&rep->boxes[j]));
        json_object_object_add(a, "mailboxes", boxes);
        json_object_array_add(accounts, a);
    }
    json_object_object_add(root, "exit_code", json_object_new_int(exit_code));
    json_object_object_add(root, "status", json_object_new_string(mg_code_name(exit_code)));
    json_object_object_add(root, "accounts", accounts);
    const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE);

    enum mg_code rc = MG_OK;
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        json_object_put(root);
        return mg_error_set(err, MG_E_USAGE, "--summary-json path too long");
    }
    make_parents(path); /* e.g. ~/.cache on a fresh account */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        json_object_put(root);
        return mg_error_set(err, MG_E_IO, "cannot write %s: %s", path, strerror(errno));
    }
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        if (ok)
            e = errno;
        unlink(tmp);
        rc = mg_error_set(err, MG_E_IO, "cannot write %s: %s", path, strerror(e));
    }
    json_object_put(root);
    return rc;
}
