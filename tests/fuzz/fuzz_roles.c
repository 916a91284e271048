/*
 * fuzz_roles.c - libFuzzer target for a backup's .mailgrab-roles (roles.h),
 * which mailgrab stats reads from any directory it is given. Checked on
 * every input: each entry kept is a directory name without '/', tab or
 * newline, with a role, and is found again by mg_roles_of.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/roles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1); /* a read past the end is caught */
    if (p == NULL)
        return 0;
    memcpy(p, data, size);
    struct mg_roles r;
    mg_roles_init(&r);
    if (mg_roles_parse(&r, p, size) == 0) {
        for (size_t i = 0; i < r.n; i++) {
            const char *d = r.v[i].dir;
            if (d[0] == '\0' || strpbrk(d, "/\t\n") != NULL || r.v[i].roles == 0 ||
                (mg_roles_of(&r, d) & r.v[i].roles) != r.v[i].roles)
                abort();
        }
    }
    mg_roles_finish(&r);
    free(p);
    return 0;
}
