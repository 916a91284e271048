/* csv.c - see include/mailgrab/csv.h */
#include "mailgrab/csv.h"

#include "mailgrab/log.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const char *const mg_weekday_names[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

int mg_csv_cell(struct mg_buf *out, const char *s, size_t n)
{
    bool formula = n > 0 && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@');
    bool quote = false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n')
            quote = true;
    if (quote && mg_buf_putc(out, '"') != 0)
        return -1;
    if (formula && mg_buf_putc(out, '\'') != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i] == '\0' ? ' ' : s[i];
        if (c == '"' && mg_buf_putc(out, '"') != 0)
            return -1;
        if (mg_buf_putc(out, (unsigned char)c) != 0)
            return -1;
    }
    if (quote && mg_buf_putc(out, '"') != 0)
        return -1;
    return 0;
}

struct csv_ctx {
    FILE *f;
    struct mg_buf line;
};

static int csv_row(void *ctx, const char *stat, const char *key, size_t keylen, uint64_t value)
{
    struct csv_ctx *c = ctx;
    char num[24];
    int nl = snprintf(num, sizeof(num), "%" PRIu64, value);
    mg_buf_reset(&c->line);
    if (mg_csv_cell(&c->line, stat, strlen(stat)) || mg_buf_putc(&c->line, ',') ||
        mg_csv_cell(&c->line, key, keylen) || mg_buf_putc(&c->line, ',') ||
        mg_buf_append(&c->line, num, (size_t)nl) || mg_buf_append(&c->line, "\r\n", 2))
        return -1;
    return fwrite(c->line.data, 1, c->line.len, c->f) == c->line.len ? 0 : -1;
}

/* by_key: natural key order (months) instead of value descending */
static int map_rows(const char *stat, const struct mg_strmap *m, size_t top, bool bytes,
                    bool by_key, mg_stats_row_fn fn, void *ctx)
{
    size_t n;
    struct mg_strmap_entry **v = mg_strmap_sorted(m, &n);
    if (v == NULL && m->len > 0)
        return -1;
    if (by_key)
        for (size_t i = 1; i < n; i++) /* insertion sort: few months */
            for (size_t k = i; k > 0 && strcmp(v[k - 1]->key, v[k]->key) > 0; k--) {
                struct mg_strmap_entry *t = v[k];
                v[k] = v[k - 1];
                v[k - 1] = t;
            }
    if (top > 0 && n > top)
        n = top;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = fn(ctx, stat, v[i]->key, v[i]->keylen, bytes ? v[i]->bytes : v[i]->count);
    free(v);
    return rc;
}

int mg_stats_rows(const struct mg_stats *s, size_t top, mg_stats_row_fn fn, void *ctx)
{
    int rc = map_rows("sender", &s->senders, top, false, false, fn, ctx);
    if (rc == 0)
        rc = map_rows("sender_domain", &s->domains, top, false, false, fn, ctx);
    if (rc == 0)
        rc = map_rows("keyword", &s->keywords, top, false, false, fn, ctx);
    for (int h = 0; h < 24 && rc == 0; h++) {
        char k[4];
        int kl = snprintf(k, sizeof(k), "%d", h);
        rc = fn(ctx, "hour", k, (size_t)kl, s->hours[h]);
    }
    for (int d = 0; d < 7 && rc == 0; d++)
        rc = fn(ctx, "weekday", mg_weekday_names[d], 3, s->weekdays[d]);
    for (int d = 0; d < 7 && rc == 0; d++)
        for (int h = 0; h < 24 && rc == 0; h++) {
            char k[8];
            int kl = snprintf(k, sizeof(k), "%s %02d", mg_weekday_names[d], h);
            rc = fn(ctx, "hour_weekday", k, (size_t)kl, s->hour_wday[d][h]);
        }
    if (rc == 0)
        rc = map_rows("month", &s->months, 0, false, true, fn, ctx);
    if (rc == 0)
        rc = map_rows("recipient", &s->recipients, top, false, false, fn, ctx);
    if (rc == 0)
        rc = map_rows("attachment_type", &s->att_types, top, false, false, fn, ctx);
    if (rc == 0)
        rc = map_rows("attachment_type_bytes", &s->att_types, top, true, false, fn, ctx);
    if (rc == 0)
        rc = map_rows("list", &s->lists, top, false, false, fn, ctx);
    for (size_t i = 0; rc == 0 && i < s->nlargest && (top == 0 || i < top); i++)
        rc = fn(ctx, "largest", s->largest[i].path, strlen(s->largest[i].path), s->largest[i].size);
    uint64_t values[MG_STATS_TOTALS];
    mg_stats_totals(s, values);
    for (int t = 0; t < MG_STATS_TOTALS && rc == 0; t++)
        rc = fn(ctx, "total", mg_stats_total_names[t], strlen(mg_stats_total_names[t]), values[t]);
    return rc;
}

int mg_csv_write(FILE *f, const struct mg_stats *s, size_t top)
{
    struct csv_ctx c = {f, {0}};
    mg_buf_init(&c.line, 4 * MG_STATS_KEY_MAX + 64);
    int rc = fputs("stat,key,value\r\n", f) < 0 ? -1 : 0;
    if (rc == 0)
        rc = mg_stats_rows(s, top, csv_row, &c);
    mg_buf_finish(&c.line);
    if (rc == 0 && fflush(f) != 0)
        rc = -1;
    return rc;
}

/* Display width of UTF-8 text, counting each code point as one column. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

/* Print s cut to at most max columns, padded to max unless last on its line. */
static void cell(FILE *f, const char *s, size_t max, bool pad)
{
    size_t w = 0, i = 0;
    while (s[i] != '\0') {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (w == max)
                break;
            w++;
        }
        unsigned char c = (unsigned char)s[i];
        /* terminal safety: no control characters from mail reach the tty */
        fputc(c < 32 || c == 127 ? '?' : c, f);
        i++;
    }
    for (; pad && w < max; w++)
        fputc(' ', f);
}

static void bar(FILE *f, uint64_t v, uint64_t max, int cols)
{
    static const char *const eighths[8] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    if (max == 0)
        return;
    uint64_t units = (v * (uint64_t)cols * 8 + max / 2) / max;
    for (uint64_t i = 0; i < units / 8; i++)
        fputs("█", f);
    fputs(eighths[units % 8], f);
}

int mg_stats_tables_write(FILE *f, const struct mg_stats *s, size_t top_senders,
                          size_t top_keywords)
{
    size_t n;
    char b[32];
    struct mg_strmap_entry **v = mg_strmap_sorted(&s->senders, &n);
    fprintf(f, "Top senders\n");
    size_t aw = 7, nw = 4;
    size_t shown = n < top_senders ? n : top_senders;
    for (size_t i = 0; i < shown; i++) {
        const char *nm = mg_stats_top_name(v[i]);
        if (width(v[i]->key) > aw)
            aw = width(v[i]->key);
        if (nm != NULL && width(nm) > nw)
            nw = width(nm);
    }
    aw = aw > 40 ? 40 : aw;
    nw = nw > 30 ? 30 : nw;
    fprintf(f, "  %8s  %10s  ", "messages", "bytes");
    cell(f, "sender", aw, true);
    fputs("  name\n", f);
    for (size_t i = 0; i < shown; i++) {
        const char *nm = mg_stats_top_name(v[i]);
        mg_human_bytes(v[i]->bytes, b, sizeof(b));
        fprintf(f, "  %8" PRIu64 "  %10s  ", v[i]->count, b);
        cell(f, v[i]->key, aw, true);
        fputs("  ", f);
        cell(f, nm ? nm : "", nw, false);
        fputc('\n', f);
    }
    free(v);

    v = mg_strmap_sorted(&s->keywords, &n);
    shown = n < top_keywords ? n : top_keywords;
    fprintf(f, "\nTop keywords\n");
    for (size_t i = 0; i < shown; i++) {
        fprintf(f, "  %8" PRIu64 "  ", v[i]->count);
        cell(f, v[i]->key, 40, false);
        fputc('\n', f);
    }
    free(v);

    uint64_t max = 0;
    for (int h = 0; h < 24; h++)
        max = s->hours[h] > max ? s->hours[h] : max;
    fprintf(f, "\nHour of day\n");
    for (int h = 0; h < 24; h++) {
        fprintf(f, "  %02d  %8" PRIu64 "  ", h, s->hours[h]);
        bar(f, s->hours[h], max, 40);
        fputc('\n', f);
    }
    max = 0;
    for (int d = 0; d < 7; d++)
        max = s->weekdays[d] > max ? s->weekdays[d] : max;
    fprintf(f, "\nWeekday\n");
    for (int d = 0; d < 7; d++) {
        fprintf(f, "  %s  %8" PRIu64 "  ", mg_weekday_names[d], s->weekdays[d]);
        bar(f, s->weekdays[d], max, 40);
        fputc('\n', f);
    }
    mg_human_bytes(s->bytes, b, sizeof(b));
    fprintf(f,
            "\nTotals\n  messages       %10" PRIu64 "\n  bytes          %10" PRIu64
            "  (%s)\n  unparseable    %10" PRIu64 "\n  date fallback  %10" PRIu64 "\n",
            s->messages, s->bytes, b, s->unparseable, s->date_fallback);
    return fflush(f) == 0 ? 0 : -1;
}
