/*
 * fuzz_oauth2_reply.c - libFuzzer target for what a token endpoint answers:
 * the first byte picks the HTTP status, the rest is the body. Whatever comes
 * back, an accepted reply holds NUL-terminated tokens within their bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/oauth2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 400, 401, 500};
    static struct mg_oauth2_reply r;
    if (size == 0)
        return 0;
    long status = statuses[data[0] % 4];
    struct mg_error err;
    memset(&r, 0, sizeof(r));
    if (mg_oauth2_parse_reply(status, (const char *)data + 1, size - 1, "fuzz.example", &r, &err) ==
        MG_OK) {
        if (memchr(r.access_token, '\0', sizeof(r.access_token)) == NULL ||
            memchr(r.refresh_token, '\0', sizeof(r.refresh_token)) == NULL ||
            r.access_token[0] == '\0')
            abort();
    } else if (memchr(err.msg, '\0', sizeof(err.msg)) == NULL) {
        abort();
    }
    mg_oauth2_reply_wipe(&r);
    return 0;
}
