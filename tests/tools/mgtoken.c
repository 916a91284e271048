/*
 * mgtoken - drive the OAuth2 token cache from the integration tests.
 *
 * Starts --threads threads that each ask for an access token at once; with
 * --reject, each then reports that token as refused by the server and asks
 * again (all stale reports of one token must cost one refresh). Prints
 * "token T" per thread and round, then "refreshes N", on stdout. Exits with
 * the mg_code of the first failure, its message on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/log.h"
#include "mailgrab/oauth2.h"

#define THREADS_MAX 64

struct worker {
    pthread_t tid;
    struct mg_oauth2 *o;
    pthread_barrier_t *start;
    bool reject;
    char token[2][MG_OAUTH2_TOKEN_MAX];
    enum mg_code rc;
    struct mg_error err;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(w->start);
    w->rc = mg_oauth2_token(w->o, w->token[0], sizeof(w->token[0]), &w->err);
    if (!w->reject)
        return NULL;
    /* Everyone holds the first token before anyone reports it, and everyone
     * has reported before anyone asks again: the worst case for reject. */
    pthread_barrier_wait(w->start);
    if (w->rc == MG_OK)
        mg_oauth2_reject(w->o, w->token[0]);
    pthread_barrier_wait(w->start);
    if (w->rc == MG_OK)
        w->rc = mg_oauth2_token(w->o, w->token[1], sizeof(w->token[1]), &w->err);
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"cafile", required_argument, NULL, 'a'},
        {"client-id", required_argument, NULL, 'i'},
        {"client-secret-file", required_argument, NULL, 's'},
        {"refresh-token-file", required_argument, NULL, 'r'},
        {"reject", no_argument, NULL, 'R'},
        {"threads", required_argument, NULL, 'n'},
        {"token-command", required_argument, NULL, 'c'},
        {"token-url", required_argument, NULL, 'u'},
        {"verbose", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    struct mg_oauth2_cfg cfg = {0};
    long threads = 1;
    bool reject = false;
    int verbosity = MG_NORMAL;
    int c;
    while ((c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            cfg.cafile = optarg;
            break;
        case 'i':
            cfg.client_id = optarg;
            break;
        case 's':
            cfg.client_secret_file = optarg;
            break;
        case 'r':
            cfg.refresh_token_file = optarg;
            break;
        case 'R':
            reject = true;
            break;
        case 'n': {
            char *end;
            errno = 0;
            threads = strtol(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || threads < 1 || threads > THREADS_MAX) {
                fprintf(stderr, "mgtoken: --threads wants 1-%d\n", THREADS_MAX);
                return MG_E_USAGE;
            }
            break;
        }
        case 'c':
            cfg.token_command = optarg;
            break;
        case 'u':
            cfg.token_url = optarg;
            break;
        case 'v':
            verbosity++;
            break;
        default:
            return MG_E_USAGE;
        }
    }
    mg_log_set_level(verbosity > MG_DEBUG ? MG_DEBUG : verbosity);

    struct mg_error err;
    mg_error_clear(&err);
    struct mg_oauth2 *o;
    if (mg_oauth2_create(&cfg, &o, &err) != MG_OK) {
        mg_err("%s", err.msg);
        return err.code;
    }
    struct worker *w = calloc((size_t)threads, sizeof(*w));
    pthread_barrier_t start;
    if (w == NULL || pthread_barrier_init(&start, NULL, (unsigned)threads) != 0)
        return MG_E_INTERNAL;
    for (long i = 0; i < threads; i++) {
        w[i].o = o;
        w[i].start = &start;
        w[i].reject = reject;
        if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0)
            return MG_E_INTERNAL;
    }
    int rc = MG_OK;
    for (long i = 0; i < threads; i++)
        pthread_join(w[i].tid, NULL);
    for (long i = 0; i < threads; i++) {
        if (w[i].rc != MG_OK) {
            if (rc == MG_OK) {
                mg_err("%s", w[i].err.msg);
                rc = w[i].rc;
            }
            continue;
        }
        for (int r = 0; r < (reject ? 2 : 1); r++)
            printf("token %d %s\n", r, w[i].token[r]);
    }
    printf("refreshes %lu\n", mg_oauth2_refreshes(o));
    pthread_barrier_destroy(&start);
    free(w);
    mg_oauth2_destroy(o);
    return rc;
}
