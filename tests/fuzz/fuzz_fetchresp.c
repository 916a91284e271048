/*
 * fuzz_fetchresp.c - libFuzzer target for the FETCH responses of a listing
 * (fetchresp.h), which a server sends and mailgrab parses itself. Checked
 * on every input: the labels stay inside the caller's buffer, each ended by
 * a NUL, and as many as counted.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/fetchresp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The input is the response without its CRLF, copied so that a read
     * past its end is caught. */
    char *p = malloc(size ? size : 1);
    if (p == NULL)
        return 0;
    memcpy(p, data, size);
    char labels[256];
    struct mg_fetchresp r;
    enum mg_fetchresp_result res = mg_fetchresp_parse(p, size, &r, labels, sizeof(labels));
    if (res == MG_FETCHRESP_OK && r.has_labels) {
        if (r.labels != labels || r.labels_len > sizeof(labels))
            abort();
        size_t n = 0;
        for (size_t off = 0; off < r.labels_len; n++) {
            const char *end = memchr(labels + off, '\0', r.labels_len - off);
            if (end == NULL)
                abort();
            off = (size_t)(end - labels) + 1;
        }
        if (n != r.nlabels)
            abort();
    }
    free(p);
    return 0;
}
