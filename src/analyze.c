/* analyze.c - see include/mailgrab/analyze.h */
#include "mailgrab/analyze.h"

#include <string.h>

#include "mailgrab/msgparse.h"

int mg_analyze_count_failed(struct mg_stats *s, uint64_t size, time_t fallback)
{
    s->messages++;
    s->bytes += size;
    s->unparseable++;
    s->date_fallback++;
    mg_stats_add_time(s, fallback);
    return mg_stats_add_sender(s, NULL, 0, NULL, 0, size);
}

int mg_analyze_message(const char *msg, size_t len, uint64_t size, time_t fallback,
                       const struct mg_stopwords *sw, struct mg_stats *s)
{
    struct mg_msginfo m;
    int rc = mg_msg_parse(msg, len, &m);
    if (rc != 0) {
        mg_msginfo_finish(&m);
        return rc;
    }
    s->messages++;
    s->bytes += size;
    if (m.flags & (MG_MSG_HEADERS_BAD | MG_MSG_HEADER_LIMIT | MG_MSG_BAD_BOUNDARY))
        s->unparseable++;
    if (m.has_date) {
        mg_stats_add_time(s, m.date);
    } else {
        s->date_fallback++;
        mg_stats_add_time(s, fallback);
    }
    rc = mg_stats_add_sender(s, m.from_addr, m.from_addr_len, m.from_name, m.from_name_len, size);
    size_t dl;
    const char *dom = mg_msginfo_domain(&m, &dl);
    if (dom == NULL) { /* like senders: every message is counted somewhere */
        dom = "(none)";
        dl = strlen(dom);
    }
    if (rc == 0)
        rc = mg_stats_add_domain(s, dom, dl);

    struct mg_strmap words;
    mg_strmap_init(&words);
    if (rc == 0 && m.subject != NULL)
        rc = mg_words_collect(m.subject, m.subject_len, sw, &words);
    if (rc == 0 && m.text != NULL)
        rc = mg_words_collect(m.text, m.text_len, sw, &words);
    for (size_t i = 0; rc == 0 && i < words.cap; i++)
        if (words.slots[i].key != NULL)
            rc = mg_stats_add_keyword(s, words.slots[i].key, words.slots[i].keylen, 1);
    mg_strmap_finish(&words);
    mg_msginfo_finish(&m);
    return rc;
}
