/*
 * fuzz_mboxname.c - libFuzzer target for mailbox names as a server sends them
 * (LIST): modified UTF-7 decoding, then the mapping to a directory name, whose
 * promises are checked on every input: one component, never "." or "..",
 * no leading dot, no control bytes, bounded length.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/mboxname.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_path(const char *name)
{
    char path[MG_MBOX_PATH_MAX + 1];
    mg_mbox_to_path(name, path, sizeof(path));
    size_t n = strlen(path);
    if (n == 0 || n > MG_MBOX_PATH_MAX || path[0] == '.' || strchr(path, '/') != NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[2048], utf8[4096], back[4096];
    if (size >= sizeof(in))
        size = sizeof(in) - 1;
    memcpy(in, data, size);
    in[size] = '\0';
    check_path(in); /* raw bytes, as when a name is not valid modified UTF-7 */
    if (mg_mbox_from_imap(in, utf8, sizeof(utf8)) == 0) {
        check_path(utf8);
        /* A decoded name must encode again, and decode to itself. */
        if (mg_mbox_to_imap(utf8, back, sizeof(back)) != 0)
            abort();
        char again[4096];
        if (mg_mbox_from_imap(back, again, sizeof(again)) != 0 || strcmp(again, utf8) != 0)
            abort();
    }
    return 0;
}
