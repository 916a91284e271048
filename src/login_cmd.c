/* login_cmd.c - see include/mailgrab/login_cmd.h */
#include "mailgrab/login_cmd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mailgrab/error.h"
#include "mailgrab/log.h"
#include "mailgrab/https.h"
#include "mailgrab/oauth2.h"
#include "mailgrab/password.h"
#include "mailgrab/provider.h"
#include "mailgrab/settings.h"

#define REQUEST_MAX 8192 /* the redirect's request head; real ones are ~1 KB */
#define PARAM_MAX 2048   /* one decoded query value (an authorization code) */
#define URL_MAX 8192

struct login_opts {
    const char *auth_url, *token_url, *scope;
    const char *client_id, *client_secret_file, *refresh_file, *cafile;
    bool offline_consent;
    long timeout;
    int verbosity;
};

static void usage(FILE *f)
{
    fputs("usage: mailgrab login --provider gmail|outlook --oauth2-client-id ID\n"
          "                      --oauth2-refresh-token-file FILE [options]\n"
          "       mailgrab login --oauth2-auth-url URL --oauth2-token-url URL\n"
          "                      --oauth2-scope SCOPE --oauth2-client-id ID\n"
          "                      --oauth2-refresh-token-file FILE [options]\n"
          "\n"
          "Authorize mailgrab once in a browser and store the refresh token that later\n"
          "runs use. Prints a URL to open; the browser comes back to a listener on\n"
          "127.0.0.1 and the refresh token is written to FILE (mode 0600).\n"
          "\n",
          f);
    mg_settings_help(MG_CMD_LOGIN, f);
}

struct parsed {
    struct login_opts *o;
    const char *provider;
    bool *help;
};

static enum mg_code apply(void *ctx, const struct mg_setting *s, const struct mg_value *v,
                          struct mg_error *err)
{
    struct parsed *p = ctx;
    struct login_opts *o = p->o;
    switch (s->id) {
    case MG_SET_HELP:
        *p->help = true;
        break;
    case MG_SET_LOGIN_TIMEOUT:
        o->timeout = (long)v->num;
        break;
    case MG_SET_QUIET:
        o->verbosity = MG_QUIET;
        break;
    case MG_SET_VERBOSE:
        if (o->verbosity < MG_DEBUG)
            o->verbosity++;
        break;
    case MG_SET_OAUTH2_AUTH_URL:
        o->auth_url = v->text;
        break;
    case MG_SET_OAUTH2_CAFILE:
        o->cafile = v->text;
        break;
    case MG_SET_OAUTH2_CLIENT_ID:
        o->client_id = v->text;
        break;
    case MG_SET_OAUTH2_CLIENT_SECRET_FILE:
        o->client_secret_file = v->text;
        break;
    case MG_SET_PROVIDER:
        p->provider = v->text;
        break;
    case MG_SET_OAUTH2_REFRESH_TOKEN_FILE:
        o->refresh_file = v->text;
        break;
    case MG_SET_OAUTH2_SCOPE:
        o->scope = v->text;
        break;
    case MG_SET_OAUTH2_TOKEN_URL:
        o->token_url = v->text;
        break;
    default:
        return mg_error_set(err, MG_E_INTERNAL, "--%s has no use here", s->name);
    }
    return MG_OK;
}

static enum mg_code parse(int argc, char **argv, struct login_opts *o, bool *help,
                          struct mg_error *err)
{
    memset(o, 0, sizeof(*o));
    o->timeout = 300;
    o->verbosity = MG_NORMAL;
    *help = false;
    struct parsed ps = {o, NULL, help};
    const char *extra;
    size_t n;
    enum mg_code rc = mg_settings_parse(MG_CMD_LOGIN, argc, argv, apply, &ps, &extra, 0, &n, err);
    if (rc != MG_OK || *help)
        return rc;
    const char *provider = ps.provider;
    if (provider != NULL) {
        const struct mg_provider *p = mg_provider_find(provider);
        if (p == NULL)
            return mg_error_set(err, MG_E_USAGE, "unknown provider '%s': use gmail or outlook",
                                provider);
        /* Explicit options win over the preset. */
        if (o->auth_url == NULL)
            o->auth_url = p->auth_url;
        if (o->token_url == NULL)
            o->token_url = p->token_url;
        if (o->scope == NULL)
            o->scope = p->scope;
        o->offline_consent = p->offline_consent;
    }
    if (o->auth_url == NULL || o->token_url == NULL || o->scope == NULL)
        return mg_error_set(err, MG_E_USAGE,
                            "give --provider, or --oauth2-auth-url, --oauth2-token-url and "
                            "--oauth2-scope");
    if (o->client_id == NULL)
        return mg_error_set(err, MG_E_USAGE,
                            "--oauth2-client-id is required (from your app's OAuth client)");
    if (o->refresh_file == NULL)
        return mg_error_set(err, MG_E_USAGE, "--oauth2-refresh-token-file is required");
    if (strncmp(o->token_url, "https://", 8) != 0)
        return mg_error_set(err, MG_E_USAGE, "--oauth2-token-url must be an https:// URL");
    return MG_OK;
}

/* n random bytes as base64url: 32 bytes give the 43-character PKCE verifier. */
static enum mg_code random_b64url(size_t n, char *buf, size_t cap, struct mg_error *err)
{
    uint8_t raw[64];
    if (n > sizeof(raw))
        return mg_error_set(err, MG_E_INTERNAL, "random_b64url: %zu bytes", n);
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(raw + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return mg_error_set(err, MG_E_INTERNAL, "getrandom: %s", strerror(errno));
        got += (size_t)r;
    }
    long len = mg_base64(raw, n, true, buf, cap);
    explicit_bzero(raw, sizeof(raw));
    if (len < 0)
        return mg_error_set(err, MG_E_INTERNAL, "random_b64url: buffer too small");
    return MG_OK;
}

static int listen_loopback(unsigned *port, struct mg_error *err)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        mg_error_set(err, MG_E_IO, "socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    socklen_t sl = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        mg_error_set(err, MG_E_IO, "cannot listen on 127.0.0.1: %s", strerror(errno));
        close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static long ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms =
        (long)(deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

/* Read a request head (up to the blank line) within the deadline. Returns
 * its length, 0 on timeout or a closed connection, -1 when it is too big. */
static long read_head(int fd, char *buf, size_t cap, const struct timespec *deadline)
{
    size_t len = 0;
    for (;;) {
        if (len >= 4 && memmem(buf, len, "\r\n\r\n", 4) != NULL)
            return (long)len;
        if (len == cap)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        long ms = ms_left(deadline);
        if (ms == 0)
            return 0;
        int pr = poll(&p, 1, ms > 30000 ? 30000 : (int)ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return 0;
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        len += (size_t)r;
    }
}

static void respond(int fd, int status, const char *reason, const char *title, const char *text)
{
    char body[1024], msg[1536];
    int bn = snprintf(body, sizeof(body),
                      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>mailgrab: %s"
                      "</title></head><body><h1>%s</h1><p>%s</p></body></html>\n",
                      title, title, text);
    if (bn < 0 || (size_t)bn >= sizeof(body))
        return;
    int mn = snprintf(msg, sizeof(msg),
                      "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\n"
                      "Content-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n"
                      "\r\n%s",
                      status, reason, bn, body);
    if (mn < 0 || (size_t)mn >= sizeof(msg))
        return;
    size_t off = 0;
    while (off < (size_t)mn) {
        ssize_t w = send(fd, msg + off, (size_t)mn - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode a query value (n bytes) into buf; -1 if malformed or too long. */
static int url_decode(const char *s, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || o + 1 >= cap)
            return -1;
        buf[o++] = c;
    }
    buf[o] = '\0';
    return 0;
}

struct redirect {
    char code[PARAM_MAX];
    char state[PARAM_MAX];
    char error[256];
    char error_description[512];
    bool has_code, has_state, has_error;
};

/* Pick the parameters we need out of a query string (n bytes). */
static int parse_query(const char *q, size_t n, struct redirect *rd)
{
    size_t i = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && q[end] != '&')
            end++;
        const char *eq = memchr(q + i, '=', end - i);
        if (eq != NULL) {
            size_t klen = (size_t)(eq - (q + i));
            const char *v = eq + 1;
            size_t vlen = (size_t)(q + end - v);
            char *dst = NULL;
            size_t cap = 0;
            bool *flag = NULL;
            if (klen == 4 && memcmp(q + i, "code", 4) == 0)
                dst = rd->code, cap = sizeof(rd->code), flag = &rd->has_code;
            else if (klen == 5 && memcmp(q + i, "state", 5) == 0)
                dst = rd->state, cap = sizeof(rd->state), flag = &rd->has_state;
            else if (klen == 5 && memcmp(q + i, "error", 5) == 0)
                dst = rd->error, cap = sizeof(rd->error), flag = &rd->has_error;
            else if (klen == 17 && memcmp(q + i, "error_description", 17) == 0)
                dst = rd->error_description, cap = sizeof(rd->error_description);
            if (dst != NULL && url_decode(v, vlen, dst, cap) != 0)
                return -1;
            if (flag != NULL)
                *flag = true;
        }
        i = end + 1;
    }
    return 0;
}

static void printable(char *s)
{
    for (; *s != '\0'; s++)
        if (*s < 0x20 || *s >= 0x7f || *s == '<' || *s == '>' || *s == '&')
            *s = '?';
}

/*
 * Wait for the browser's redirect: the first request for "/" with a query.
 * Other requests (a favicon, a probe) get a 404 and we keep waiting. On
 * success *cfd is the open connection, to be answered after the exchange.
 */
static enum mg_code wait_redirect(int lfd, long timeout, struct redirect *rd, int *cfd,
                                  struct mg_error *err)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout;
    char *head = malloc(REQUEST_MAX);
    if (head == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    enum mg_code rc;
    for (;;) {
        long ms = ms_left(&deadline);
        struct pollfd p = {lfd, POLLIN, 0};
        int pr = ms > 0 ? poll(&p, 1, ms > 60000 ? 60000 : (int)ms) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0) {
            rc = mg_error_set(err, MG_E_IO, "poll: %s", strerror(errno));
            break;
        }
        if (pr == 0) {
            if (ms_left(&deadline) > 0)
                continue;
            rc = mg_error_set(err, MG_E_OAUTH,
                              "no answer from the browser within %ld s: run mailgrab login "
                              "again (--timeout sets the wait)",
                              timeout);
            break;
        }
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        long n = read_head(fd, head, REQUEST_MAX, &deadline);
        if (n <= 0) {
            if (n < 0)
                respond(fd, 431, "Request Header Fields Too Large", "Request too large", "");
            close(fd);
            continue;
        }
        size_t len = (size_t)n;
        const char *sp1 = memchr(head, ' ', len);
        const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - head)) : NULL;
        if (sp1 == NULL || sp2 == NULL || (size_t)(sp1 - head) != 3 ||
            memcmp(head, "GET", 3) != 0) {
            respond(fd, 405, "Method Not Allowed", "Not here", "mailgrab waits for a GET.");
            close(fd);
            continue;
        }
        const char *target = sp1 + 1;
        size_t tlen = (size_t)(sp2 - target);
        if (tlen < 2 || memcmp(target, "/?", 2) != 0) {
            respond(fd, 404, "Not Found", "Not here", "");
            close(fd);
            continue;
        }
        memset(rd, 0, sizeof(*rd));
        if (parse_query(target + 2, tlen - 2, rd) != 0) {
            respond(fd, 400, "Bad Request", "Bad request",
                    "The redirect could not be read. Run mailgrab login again.");
            close(fd);
            rc = mg_error_set(err, MG_E_OAUTH,
                              "the browser's redirect was malformed: run mailgrab login again");
            break;
        }
        *cfd = fd;
        rc = MG_OK;
        break;
    }
    explicit_bzero(head, REQUEST_MAX);
    free(head);
    return rc;
}

static enum mg_code build_auth_url(const struct login_opts *o, const char *redirect_uri,
                                   const char *state, const char *challenge, char *url, size_t cap,
                                   struct mg_error *err)
{
    size_t base = strlen(o->auth_url);
    if (base + 2 >= cap)
        return mg_error_set(err, MG_E_USAGE, "--oauth2-auth-url is too long");
    memcpy(url, o->auth_url, base);
    url[base] = strchr(o->auth_url, '?') != NULL ? '&' : '?';
    struct mg_buf f;
    mg_buf_init_fixed(&f, url + base + 1, cap - base - 1);
    mg_form_add(&f, "response_type", "code");
    mg_form_add(&f, "client_id", o->client_id);
    mg_form_add(&f, "redirect_uri", redirect_uri);
    mg_form_add(&f, "scope", o->scope);
    mg_form_add(&f, "state", state);
    mg_form_add(&f, "code_challenge", challenge);
    mg_form_add(&f, "code_challenge_method", "S256");
    if (o->offline_consent) {
        /* Without these Google returns no refresh token on a repeated login. */
        mg_form_add(&f, "access_type", "offline");
        mg_form_add(&f, "prompt", "consent");
    }
    if (f.failed)
        return mg_error_set(err, MG_E_USAGE, "the authorization URL would be too long");
    return MG_OK;
}

static enum mg_code exchange(const struct login_opts *o, const char *secret, const char *code,
                             const char *redirect_uri, const char *verifier,
                             struct mg_oauth2_reply *r, struct mg_error *err)
{
    size_t cap = 2 * MG_OAUTH2_TOKEN_MAX + 2 * PARAM_MAX;
    char *form = malloc(cap);
    if (form == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    struct mg_buf f;
    mg_buf_init_fixed(&f, form, cap);
    mg_form_add(&f, "grant_type", "authorization_code");
    mg_form_add(&f, "code", code);
    mg_form_add(&f, "redirect_uri", redirect_uri);
    mg_form_add(&f, "client_id", o->client_id);
    if (secret != NULL)
        mg_form_add(&f, "client_secret", secret);
    mg_form_add(&f, "code_verifier", verifier);
    enum mg_code rc;
    if (f.failed)
        rc = mg_error_set(err, MG_E_OAUTH, "the code exchange request is too long");
    else
        rc = mg_https_post(o->token_url, o->cafile, form, f.len, r, err);
    explicit_bzero(form, cap);
    free(form);
    return rc;
}

static int fail(const struct mg_error *err)
{
    mg_err("%s", err->msg);
    return (int)err->code;
}

int mg_login_main(int argc, char **argv)
{
    struct login_opts o;
    struct mg_error err;
    mg_error_clear(&err);
    bool help;
    if (parse(argc, argv, &o, &help, &err) != MG_OK)
        return fail(&err);
    if (help) {
        usage(stdout);
        return 0;
    }
    mg_log_set_level(o.verbosity);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_DUMPABLE, 0);
    umask(077);

    char *secret = NULL;
    if (o.client_secret_file != NULL &&
        mg_oauth2_read_secret(o.client_secret_file, "client secret", &secret, &err) != MG_OK)
        return fail(&err);

    int rc;
    int lfd = -1, cfd = -1;
    char verifier[64], challenge[64], state[64], redirect_uri[64];
    char *url = malloc(URL_MAX);
    struct redirect *rd = calloc(1, sizeof(*rd));
    struct mg_oauth2_reply *reply = calloc(1, sizeof(*reply));
    if (url == NULL || rd == NULL || reply == NULL) {
        mg_error_set(&err, MG_E_INTERNAL, "out of memory");
        goto out_err;
    }
    if (random_b64url(32, verifier, sizeof(verifier), &err) != MG_OK ||
        random_b64url(16, state, sizeof(state), &err) != MG_OK)
        goto out_err;
    if (mg_pkce_challenge(verifier, challenge, sizeof(challenge)) != 0) {
        mg_error_set(&err, MG_E_INTERNAL, "PKCE challenge buffer too small");
        goto out_err;
    }
    unsigned port;
    lfd = listen_loopback(&port, &err);
    if (lfd < 0)
        goto out_err;
    snprintf(redirect_uri, sizeof(redirect_uri), "http://127.0.0.1:%u/", port);
    if (build_auth_url(&o, redirect_uri, state, challenge, url, URL_MAX, &err) != MG_OK)
        goto out_err;

    printf("Open this URL in a browser on this computer, sign in and allow access\n"
           "(mailgrab waits %ld s for the browser to come back to %s):\n\n%s\n\n",
           o.timeout, redirect_uri, url);
    fflush(stdout);
    mg_info("listening on %s for the redirect", redirect_uri);

    if (wait_redirect(lfd, o.timeout, rd, &cfd, &err) != MG_OK)
        goto out_err;
    close(lfd);
    lfd = -1;

    size_t slen = strlen(state);
    if (!rd->has_state || strlen(rd->state) != slen || CRYPTO_memcmp(rd->state, state, slen) != 0) {
        respond(cfd, 400, "Bad Request", "Refused",
                "This answer does not belong to the login mailgrab started. Nothing was "
                "stored. Run mailgrab login again.");
        mg_error_set(&err, MG_E_OAUTH,
                     "the browser's redirect carried the wrong state, so it does not answer this "
                     "login (stale tab or forged request): refused; run mailgrab login again");
        goto out_err;
    }
    if (rd->has_error || !rd->has_code || rd->code[0] == '\0') {
        printable(rd->error);
        printable(rd->error_description);
        respond(cfd, 400, "Bad Request", "Not authorized",
                "No access was granted. Run mailgrab login again.");
        mg_error_set(&err, MG_E_OAUTH,
                     "the provider did not grant access (%s%s%s): run mailgrab "
                     "login again and allow access",
                     rd->has_error ? rd->error : "no code", rd->error_description[0] ? ": " : "",
                     rd->error_description);
        goto out_err;
    }
    mg_info("exchanging the authorization code at the token endpoint");
    if (exchange(&o, secret, rd->code, redirect_uri, verifier, reply, &err) != MG_OK) {
        respond(cfd, 502, "Bad Gateway", "Login failed",
                "The token endpoint refused the code; mailgrab printed why. Run mailgrab "
                "login again.");
        goto out_err;
    }
    if (reply->refresh_token[0] == '\0') {
        respond(cfd, 502, "Bad Gateway", "Login failed",
                "No refresh token was issued; mailgrab printed why.");
        mg_error_set(&err, MG_E_OAUTH,
                     "the token endpoint issued no refresh token: the scope must allow offline "
                     "access (Google: access_type=offline and prompt=consent, which --provider "
                     "gmail sets; Microsoft: offline_access)");
        goto out_err;
    }
    if (mg_secret_write(o.refresh_file, reply->refresh_token, strlen(reply->refresh_token), &err) !=
        MG_OK) {
        respond(cfd, 500, "Internal Server Error", "Login failed",
                "The refresh token could not be saved; mailgrab printed why.");
        goto out_err;
    }
    respond(cfd, 200, "OK", "mailgrab is authorized",
            "You can close this tab and return to the terminal.");
    printf("Authorized. The refresh token is in %s (mode 0600).\n", o.refresh_file);
    fflush(stdout);
    rc = MG_OK;
    goto out;

out_err:
    rc = fail(&err);
out:
    if (cfd >= 0)
        close(cfd);
    if (lfd >= 0)
        close(lfd);
    explicit_bzero(verifier, sizeof(verifier));
    explicit_bzero(state, sizeof(state));
    if (rd != NULL)
        explicit_bzero(rd, sizeof(*rd));
    free(rd);
    if (reply != NULL)
        mg_oauth2_reply_wipe(reply);
    free(reply);
    free(url);
    mg_secret_free(secret);
    return rc;
}
