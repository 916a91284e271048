/* analyze.c - see include/mailgrab/analyze.h */
#include "mailgrab/analyze.h"

#include <string.h>

#include "mailgrab/msgparse.h"
#include "mailgrab/msgrow.h"

int mg_analyze_count_failed(struct mg_stats *s, uint64_t size, time_t fallback)
{
    s->messages++;
    s->bytes += size;
    s->unparseable++;
    s->date_fallback++;
    mg_stats_add_time(s, fallback);
    return mg_stats_add_sender(s, NULL, 0, NULL, 0, size);
}

int mg_analyze_failed_full(const struct mg_analyze_msg *m, struct mg_stats *s, struct mg_buf *row)
{
    int rc = mg_analyze_count_failed(s, m->size, m->fallback);
    if (rc == 0 && m->path != NULL)
        rc = mg_stats_add_largest(s, m->path, strlen(m->path), m->size);
    if (rc == 0 && row != NULL) {
        struct mg_msgrow r;
        memset(&r, 0, sizeof(r));
        r.path.p = m->path;
        r.path.n = m->path ? strlen(m->path) : 0;
        r.date = (int64_t)m->fallback;
        r.size = m->size;
        r.date_fallback = r.unparseable = true;
        rc = mg_msgrow_encode(&r, row);
    }
    return rc;
}

int mg_analyze_message(const char *msg, size_t len, uint64_t size, time_t fallback,
                       const struct mg_stopwords *sw, struct mg_stats *s)
{
    struct mg_analyze_msg m = {NULL, size, fallback, false};
    struct mg_analyze_opts o = {sw, NULL, 0};
    return mg_analyze_full(msg, len, &m, &o, s, NULL);
}

static bool is_me(const struct mg_analyze_opts *o, const struct mg_msginfo *m)
{
    for (size_t i = 0; m->from_addr != NULL && i < o->nme; i++)
        if (strlen(o->me[i]) == m->from_addr_len &&
            memcmp(o->me[i], m->from_addr, m->from_addr_len) == 0)
            return true;
    return false;
}

/* Each recipient once per message, so a copy in To and Cc counts once. */
static int add_recipients(struct mg_stats *s, const struct mg_msginfo *m)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->rcpt_len;) {
        const char *a = m->rcpt + i;
        size_t n = strlen(a);
        bool seen = false;
        for (size_t k = 0; !seen && k < i;) {
            size_t kn = strlen(m->rcpt + k);
            seen = kn == n && memcmp(m->rcpt + k, a, n) == 0;
            k += kn + 1;
        }
        if (!seen)
            rc = mg_stats_add_key(&s->recipients, a, n, 1, 0);
        i += n + 1;
    }
    return rc;
}

int mg_analyze_full(const char *msg, size_t len, const struct mg_analyze_msg *mm,
                    const struct mg_analyze_opts *o, struct mg_stats *s, struct mg_buf *row)
{
    struct mg_msginfo m;
    int rc = mg_msg_parse(msg, len, &m);
    if (rc != 0) {
        mg_msginfo_finish(&m);
        return rc;
    }
    uint64_t size = mm->size;
    s->messages++;
    s->bytes += size;
    bool unparseable = m.flags & (MG_MSG_HEADERS_BAD | MG_MSG_HEADER_LIMIT | MG_MSG_BAD_BOUNDARY);
    if (unparseable)
        s->unparseable++;
    time_t when = m.has_date ? m.date : mm->fallback;
    if (!m.has_date)
        s->date_fallback++;
    mg_stats_add_time(s, when);
    rc = mg_stats_add_sender(s, m.from_addr, m.from_addr_len, m.from_name, m.from_name_len, size);
    size_t dl;
    const char *dom = mg_msginfo_domain(&m, &dl);
    if (dom == NULL) { /* like senders: every message is counted somewhere */
        dom = "(none)";
        dl = strlen(dom);
    }
    if (rc == 0)
        rc = mg_stats_add_domain(s, dom, dl);
    bool sent = mm->sent || is_me(o, &m);
    if (sent) {
        s->sent++;
        if (rc == 0)
            rc = add_recipients(s, &m);
    }
    s->attachments += m.attachments;
    s->attachment_bytes += m.attachment_bytes;
    for (size_t i = 0; rc == 0 && i < m.attachments; i++)
        rc = mg_stats_add_key(&s->att_types, m.att[i].type, strlen(m.att[i].type), 1,
                              m.att[i].bytes);
    if (rc == 0 && m.list_id != NULL)
        rc = mg_stats_add_key(&s->lists, m.list_id, m.list_id_len, 1, 0);
    if (rc == 0 && mm->path != NULL)
        rc = mg_stats_add_largest(s, mm->path, strlen(mm->path), size);

    /* Each keyword counts once per message. Counts with no keyword yet (a
     * worker's counts of one message) take the message's set as it is. */
    struct mg_strmap words;
    mg_strmap_init(&words);
    struct mg_strmap *set = s->keywords.len == 0 ? &s->keywords : &words;
    if (rc == 0 && m.subject != NULL)
        rc = mg_words_collect(m.subject, m.subject_len, o->stopwords, set);
    if (rc == 0 && m.text != NULL)
        rc = mg_words_collect(m.text, m.text_len, o->stopwords, set);
    for (size_t i = 0; rc == 0 && set == &words && i < words.cap; i++)
        if (words.slots[i].key != NULL)
            rc = mg_stats_add_keyword(s, words.slots[i].key, words.slots[i].keylen, 1);
    mg_strmap_finish(&words);

    if (rc == 0 && row != NULL) {
        struct mg_msgrow r = {
            .path = {mm->path, mm->path ? strlen(mm->path) : 0},
            .from_addr = {m.from_addr, m.from_addr_len},
            .from_name = {m.from_name, m.from_name_len},
            .subject = {m.subject, m.subject_len},
            .message_id = {m.message_id, m.message_id_len},
            .in_reply_to = {m.in_reply_to, m.in_reply_to_len},
            .list_id = {m.list_id, m.list_id_len},
            .date = (int64_t)when,
            .to_count = m.to_count,
            .cc_count = m.cc_count,
            .size = size,
            .attachments = m.attachments,
            .attachment_bytes = m.attachment_bytes,
            .sent = sent,
            .date_fallback = !m.has_date,
            .unparseable = unparseable,
        };
        rc = mg_msgrow_encode(&r, row);
    }
    mg_msginfo_finish(&m);
    return rc;
}
