/*
 * fuzz_imapframe.c - libFuzzer target for the framing of server responses
 * (imapframe.h), which sees every byte a server sends. Checked on every
 * input: the verdict and the state do not depend on how the bytes were split
 * into reads, and the bounds hold.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/imapframe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* First byte: the modes and a read size for the split run. */
    bool consumed = data[0] & 1, bodies = data[0] & 2;
    size_t step = (size_t)(data[0] >> 2) + 1;
    data++;
    size--;
    struct mg_frame whole, split;
    mg_frame_init(&whole);
    mg_frame_init(&split);
    whole.fetch_consumed = split.fetch_consumed = consumed;
    whole.bodies_streamed = split.bodies_streamed = bodies;
    char why1[200], why2[200];
    enum mg_frame_state a = mg_frame_feed(&whole, data, size, why1, sizeof(why1));
    enum mg_frame_state b = MG_FRAME_OK;
    for (size_t i = 0; i < size && b == MG_FRAME_OK; i += step)
        b = mg_frame_feed(&split, data + i, size - i < step ? size - i : step, why2, sizeof(why2));
    if (a != b || (a != MG_FRAME_OK && strcmp(why1, why2) != 0))
        abort();
    if (a == MG_FRAME_OK &&
        (whole.response_bytes > MG_FRAME_RESPONSE_MAX || whole.kept > MG_FRAME_UNTAGGED_MAX ||
         whole.kept_bytes > MG_FRAME_KEPT_MAX || whole.kept != split.kept ||
         whole.literal_left != split.literal_left))
        abort();
    return 0;
}
