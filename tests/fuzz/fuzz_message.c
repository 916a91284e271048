/* fuzz_message.c - libFuzzer target for the message-analysis entry point */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "mailgrab/analyze.h"
#include "mailgrab/stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int decode_into(void *ctx, const char *chunk, size_t len)
{
    return mg_stats_decode(ctx, chunk, len) == 0 ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mg_stopwords sw;
    static int ready;
    if (!ready) {
        setenv("TZ", "UTC", 1);
        if (mg_stopwords_default(&sw) != 0)
            abort();
        ready = 1;
    }
    struct mg_stats s, t;
    mg_stats_init(&s);
    mg_stats_init(&t);
    if (mg_analyze_message((const char *)data, size, size, 0, &sw, &s) == 0) {
        /* every message counts exactly once, and its encoding must round-trip */
        if (s.messages != 1 || s.senders.len != 1)
            abort();
        if (mg_stats_encode(&s, 4096, decode_into, &t) != 0 || t.messages != 1)
            abort();
    }
    /* the decoder sees hostile bytes too (a compromised worker) */
    mg_stats_decode(&t, (const char *)data, size);
    mg_stats_finish(&s);
    mg_stats_finish(&t);
    return 0;
}
