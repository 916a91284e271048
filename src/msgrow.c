/* msgrow.c - see include/mailgrab/msgrow.h */
#include "mailgrab/msgrow.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "mailgrab/csv.h"
#include "mailgrab/textdec.h"

#define ROW_VERSION 1

static const char header[] = "path,mailbox,date_utc,from_addr,from_name,from_domain,to_count,"
                             "cc_count,size,attachments,attachment_bytes,subject,message_id,"
                             "in_reply_to,list_id,labels,thrid,sent,date_fallback,unparseable\r\n";

/* Cut a string to max bytes without splitting a UTF-8 sequence. */
static size_t cut(const struct mg_msgrow_str *s, size_t max)
{
    size_t n = s->n;
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s->p[n] & 0xC0) == 0x80)
        n--;
    return n;
}

static int put(struct mg_buf *b, const struct mg_msgrow_str *s, size_t max)
{
    return mg_buf_put_str(b, s->p ? s->p : "", cut(s, max));
}

int mg_msgrow_encode(const struct mg_msgrow *r, struct mg_buf *out)
{
    /* 7 strings within MG_MSGROW_MAX: path and from get room, ids less */
    if (mg_buf_put_u8(out, ROW_VERSION) || put(out, &r->path, 16384) ||
        put(out, &r->from_addr, 4096) || put(out, &r->from_name, 4096) ||
        put(out, &r->subject, MG_MSGROW_SUBJECT_MAX) || put(out, &r->message_id, 998) ||
        put(out, &r->in_reply_to, 998) || put(out, &r->list_id, 998) ||
        mg_buf_put_u64(out, (uint64_t)r->date) || mg_buf_put_u64(out, r->to_count) ||
        mg_buf_put_u64(out, r->cc_count) || mg_buf_put_u64(out, r->size) ||
        mg_buf_put_u64(out, r->attachments) || mg_buf_put_u64(out, r->attachment_bytes) ||
        mg_buf_put_u8(out, (uint8_t)(r->sent | r->date_fallback << 1 | r->unparseable << 2)))
        return -1;
    return 0;
}

static int get(struct mg_reader *rd, struct mg_msgrow_str *s, size_t max)
{
    return mg_read_str(rd, &s->p, &s->n, max);
}

int mg_msgrow_decode(const char *data, size_t len, struct mg_msgrow *r)
{
    struct mg_reader rd = {(const uint8_t *)data, len};
    uint8_t v, flags;
    uint64_t date;
    memset(r, 0, sizeof(*r));
    if (mg_read_u8(&rd, &v) || v != ROW_VERSION || get(&rd, &r->path, 16384) ||
        get(&rd, &r->from_addr, 4096) || get(&rd, &r->from_name, 4096) ||
        get(&rd, &r->subject, MG_MSGROW_SUBJECT_MAX) || get(&rd, &r->message_id, 998) ||
        get(&rd, &r->in_reply_to, 998) || get(&rd, &r->list_id, 998) || mg_read_u64(&rd, &date) ||
        mg_read_u64(&rd, &r->to_count) || mg_read_u64(&rd, &r->cc_count) ||
        mg_read_u64(&rd, &r->size) || mg_read_u64(&rd, &r->attachments) ||
        mg_read_u64(&rd, &r->attachment_bytes) || mg_read_u8(&rd, &flags) || rd.left != 0 ||
        flags > 7)
        return -1;
    r->date = (int64_t)date;
    r->sent = flags & 1;
    r->date_fallback = (flags >> 1) & 1;
    r->unparseable = (flags >> 2) & 1;
    return 0;
}

int mg_msgrow_csv_header(FILE *f)
{
    return fputs(header, f) < 0 ? -1 : 0;
}

/* Start of the path component before position end (end at a '/' or n). */
static size_t component_start(const char *path, size_t end)
{
    while (end > 0 && path[end - 1] != '/')
        end--;
    return end;
}

size_t mg_msgrow_account_offset(const char *path, size_t n)
{
    size_t file = component_start(path, n);
    if (file == 0)
        return 0;
    size_t dir = component_start(path, file - 1);
    size_t dl = file - 1 - dir;
    if (dir > 0 && dl == 3 &&
        (memcmp(path + dir, "cur", 3) == 0 || memcmp(path + dir, "new", 3) == 0))
        dir = component_start(path, dir - 1);
    return dir;
}

void mg_msgrow_mailbox(const char *path, size_t n, struct mg_buf *out)
{
    mg_buf_reset(out);
    /* the directory holding the file */
    size_t end = n;
    while (end > 0 && path[end - 1] != '/')
        end--;
    if (end == 0)
        return;
    end--; /* the '/' */
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    if ((end - start == 3 &&
         (memcmp(path + start, "cur", 3) == 0 || memcmp(path + start, "new", 3) == 0)) &&
        start > 0) {
        end = start - 1;
        start = end;
        while (start > 0 && path[start - 1] != '/')
            start--;
    }
    static const char gen[] = "%uidvalidity=";
    for (size_t i = start; i + sizeof(gen) - 1 <= end; i++)
        if (memcmp(path + i, gen, sizeof(gen) - 1) == 0) {
            end = i;
            break;
        }
    for (size_t i = start; i < end; i++) {
        int hi, lo;
        if (path[i] == '%' && i + 2 < end && (hi = mg_hex_digit((unsigned char)path[i + 1])) >= 0 &&
            (lo = mg_hex_digit((unsigned char)path[i + 2])) >= 0) {
            mg_buf_putc(out, (unsigned char)(hi << 4 | lo));
            i += 2;
        } else {
            mg_buf_putc(out, (unsigned char)path[i]);
        }
    }
}

static int cell(struct mg_buf *line, const struct mg_msgrow_str *s)
{
    return mg_csv_cell(line, s->p ? s->p : "", s->n) || mg_buf_putc(line, ',');
}

static int num(struct mg_buf *line, uint64_t v, char sep)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%" PRIu64, v);
    return mg_buf_append(line, b, (size_t)n) || mg_buf_putc(line, (unsigned char)sep);
}

int mg_msgrow_csv_write(FILE *f, const struct mg_msgrow *r, struct mg_buf *line)
{
    struct mg_buf mbox;
    mg_buf_init(&mbox, MG_MSGROW_MAX);
    mg_msgrow_mailbox(r->path.p ? r->path.p : "", r->path.n, &mbox);
    struct mg_msgrow_str mb = {mbox.data, mbox.len};
    char date[32];
    time_t t = (time_t)r->date;
    struct tm tm;
    size_t dl = 0;
    if (gmtime_r(&t, &tm) != NULL)
        dl = strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
    struct mg_msgrow_str ds = {date, dl};
    struct mg_msgrow_str dom = {NULL, 0};
    const char *at = r->from_addr.n ? memrchr(r->from_addr.p, '@', r->from_addr.n) : NULL;
    if (at != NULL) {
        dom.p = at + 1;
        dom.n = r->from_addr.n - (size_t)(at + 1 - r->from_addr.p);
    }
    mg_buf_reset(line);
    int rc = cell(line, &r->path) || cell(line, &mb) || cell(line, &ds) ||
                     cell(line, &r->from_addr) || cell(line, &r->from_name) || cell(line, &dom) ||
                     num(line, r->to_count, ',') || num(line, r->cc_count, ',') ||
                     num(line, r->size, ',') || num(line, r->attachments, ',') ||
                     num(line, r->attachment_bytes, ',') || cell(line, &r->subject) ||
                     cell(line, &r->message_id) || cell(line, &r->in_reply_to) ||
                     cell(line, &r->list_id) || cell(line, &r->labels) || cell(line, &r->thrid) ||
                     num(line, r->sent, ',') || num(line, r->date_fallback, ',') ||
                     mg_buf_putc(line, r->unparseable ? '1' : '0') || mg_buf_append(line, "\r\n", 2)
                 ? -1
                 : 0;
    mg_buf_finish(&mbox);
    if (rc == 0 && fwrite(line->data, 1, line->len, f) != line->len)
        rc = -1;
    return rc;
}
