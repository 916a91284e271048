/* ini.c - see include/mailgrab/ini.h */
#include "mailgrab/ini.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* White space around keys and values: a CR is one too, wherever a line
 * ends with it. */
static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Trim [*b, *e) of white space. */
static void trim(const char **b, const char **e)
{
    while (*b < *e && blank(**b))
        (*b)++;
    while (*e > *b && blank((*e)[-1]))
        (*e)--;
}

/* Where an inline comment starts in [b, e): ';' or '#' after white space. */
static const char *comment_at(const char *b, const char *e)
{
    for (const char *p = b + 1; p < e; p++)
        if ((*p == ';' || *p == '#') && blank(p[-1]))
            return p;
    return e;
}

static char *copy(const char *b, const char *e)
{
    char *s = malloc((size_t)(e - b) + 1);
    if (s != NULL) {
        memcpy(s, b, (size_t)(e - b));
        s[e - b] = '\0';
    }
    return s;
}

int mg_ini_parse(const char *text, size_t len, mg_ini_handler h, void *ctx, unsigned *bad_line)
{
    const char *p = text, *end = text + len;
    char *section = copy("", "");
    char *key = NULL, *value = NULL;
    int rc = MG_INI_OK;
    unsigned line = 0;
    *bad_line = 0;
    if (section == NULL)
        return MG_INI_NOMEM;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    while (p < end && rc == MG_INI_OK) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *b = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        if ((size_t)(e - b) > MG_INI_LINE_MAX) {
            rc = MG_INI_TOO_LONG;
            break;
        }
        if (memchr(b, '\0', (size_t)(e - b)) != NULL) {
            rc = MG_INI_NUL;
            break;
        }
        if (e > b && e[-1] == '\r')
            e--;
        trim(&b, &e);
        if (b == e || *b == ';' || *b == '#')
            continue;
        if (*b == '[') {
            const char *close = memchr(b, ']', (size_t)(e - b));
            const char *rest = close ? close + 1 : e;
            const char *after = rest;
            trim(&after, &e);
            if (close == NULL || (after < e && *after != ';' && *after != '#')) {
                rc = MG_INI_SYNTAX;
                break;
            }
            const char *nb = b + 1, *ne = close;
            trim(&nb, &ne);
            free(section);
            if ((section = copy(nb, ne)) == NULL) {
                rc = MG_INI_NOMEM;
                break;
            }
            rc = h(ctx, line, section, NULL, NULL);
            continue;
        }
        const char *sep = b;
        while (sep < e && *sep != '=' && *sep != ':')
            sep++;
        const char *kb = b, *ke = sep;
        trim(&kb, &ke);
        if (sep == e || kb == ke) {
            rc = MG_INI_SYNTAX;
            break;
        }
        const char *vb = sep + 1, *ve = e;
        trim(&vb, &ve);
        ve = vb < ve ? comment_at(vb, ve) : ve;
        if (vb > sep + 1 && vb < ve && (*vb == ';' || *vb == '#'))
            ve = vb; /* `key = # comment` has no value */
        trim(&vb, &ve);
        key = copy(kb, ke);
        value = copy(vb, ve);
        if (key == NULL || value == NULL)
            rc = MG_INI_NOMEM;
        else
            rc = h(ctx, line, section, key, value);
        free(key);
        free(value);
        key = value = NULL;
    }
    if (rc < 0)
        *bad_line = line;
    free(section);
    return rc;
}
