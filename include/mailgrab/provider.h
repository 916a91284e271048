/*
 * provider.h - what mailgrab knows of particular mail providers: their IMAP
 * host and port, OAuth2 endpoints and scope, and how many simultaneous
 * sessions they allow an account.
 *
 * Owns the facts only, as one static table; nothing here does I/O.
 * Memory: returned pointers are to the static table. Thread-safe.
 */
#ifndef MAILGRAB_PROVIDER_H
#define MAILGRAB_PROVIDER_H

#include <stdbool.h>

struct mg_provider {
    const char *name; /* as --provider takes it */
    const char *imap_host;
    const char *imap_port;
    const char *auth_url;
    const char *token_url;
    const char *scope;
    bool offline_consent;     /* add access_type=offline&prompt=consent (Google) */
    unsigned max_connections; /* per account, shared with the user's other clients */
    const char *domains[3];   /* IMAP hosts under these domains are this provider's */
    /* default --daily-limit in bytes (0: none): below the provider's own
     * daily download limit, leaving room for the user's other clients */
    unsigned long long daily_limit;
};

/* The provider called name ("gmail", "outlook"), or NULL. */
const struct mg_provider *mg_provider_find(const char *name);

/* The most simultaneous IMAP sessions the provider of host allows one
 * account (Gmail: 15), or 0 when not known. */
unsigned mg_provider_max_connections(const char *host);

/* The default daily download budget for host's provider in bytes (Gmail:
 * 2000 MB of its about 2500 MB a day), or 0 when there is none. */
unsigned long long mg_provider_daily_limit(const char *host);

#endif
