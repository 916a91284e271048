/* report.c - see include/mailgrab/report.h */
#include "mailgrab/report.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/buf.h"
#include "mailgrab/csv.h"
#include "mailgrab/log.h"
#include "mailgrab/utf8.h"

#define W 900 /* chart width in SVG units */

static const char style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;padding:0 "
    "16px;max-width:960px;color:#222;"
    "background:#fff}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em}"
    "svg{display:block;max-width:100%;height:auto}.bar{fill:#3b6ea5}.bar2{fill:#c0713b}"
    "text{font:11px sans-serif;fill:#333}table{border-collapse:collapse}"
    "td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #ddd}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}";

/* Text from mail into HTML: escaped, valid UTF-8, no control characters. */
static void esc(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        size_t k = c < 0x80 ? 1 : mg_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (c == '&')
            fputs("&amp;", f);
        else if (c == '<')
            fputs("&lt;", f);
        else if (c == '>')
            fputs("&gt;", f);
        else if (c == '"')
            fputs("&quot;", f);
        else if (c == '\'')
            fputs("&#39;", f);
        else if (c < 0x20 || c == 0x7f)
            fputc(' ', f);
        else if (k == 0)
            fputs("\xEF\xBF\xBD", f);
        else
            fwrite(s + i, 1, k, f);
        i += k ? k : 1;
    }
}

static void escz(FILE *f, const char *s)
{
    esc(f, s, strlen(s));
}

/* Horizontal bars, one per entry: label, bar, number. */
static void hbars(FILE *f, const char *id, const char *title, struct mg_strmap_entry **v, size_t n,
                  bool bytes)
{
    uint64_t max = 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = bytes ? v[i]->bytes : v[i]->count;
        max = x > max ? x : max;
    }
    int rowh = 20, label = 300, barw = W - label - 120;
    fprintf(f, "<svg class=\"chart\" id=\"chart-%s\" viewBox=\"0 0 %d %zu\" role=\"img\">", id, W,
            n * (size_t)rowh + 10);
    fputs("<title>", f);
    escz(f, title);
    fputs("</title>", f);
    for (size_t i = 0; i < n; i++) {
        uint64_t x = bytes ? v[i]->bytes : v[i]->count;
        int y = (int)i * rowh + 5;
        int len = (int)((double)x / (double)max * barw);
        char num[32];
        if (bytes)
            mg_human_bytes(x, num, sizeof(num));
        else
            snprintf(num, sizeof(num), "%" PRIu64, x);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", label - 6, y + 14);
        size_t kl = v[i]->keylen > 48 ? 48 : v[i]->keylen;
        while (kl > 0 && kl < v[i]->keylen && ((unsigned char)v[i]->key[kl] & 0xC0) == 0x80)
            kl--;
        esc(f, v[i]->key, kl);
        fprintf(f,
                "%s</text><rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\">"
                "<title>",
                kl < v[i]->keylen ? "\xE2\x80\xA6" : "", label, y, len > 0 ? len : 1, rowh - 4);
        esc(f, v[i]->key, v[i]->keylen);
        fprintf(f, ": %s</title></rect><text x=\"%d\" y=\"%d\">%s</text>", num, label + len + 6,
                y + 14, num);
    }
    fputs("</svg>\n", f);
}

static struct mg_strmap_entry **top_of(const struct mg_strmap *m, size_t top, size_t *n,
                                       bool by_bytes)
{
    struct mg_strmap_entry **v = mg_strmap_sorted(m, n);
    if (v == NULL)
        return NULL;
    if (by_bytes) /* by bytes descending, then key */
        for (size_t i = 1; i < *n; i++)
            for (size_t k = i;
                 k > 0 && (v[k - 1]->bytes < v[k]->bytes || (v[k - 1]->bytes == v[k]->bytes &&
                                                             strcmp(v[k - 1]->key, v[k]->key) > 0));
                 k--) {
                struct mg_strmap_entry *t = v[k];
                v[k] = v[k - 1];
                v[k - 1] = t;
            }
    if (*n > top)
        *n = top;
    return v;
}

static void chart_map(FILE *f, const char *id, const char *h2, const struct mg_strmap *m,
                      size_t top, bool bytes)
{
    fprintf(f, "<h2>%s</h2>\n", h2);
    size_t n;
    struct mg_strmap_entry **v = top_of(m, top, &n, bytes);
    if (n == 0)
        fputs("<p>None.</p>\n", f);
    else
        hbars(f, id, h2, v, n, bytes);
    free(v);
}

static int month_parse(const char *k, int *y, int *m)
{
    return sscanf(k, "%4d-%2d", y, m) == 2 && *m >= 1 && *m <= 12 ? 0 : -1;
}

/* Every month from the first to the last with mail, so gaps show. */
static void months_chart(FILE *f, const struct mg_stats *s)
{
    fputs("<h2>Messages per month</h2>\n", f);
    int y0 = 0, m0 = 0, y1 = 0, m1 = 0;
    bool any = false;
    uint64_t max = 1;
    for (size_t i = 0; i < s->months.cap; i++) {
        const struct mg_strmap_entry *e = &s->months.slots[i];
        int y, m;
        if (e->key == NULL || month_parse(e->key, &y, &m) != 0)
            continue;
        if (!any || y * 12 + m < y0 * 12 + m0) {
            y0 = y;
            m0 = m;
        }
        if (!any || y * 12 + m > y1 * 12 + m1) {
            y1 = y;
            m1 = m;
        }
        any = true;
        max = e->count > max ? e->count : max;
    }
    if (!any) {
        fputs("<p>None.</p>\n", f);
        return;
    }
    size_t n = (size_t)((y1 * 12 + m1) - (y0 * 12 + m0) + 1);
    int h = 200, left = 50;
    double bw = (double)(W - left - 10) / (double)n;
    fprintf(f,
            "<svg class=\"chart\" id=\"chart-month\" viewBox=\"0 0 %d %d\" role=\"img\">"
            "<title>Messages per month</title>",
            W + 40, h + 40);
    fprintf(f, "<text x=\"%d\" y=\"12\" text-anchor=\"end\">%" PRIu64 "</text>", left - 4, max);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>", left - 4, h + 10);
    size_t every = n / 12 + 1; /* about a dozen labels */
    for (size_t i = 0; i < n; i++) {
        int mi = y0 * 12 + (m0 - 1) + (int)i;
        char key[16];
        int kl = snprintf(key, sizeof(key), "%04d-%02d", mi / 12, mi % 12 + 1);
        const struct mg_strmap_entry *e =
            mg_strmap_get((struct mg_strmap *)&s->months, key, (size_t)kl, false);
        uint64_t c = e ? e->count : 0;
        double bh = (double)c / (double)max * (h - 10);
        double x = left + (double)i * bw;
        if (c > 0)
            fprintf(f,
                    "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                    "height=\"%.2f\"><title>%s: %" PRIu64 "</title></rect>",
                    x, h + 10 - bh, bw > 2 ? bw - 1 : bw, bh, key, c);
        if (i % every == 0)
            fprintf(f, "<text x=\"%.2f\" y=\"%d\">%s</text>", x, h + 28, key);
    }
    fputs("</svg>\n", f);
}

static void heatmap(FILE *f, const struct mg_stats *s, const char *tz)
{
    fputs("<h2>Hour of day \xC3\x97 weekday (", f);
    escz(f, tz && *tz ? tz : "local time");
    fputs(")</h2>\n", f);
    uint64_t max = 1;
    for (int d = 0; d < 7; d++)
        for (int h = 0; h < 24; h++)
            max = s->hour_wday[d][h] > max ? s->hour_wday[d][h] : max;
    int cell = 32, left = 40, top = 20;
    fprintf(f,
            "<svg class=\"chart\" id=\"chart-heatmap\" viewBox=\"0 0 %d %d\" role=\"img\">"
            "<title>Messages by hour of day and weekday</title>",
            left + 24 * cell + 10, top + 7 * cell + 10);
    for (int h = 0; h < 24; h += 2)
        fprintf(f, "<text x=\"%d\" y=\"%d\">%02d</text>", left + h * cell + 8, top - 6, h);
    for (int d = 0; d < 7; d++) {
        fprintf(f, "<text x=\"0\" y=\"%d\">%s</text>", top + d * cell + 20, mg_weekday_names[d]);
        for (int h = 0; h < 24; h++) {
            uint64_t x = s->hour_wday[d][h];
            /* white to dark blue */
            double t = (double)x / (double)max;
            int r = (int)(255 - t * (255 - 30)), g = (int)(255 - t * (255 - 80)),
                b = (int)(255 - t * (255 - 140));
            fprintf(f,
                    "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#%02x%02x%02x\" "
                    "stroke=\"#eee\"><title>%s %02d:00: %" PRIu64 "</title></rect>",
                    left + h * cell, top + d * cell, cell, cell, r, g, b, mg_weekday_names[d], h,
                    x);
        }
    }
    fputs("</svg>\n", f);
}

static void map_table(FILE *f, const char *h2, const char *col, const struct mg_strmap *m,
                      size_t top)
{
    fprintf(f, "<h2>%s</h2>\n", h2);
    size_t n;
    struct mg_strmap_entry **v = top_of(m, top, &n, false);
    if (n == 0) {
        fputs("<p>None.</p>\n", f);
        free(v);
        return;
    }
    fprintf(f, "<table><tr><th>%s</th><th>messages</th></tr>\n", col);
    for (size_t i = 0; i < n; i++) {
        fputs("<tr><td>", f);
        esc(f, v[i]->key, v[i]->keylen);
        fprintf(f, "</td><td class=\"n\">%" PRIu64 "</td></tr>\n", v[i]->count);
    }
    fputs("</table>\n", f);
    free(v);
}

int mg_report_html_write(FILE *f, const struct mg_stats *s, size_t top, const char *tz)
{
    if (top == 0)
        top = 10;
    char b[32];
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'\">\n"
          "<meta name=\"viewport\" content=\"width=device-width\">\n"
          "<title>mailgrab statistics</title>\n<style>",
          f);
    fputs(style, f);
    fputs("</style></head><body>\n<h1>mailgrab statistics</h1>\n", f);
    mg_human_bytes(s->bytes, b, sizeof(b));
    fprintf(f, "<p id=\"summary\">%" PRIu64 " messages, %s", s->messages, b);
    if (tz != NULL && *tz) {
        fputs("; times in ", f);
        escz(f, tz);
    }
    fputs(".</p>\n", f);
    months_chart(f, s);
    heatmap(f, s, tz);
    chart_map(f, "senders", "Top senders", &s->senders, top, false);
    chart_map(f, "domains", "Top sender domains", &s->domains, top, false);
    chart_map(f, "attachments", "Attachment bytes by type", &s->att_types, top, true);

    fputs("<h2>Largest messages</h2>\n", f);
    if (s->nlargest == 0)
        fputs("<p>None.</p>\n", f);
    else
        fputs("<table id=\"largest\"><tr><th>file</th><th>size</th></tr>\n", f);
    for (size_t i = 0; i < s->nlargest && i < top; i++) {
        mg_human_bytes(s->largest[i].size, b, sizeof(b));
        fputs("<tr><td>", f);
        escz(f, s->largest[i].path);
        fprintf(f, "</td><td class=\"n\">%s</td></tr>\n", b);
    }
    if (s->nlargest > 0)
        fputs("</table>\n", f);
    map_table(f, "Mailing lists", "List-Id", &s->lists, top);
    map_table(f, "Recipients of sent mail", "recipient", &s->recipients, top);

    fputs("<h2>Totals</h2>\n<table id=\"totals\">\n", f);
    uint64_t values[MG_STATS_TOTALS];
    mg_stats_totals(s, values);
    for (int i = 0; i < MG_STATS_TOTALS; i++)
        fprintf(f, "<tr><td>%s</td><td class=\"n\">%" PRIu64 "</td></tr>\n",
                mg_stats_total_names[i], values[i]);
    fputs("</table>\n</body></html>\n", f);
    return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}
