/* provider.c - see include/mailgrab/provider.h */
#include "mailgrab/provider.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

static const struct mg_provider providers[] = {
    {
        .name = "gmail",
        .imap_host = "imap.gmail.com",
        .imap_port = "993",
        .auth_url = "https://accounts.google.com/o/oauth2/v2/auth",
        .token_url = "https://oauth2.googleapis.com/token",
        .scope = "https://mail.google.com/",
        .offline_consent = true,
        .max_connections = 15,
        .daily_limit = 2000ull * 1000 * 1000,
        .domains = {"gmail.com", "googlemail.com"},
    },
    {
        .name = "outlook",
        .imap_host = "outlook.office365.com",
        .imap_port = "993",
        .auth_url = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        .token_url = "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        .scope = "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
        .offline_consent = false,
        .max_connections = 0, /* not documented; users report about 20 */
    },
};

#define NPROVIDERS (sizeof(providers) / sizeof(providers[0]))

const struct mg_provider *mg_provider_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < NPROVIDERS; i++)
        if (strcmp(providers[i].name, name) == 0)
            return &providers[i];
    return NULL;
}

/* host is domain or a name under it. */
static bool host_is(const char *host, const char *domain)
{
    size_t h = strlen(host), d = strlen(domain);
    if (h == d)
        return strcasecmp(host, domain) == 0;
    return h > d && host[h - d - 1] == '.' && strcasecmp(host + h - d, domain) == 0;
}

static const struct mg_provider *by_host(const char *host)
{
    for (size_t i = 0; host != NULL && i < NPROVIDERS; i++)
        for (size_t j = 0; j < 3 && providers[i].domains[j] != NULL; j++)
            if (host_is(host, providers[i].domains[j]))
                return &providers[i];
    return NULL;
}

unsigned mg_provider_max_connections(const char *host)
{
    const struct mg_provider *p = by_host(host);
    return p != NULL ? p->max_connections : 0;
}

unsigned long long mg_provider_daily_limit(const char *host)
{
    const struct mg_provider *p = by_host(host);
    return p != NULL ? p->daily_limit : 0;
}
