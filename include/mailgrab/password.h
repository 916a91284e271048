/*
 * password.h - where the password comes from, never argv.
 *
 * In order: --password-command (first line of its output), --password-file
 * (first line; refused if group or others may read it), MAILGRAB_PASSWORD, a
 * prompt without echo on the terminal. MAILGRAB_PASSWORD is taken out of the
 * environment once (mg_password_take_env) so that no child inherits it, and
 * serves every account that names no other source. The results are heap
 * memory owned by the caller, released with mg_secret_free (which wipes
 * it). Secret files are read and written here too, for OAuth2's. Not thread-safe.
 */
#ifndef MAILGRAB_PASSWORD_H
#define MAILGRAB_PASSWORD_H

#include <stddef.h>

#include "mailgrab/error.h"

/* Remove MAILGRAB_PASSWORD from the environment; return a copy or NULL. */
char *mg_password_take_env(void);

/* Wipe and remove MAILGRAB_PASSWORD without keeping it: for a forked child
 * (the analyzer) that must hold no secret. */
void mg_password_forget_env(void);

/* env: what mg_password_take_env returned (borrowed), or NULL. */
enum mg_code mg_password_get(const char *file, const char *command, const char *env,
                             const char *user, const char *host, char **out, struct mg_error *err);
void mg_secret_free(char *pw);

/*
 * The first line of a private file, or of what a command (run with
 * /bin/sh -c) prints, as a fresh heap string freed with mg_secret_free.
 * what names the secret in messages ("password", "--password-command").
 * Shared by passwords and OAuth2 secrets; failures are MG_E_USAGE.
 */
enum mg_code mg_secret_file(const char *path, const char *what, char **out, struct mg_error *err);
enum mg_code mg_secret_command(const char *cmd, const char *what, char **out, struct mg_error *err);

/* Replace path with data (len bytes) plus a newline, atomically
 * (fsutil.h: a fresh 0600 file, flushed, renamed, the directory flushed);
 * the copy made on the way is wiped. */
enum mg_code mg_secret_write(const char *path, const char *data, size_t len, struct mg_error *err);

/* Refuse a secret file that group or others can read (a config file too). */
enum mg_code mg_check_private(int fd, const char *path, struct mg_error *err);

#endif
