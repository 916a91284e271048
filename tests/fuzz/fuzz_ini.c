/*
 * fuzz_ini.c - libFuzzer target for the config file's INI syntax. Checks, on
 * every input, that keys are non-empty, trimmed, and never hold a separator,
 * and that values are trimmed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/ini.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(void *ctx, unsigned line, const char *section, const char *key, const char *value)
{
    (void)ctx;
    (void)line;
    if (section == NULL)
        abort();
    if (key == NULL)
        return value == NULL ? 0 : (abort(), 0);
    size_t k = strlen(key), v = strlen(value);
    if (k == 0 || strpbrk(key, "=:\n") != NULL || key[0] == ' ' || key[k - 1] == ' ')
        abort();
    if (v > 0 && (value[0] == ' ' || value[v - 1] == ' ' || value[v - 1] == '\r'))
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned bad;
    int rc = mg_ini_parse((const char *)data, size, check, NULL, &bad);
    (void)rc;
    return 0;
}
