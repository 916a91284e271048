/* statsjson.c - see include/mailgrab/statsjson.h */
#include "mailgrab/statsjson.h"

#include <inttypes.h>
#include <string.h>

#include "mailgrab/csv.h"
#include "mailgrab/utf8.h"

int mg_json_string(struct mg_buf *out, const char *s, size_t n)
{
    if (mg_buf_putc(out, '"'))
        return -1;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            if (mg_buf_putc(out, '\\') || mg_buf_putc(out, c))
                return -1;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            if (mg_buf_append(out, esc, 6))
                return -1;
            i++;
        } else if (c < 0x80) {
            if (mg_buf_putc(out, c))
                return -1;
            i++;
        } else {
            uint32_t cp;
            size_t k = mg_utf8_decode((const unsigned char *)s + i, n - i, &cp);
            if (k == 0) {
                if (mg_buf_put_utf8(out, 0xFFFD))
                    return -1;
                i++;
            } else {
                if (mg_buf_append(out, s + i, k))
                    return -1;
                i += k;
            }
        }
    }
    return mg_buf_putc(out, '"');
}

struct json_ctx {
    FILE *f;
    struct mg_buf b;
    char stat[32];
    bool first_row;
};

static int json_row(void *ctx, const char *stat, const char *key, size_t keylen, uint64_t value)
{
    struct json_ctx *j = ctx;
    mg_buf_reset(&j->b);
    int rc = 0;
    if (strcmp(stat, j->stat) != 0) {
        if (j->stat[0] != '\0')
            rc = mg_buf_append(&j->b, "],\n", 3);
        rc = rc || mg_buf_append(&j->b, "  ", 2) || mg_json_string(&j->b, stat, strlen(stat)) ||
             mg_buf_append(&j->b, ":[", 2);
        snprintf(j->stat, sizeof(j->stat), "%s", stat);
        j->first_row = true;
    }
    char num[24];
    int nl = snprintf(num, sizeof(num), "%" PRIu64, value);
    rc = rc || (!j->first_row && mg_buf_putc(&j->b, ',')) ||
         mg_buf_append(&j->b, "\n   {\"key\":", 11) || mg_json_string(&j->b, key, keylen) ||
         mg_buf_append(&j->b, ",\"value\":", 9) || mg_buf_append(&j->b, num, (size_t)nl) ||
         mg_buf_putc(&j->b, '}');
    j->first_row = false;
    if (rc != 0 || fwrite(j->b.data, 1, j->b.len, j->f) != j->b.len)
        return -1;
    return 0;
}

int mg_stats_json_write(FILE *f, const struct mg_stats *s, size_t top)
{
    struct json_ctx j = {f, {0}, "", true};
    mg_buf_init(&j.b, 8 * MG_STATS_KEY_MAX + 64);
    int rc = fputs("{\"format\":\"mailgrab-stats\",\"version\":1,\n \"stats\":{\n", f) < 0 ? -1 : 0;
    if (rc == 0)
        rc = mg_stats_rows(s, top, json_row, &j);
    if (rc == 0 && fputs(j.stat[0] ? "]}}\n" : "}}\n", f) < 0)
        rc = -1;
    mg_buf_finish(&j.b);
    if (rc == 0 && fflush(f) != 0)
        rc = -1;
    return rc;
}
