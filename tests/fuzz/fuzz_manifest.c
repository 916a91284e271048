/*
 * fuzz_manifest.c - libFuzzer target for manifest files, which anyone with
 * access to the backup could have edited. Checked on every input: reading
 * the file whole and in small pieces gives the same entries and counts; the
 * good length ends on a newline; every entry read is written back to a line
 * that reads as the same entry.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sums {
    uint64_t uids, sizes, names;
};

static void each(void *ctx, const struct mg_manifest_entry *e)
{
    struct sums *s = ctx;
    s->uids += e->uid;
    s->sizes += e->size;
    s->names += e->name_len;
    char line[MG_MANIFEST_LINE_MAX + 2];
    int n = mg_manifest_format_line(e, line, sizeof(line));
    if (n <= 0 || line[n - 1] != '\n')
        abort();
    struct mg_manifest_entry back;
    if (mg_manifest_parse_line(line, (size_t)n - 1, &back) != 0 || back.uid != e->uid ||
        back.size != e->size || back.origin != e->origin || back.name_len != e->name_len ||
        memcmp(back.name, e->name, e->name_len) != 0 ||
        memcmp(back.sha256, e->sha256, sizeof(e->sha256)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct sums whole = {0}, pieces = {0};
    struct mg_manifest_reader a, b;
    mg_manifest_reader_init(&a, each, &whole);
    mg_manifest_reader_feed(&a, text, size);
    mg_manifest_reader_end(&a);
    mg_manifest_reader_init(&b, each, &pieces);
    for (size_t off = 0, k = 0; off < size; k++) {
        size_t piece = 1 + (size > 0 ? data[k % size] % 97 : 0);
        if (piece > size - off)
            piece = size - off;
        mg_manifest_reader_feed(&b, text + off, piece);
        off += piece;
    }
    mg_manifest_reader_end(&b);
    if (a.entries != b.entries || a.damaged != b.damaged || a.first_damaged != b.first_damaged ||
        a.torn != b.torn || a.good_len != b.good_len || a.lineno != b.lineno ||
        memcmp(&whole, &pieces, sizeof(whole)) != 0)
        abort();
    if (a.good_len > size || (a.good_len > 0 && data[a.good_len - 1] != '\n'))
        abort();
    if (a.torn != (a.good_len < size))
        abort();
    return 0;
}
