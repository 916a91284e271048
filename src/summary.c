/*
 * summary.c - the --summary-json report (declared in backup.h): one JSON
 * document per run, built with json-c and written atomically, mode 0600.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailgrab/backup.h"
#include "mailgrab/fsutil.h"

json_object *mg_summary_box_json(const struct mg_mailbox_report *r)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "name", json_object_new_string(r->name));
    json_object_object_add(o, "path", json_object_new_string(r->dir));
    json_object_object_add(o, "uidvalidity", json_object_new_int64(r->uidvalidity));
    json_object_object_add(o, "listed", json_object_new_int64((int64_t)r->listed));
    json_object_object_add(o, "new", json_object_new_int64((int64_t)r->fetched));
    json_object_object_add(o, "skipped", json_object_new_int64((int64_t)r->skipped));
    json_object_object_add(o, "linked", json_object_new_int64((int64_t)r->linked));
    json_object_object_add(o, "unlinked", json_object_new_int64((int64_t)r->unlinked));
    json_object_object_add(o, "reflagged", json_object_new_int64((int64_t)r->reflagged));
    json_object_object_add(o, "failed", json_object_new_int64((int64_t)r->failed));
    json_object_object_add(o, "vanished", json_object_new_int64((int64_t)r->vanished));
    json_object_object_add(o, "bytes", json_object_new_int64((int64_t)r->bytes));
    json_object_object_add(o, "wire_bytes", json_object_new_int64((int64_t)r->wire_bytes));
    json_object_object_add(o, "seconds", json_object_new_double(r->seconds));
    json_object_object_add(o, "status", json_object_new_string(mg_code_name(r->code)));
    json_object_object_add(o, "error", r->error[0] ? json_object_new_string(r->error) : NULL);
    return o;
}

json_object *mg_summary_account_json(const struct mg_report *rep)
{
    json_object *a = json_object_new_object();
    json_object_object_add(a, "account", json_object_new_string(rep->account));
    json_object_object_add(a, "server", rep->server ? json_object_new_string(rep->server) : NULL);
    json_object_object_add(a, "user", rep->user ? json_object_new_string(rep->user) : NULL);
    json_object_object_add(a, "status", json_object_new_string(mg_code_name(rep->code)));
    json_object_object_add(a, "exit_code", json_object_new_int(rep->code));
    json_object_object_add(a, "class", json_object_new_string(mg_code_class(rep->code)));
    json_object_object_add(a, "error", rep->error[0] ? json_object_new_string(rep->error) : NULL);
    json_object_object_add(a, "wire_bytes", json_object_new_int64((int64_t)rep->wire_bytes));
    json_object_object_add(a, "stored_bytes", json_object_new_int64((int64_t)rep->stored_bytes));
    json_object_object_add(a, "compressed_sessions", json_object_new_int(rep->compressed));
    json_object *boxes = json_object_new_array();
    for (size_t j = 0; j < rep->nboxes; j++)
        json_object_array_add(boxes, mg_summary_box_json(&rep->boxes[j]));
    json_object_object_add(a, "mailboxes", boxes);
    return a;
}

json_object *mg_summary_json(const struct mg_report *reps, size_t n, int exit_code)
{
    json_object *root = json_object_new_object();
    json_object *accounts = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(accounts, mg_summary_account_json(&reps[i]));
    json_object_object_add(root, "exit_code", json_object_new_int(exit_code));
    json_object_object_add(root, "status", json_object_new_string(mg_code_name(exit_code)));
    json_object_object_add(root, "class", json_object_new_string(mg_code_class(exit_code)));
    json_object_object_add(root, "accounts", accounts);
    return root;
}

enum mg_code mg_summary_write(const char *path, const struct mg_report *reps, size_t n,
                              int exit_code, struct mg_error *err)
{
    json_object *root = mg_summary_json(reps, n, exit_code);
    const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY |
                                                                JSON_C_TO_STRING_NOSLASHESCAPE);

    enum mg_code rc = MG_OK;
    /* e.g. ~/.cache on a fresh account; a failure shows when writing. */
    mg_mkdirs_parent(path, 0700);
    size_t len = strlen(text);
    char *doc = malloc(len + 2);
    if (doc == NULL) {
        json_object_put(root);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    memcpy(doc, text, len);
    memcpy(doc + len, "\n", 2);
    const char *step = "write";
    int e = mg_replace_file(path, doc, len + 1, &step);
    free(doc);
    if (e != 0)
        rc = mg_error_set(err, e == ENAMETOOLONG ? MG_E_USAGE : MG_E_IO, "cannot %s %s: %s", step,
                          path, strerror(e));
    json_object_put(root);
    return rc;
}
