/*
 * roles.h - which stored mailbox has which SPECIAL-USE role (\Sent, \All,
 * ...), kept beside a backup in OUTPUT/.mailgrab-roles, so that what reads
 * the backup later (mailgrab stats) knows the sent mail without guessing
 * from names ("Sent", "Gesendet", "[Gmail]/Sent Mail").
 *
 * The file is text, one line per mailbox with a role: the roles as the
 * server names them, separated by spaces, a tab, and the mailbox's
 * directory under OUTPUT (a name made by mboxname.h: no '/', no tab, no
 * newline). A backup that listed the server's mailboxes rewrites it
 * atomically (0600); lines that do not parse are skipped when read. A
 * directory's UIDVALIDITY generations (NAME%uidvalidity=N) have its roles.
 *
 * Owns: struct mg_roles owns its strings; init/finish (finish accepts
 * zeroed). Thread-safety: one thread at a time per struct.
 */
#ifndef MAILGRAB_ROLES_H
#define MAILGRAB_ROLES_H

#include <stddef.h>

#define MG_ROLES_FILE ".mailgrab-roles"
#define MG_ROLES_MAX_BYTES (1u << 20) /* a longer file is read this far */

struct mg_roles_entry {
    char *dir;
    unsigned roles; /* enum mg_role bits (source.h) */
};

struct mg_roles {
    struct mg_roles_entry *v;
    size_t n;
    size_t skipped; /* lines not understood */
};

void mg_roles_init(struct mg_roles *r);
void mg_roles_finish(struct mg_roles *r);

/* Add dir with its roles (0: nothing is added). 0, or -1 out of memory. */
int mg_roles_add(struct mg_roles *r, const char *dir, unsigned roles);

/* Rewrite dirfd/MG_ROLES_FILE with r. 0, or an errno (and *step says
 * what failed, as fsutil.h). */
int mg_roles_save(const struct mg_roles *r, int dirfd, const char **step);

/* Parse the text of such a file into r (added to what r holds). 0, or -1
 * out of memory. */
int mg_roles_parse(struct mg_roles *r, const char *text, size_t len);

/* Read dirfd/MG_ROLES_FILE into r: 1 when read, 0 when there is none,
 * -1 on another error (errno set). */
int mg_roles_load(struct mg_roles *r, int dirfd);

/* The role bit of a SPECIAL-USE attribute or Gmail's \\Important, named
 * with or without its backslash, in any case ("\\Sent", "sent"); 0 for a
 * name that is no role. The one table of role names: LIST and this file. */
unsigned mg_role_bit(const char *name, size_t len);

/* The roles of the mailbox stored in directory name (or a generation of
 * it); 0 when none is known. */
unsigned mg_roles_of(const struct mg_roles *r, const char *name);

#endif
