/*
 * creds.h - what an account logs in with: a user name and a password, or a
 * shared OAuth2 token source.
 *
 * Owns the types only: main.c fills them from password.h / oauth2.h, the
 * IMAP session reads them. Memory: every pointer is borrowed from whoever
 * filled the struct, for as long as sessions may log in. Thread-safety: read
 * only once filled; the token source is thread-safe (oauth2.h).
 */
#ifndef MAILGRAB_CREDS_H
#define MAILGRAB_CREDS_H

/* In the order of settings.c's choices for --auth. */
enum mg_auth { MG_AUTH_UNSET = -1, MG_AUTH_PASSWORD, MG_AUTH_XOAUTH2, MG_AUTH_OAUTHBEARER };

struct mg_oauth2;

struct mg_creds {
    const char *user;
    enum mg_auth auth;
    const char *password;    /* MG_AUTH_PASSWORD; never logged */
    struct mg_oauth2 *oauth; /* the OAuth mechanisms: one token source for all sessions */
};

#endif
