/*
 * fuzz_msgrow.c - libFuzzer target for the per-message table's inputs: an
 * address-list header value (To/Cc/Bcc, from mail), and a row's wire form
 * as a (possibly compromised) worker sends it, written out as CSV. Checks
 * that every mailbox handed out is non-empty and holds an '@', and that a
 * decoded row re-encodes to the very same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/msgparse.h"
#include "mailgrab/msgrow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_addr(void *ctx, const char *addr, size_t len)
{
    (void)ctx;
    if (len == 0 || memchr(addr, '@', len) == NULL)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    if (size <= MG_MSG_MAX_FIELD && mg_address_list(p, size, check_addr, NULL) < -1)
        abort();
    struct mg_msgrow r;
    if (mg_msgrow_decode(p, size, &r) == 0) {
        struct mg_buf again, line;
        mg_buf_init(&again, MG_MSGROW_MAX);
        mg_buf_init(&line, 4 * MG_MSGROW_MAX);
        if (mg_msgrow_encode(&r, &again) != 0 || again.len != size ||
            memcmp(again.data, p, size) != 0)
            abort();
        FILE *f = fopen("/dev/null", "w");
        if (f == NULL || mg_msgrow_csv_write(f, &r, &line) != 0)
            abort();
        fclose(f);
        mg_buf_finish(&again);
        mg_buf_finish(&line);
    }
    return 0;
}
