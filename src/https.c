/* https.c - see include/mailgrab/https.h */
#include "mailgrab/https.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/cancel.h"
#include "mailgrab/log.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

enum mg_code mg_https_init(struct mg_error *err)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return mg_error_set(err, MG_E_INTERNAL, "cannot initialize libcurl");
    return MG_OK;
}

struct body {
    char buf[MG_OAUTH2_REPLY_MAX];
    size_t len;
    bool overflow;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct body *b = ctx;
    size_t n = size * nmemb;
    if (n > sizeof(b->buf) - b->len) {
        b->overflow = true;
        return 0; /* aborts the transfer */
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    return n;
}

static enum mg_code curl_fail(CURLcode cc, const char *host, const char *detail,
                              struct mg_error *err)
{
    const char *why = detail[0] != '\0' ? detail : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return mg_error_retry(err, MG_E_OAUTH, MG_RETRY_LATER,
                              "cannot resolve the token endpoint %s: %s", host, why);
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return mg_error_retry(err, MG_E_OAUTH, MG_RETRY_LATER,
                              "cannot reach the token endpoint %s: %s", host, why);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return mg_error_set(err, MG_E_OAUTH,
                            "TLS to the token endpoint %s failed: %s (check --oauth2-cafile or "
                            "the system CA store)",
                            host, why);
    case CURLE_UNSUPPORTED_PROTOCOL:
        return mg_error_set(err, MG_E_USAGE, "the token endpoint must be an https:// URL (%s)",
                            host);
    default:
        return mg_error_retry(err, MG_E_OAUTH, MG_RETRY_LATER,
                              "request to the token endpoint %s failed: %s", host, why);
    }
}

/* A cancel (cancel.h) ends a request within about a second. */
static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)ctx, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return mg_cancelled() ? 1 : 0;
}

enum mg_code mg_https_post(const char *url, const char *cafile, const char *body, size_t len,
                           struct mg_oauth2_reply *r, struct mg_error *err)
{
    char host[256];
    if (mg_url_host(url, host, sizeof(host)) != 0 || strncmp(url, "https://", 8) != 0)
        return mg_error_set(err, MG_E_USAGE, "the token endpoint must be an https:// URL");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return mg_error_set(err, MG_E_INTERNAL, "cannot initialize libcurl");
    CURL *c = curl_easy_init();
    struct body *b = calloc(1, sizeof(*b));
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (c == NULL || b == NULL || hdrs == NULL) {
        curl_easy_cleanup(c);
        free(b);
        curl_slist_free_all(hdrs);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    char detail[CURL_ERROR_SIZE] = "";
    bool set = curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https") == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK &&
               (cafile == NULL || curl_easy_setopt(c, CURLOPT_CAINFO, cafile) == CURLE_OK) &&
               curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_USERAGENT, "mailgrab") == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_WRITEDATA, b) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_ERRORBUFFER, detail) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress) == CURLE_OK &&
               curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
    enum mg_code rc;
    if (!set) {
        rc = mg_error_set(err, MG_E_INTERNAL, "libcurl refused an option");
        goto out;
    }
    CURLcode cc = curl_easy_perform(c);
    if (b->overflow) {
        rc = mg_error_set(err, MG_E_OAUTH, "the token endpoint %s sent more than %u bytes", host,
                          MG_OAUTH2_REPLY_MAX);
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = cc == CURLE_ABORTED_BY_CALLBACK ? mg_cancel_error(err)
                                             : curl_fail(cc, host, detail, err);
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    mg_debug("token endpoint %s answered HTTP %ld (%zu bytes)", host, status, b->len);
    rc = mg_oauth2_parse_reply(status, b->buf, b->len, host, r, err);
out:
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    explicit_bzero(b, sizeof(*b));
    free(b);
    return rc;
}
