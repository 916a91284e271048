/* fake_source.c - see fake_source.h */
#include "fake_source.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PIECE 4096

struct mg_session {
    struct fake_server *f;
    unsigned seq;    /* 1 for the first session opened */
    uint64_t cut_at; /* 0: never cut */
    uint64_t sent;   /* bytes this session sent */
    uint32_t uidvalidity;
    bool broken;
    atomic_bool cancelled;
};

unsigned char fake_byte(uint32_t uid, uint32_t off)
{
    if (off % 64 == 63)
        return '\n';
    return (unsigned char)('a' + (uid * 7u + off * 13u + off / 97u) % 26u);
}

void fake_init(struct fake_server *f, size_t n, uint32_t size_min, uint32_t size_max)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->uidvalidity = 42;
    uint32_t uid = 1;
    for (size_t i = 0; i < n && i < FAKE_MAX_MSGS; i++, uid++) {
        if (uid % 3 == 0)
            uid++;
        f->uids[i] = uid;
        f->sizes[i] = size_min + (uint32_t)((i * 7919u) % (size_max - size_min + 1));
        f->n++;
    }
}

void fake_finish(struct fake_server *f)
{
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
}

long fake_index(const struct fake_server *f, uint32_t uid)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->uids[i] == uid)
            return (long)i;
    return -1;
}

static enum mg_code lost(struct mg_session *s, bool *answered, struct mg_error *err)
{
    s->broken = true;
    *answered = false;
    return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW, "fake: connection lost");
}

static enum mg_code fake_open(void *ctx, struct mg_session **out, struct mg_error *err)
{
    struct fake_server *f = ctx;
    pthread_mutex_lock(&f->mu);
    enum mg_code rc = MG_OK;
    if (f->open_fails != MG_OK && f->open_fails_left != 0) {
        if (f->open_fails_left > 0)
            f->open_fails_left--;
        rc = f->open_fails == MG_E_AUTH
                 ? mg_error_set(err, MG_E_AUTH, "fake: login refused")
                 : mg_error_retry(err, f->open_fails, MG_RETRY_LATER, "fake: cannot open");
    } else if (f->max_sessions > 0 && f->open_now >= f->max_sessions) {
        rc = mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER, "fake: too many sessions");
    }
    struct mg_session *s = NULL;
    if (rc == MG_OK && (s = calloc(1, sizeof(*s))) == NULL)
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    if (rc == MG_OK) {
        s->f = f;
        s->seq = ++f->opened;
        f->open_now++;
        if (f->cut_after > 0 && f->cuts_left != 0) {
            s->cut_at = f->cut_after;
            if (f->cuts_left > 0)
                f->cuts_left--;
        }
        *out = s;
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static enum mg_code fake_examine(struct mg_session *s, const char *mailbox,
                                 struct mg_mailbox_info *info, struct mg_error *err)
{
    struct fake_server *f = s->f;
    if (strcmp(mailbox, "INBOX") != 0)
        return mg_error_set(err, MG_E_MAILBOX, "fake: no mailbox %s", mailbox);
    pthread_mutex_lock(&f->mu);
    f->examines++;
    s->uidvalidity = f->uidvalidity;
    if (f->renumber_after > 0 && s->seq > f->renumber_after)
        s->uidvalidity++;
    info->uidvalidity = s->uidvalidity;
    info->exists = (uint32_t)f->n;
    info->counted = true;
    info->uidnext = f->n ? f->uids[f->n - 1] + 1 : 1;
    pthread_mutex_unlock(&f->mu);
    return MG_OK;
}

static enum mg_code fake_mailboxes(struct mg_session *s,
                                   void (*each)(const char *name, unsigned roles, void *ctx),
                                   void *ctx, struct mg_error *err)
{
    (void)s;
    (void)err;
    each("INBOX", 0, ctx);
    return MG_OK;
}

static enum mg_code fake_list(struct mg_session *s, uint32_t from, struct mg_msglist *out,
                              struct mg_error *err)
{
    struct fake_server *f = s->f;
    pthread_mutex_lock(&f->mu);
    f->lists++;
    enum mg_code rc = MG_OK;
    for (size_t i = 0; i < f->n && rc == MG_OK; i++)
        if (f->uids[i] >= from && mg_msglist_push(out, f->uids[i], f->sizes[i]) != 0)
            rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* Send message uid whole (done), as broken (bad), or up to a cut. */
static enum mg_code send_one(struct mg_session *s, uint32_t uid, uint32_t size, bool is_bad,
                             const struct mg_fetch_sink *sink, bool *answered, struct mg_error *err)
{
    struct fake_server *f = s->f;
    if (f->delay_ms > 0) {
        struct timespec ts = {f->delay_ms / 1000, (long)(f->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    char piece[PIECE];
    for (uint32_t off = 0; off < size || size == 0;) {
        if (atomic_load(&s->cancelled))
            return lost(s, answered, err);
        uint32_t n = size - off < PIECE ? size - off : PIECE;
        bool cut = s->cut_at > 0 && s->sent + n > s->cut_at;
        if (cut)
            n = (uint32_t)(s->cut_at - s->sent);
        for (uint32_t i = 0; i < n; i++)
            piece[i] = (char)fake_byte(uid, off + i);
        if ((n > 0 || size == 0) && !sink->body(sink->ctx, piece, n))
            return MG_E_IO; /* the sink said why */
        s->sent += n;
        off += n;
        pthread_mutex_lock(&f->mu);
        f->bytes_sent += n;
        if (cut)
            f->cut++;
        pthread_mutex_unlock(&f->mu);
        if (cut)
            return lost(s, answered, err);
        if (size == 0)
            break;
    }
    if (is_bad) {
        sink->bad(sink->ctx, uid, "fake: body shorter than RFC822.SIZE");
        return MG_OK;
    }
    if (!sink->done(sink->ctx, uid, (time_t)1700000000 + uid, "S"))
        return MG_E_IO;
    return MG_OK;
}

static enum mg_code fake_fetch(struct mg_session *s, const uint32_t *uids, size_t n,
                               const struct mg_fetch_sink *sink, bool *answered,
                               struct mg_error *err)
{
    struct fake_server *f = s->f;
    *answered = false;
    pthread_mutex_lock(&f->mu);
    f->fetches++;
    if (n > f->largest_fetch)
        f->largest_fetch = n;
    for (size_t i = 0; i < n; i++) {
        long k = fake_index(f, uids[i]);
        if (k >= 0)
            f->asked[k]++;
    }
    bool hang = f->hang_fetch;
    pthread_mutex_unlock(&f->mu);
    while (hang && !atomic_load(&s->cancelled)) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    if (hang)
        return lost(s, answered, err);

    bool refused = false;
    for (size_t i = 0; i < n; i++) {
        long k = fake_index(f, uids[i]);
        if (k < 0)
            continue; /* gone: a server says nothing of it */
        if (f->drop_unasked_last && i == n - 1)
            continue;
        pthread_mutex_lock(&f->mu);
        bool refuse = uids[i] == f->refuse_uid && f->refusals_left != 0;
        if (refuse && f->refusals_left > 0)
            f->refusals_left--;
        pthread_mutex_unlock(&f->mu);
        if (refuse) {
            refused = true;
            continue;
        }
        for (int twice = 0; twice < (f->send_twice ? 2 : 1); twice++) {
            enum mg_code rc =
                send_one(s, uids[i], f->sizes[k], uids[i] == f->bad_uid, sink, answered, err);
            if (rc != MG_OK)
                return rc;
        }
    }
    if (f->extra_uid != 0) {
        enum mg_code rc = send_one(s, f->extra_uid, 100, false, sink, answered, err);
        if (rc != MG_OK)
            return rc;
    }
    *answered = true;
    if (!refused || f->refusal == FAKE_GONE)
        return MG_OK;
    if (f->refusal == FAKE_QUOTA)
        return mg_error_set(err, MG_E_LIMIT, "fake: [OVERQUOTA] download quota exceeded");
    return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_LATER, "fake: [UNAVAILABLE] busy");
}

static bool fake_broken(const struct mg_session *s)
{
    return s == NULL || s->broken;
}

static void fake_cancel(struct mg_session *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->cancelled, true);
    pthread_mutex_lock(&s->f->mu);
    s->f->cancelled++;
    pthread_mutex_unlock(&s->f->mu);
}

static void fake_close(struct mg_session *s, bool polite)
{
    (void)polite;
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->f->mu);
    s->f->open_now--;
    pthread_mutex_unlock(&s->f->mu);
    free(s);
}

static const struct mg_source_ops fake_ops = {
    .open = fake_open,
    .examine = fake_examine,
    .mailboxes = fake_mailboxes,
    .list = fake_list,
    .fetch = fake_fetch,
    .broken = fake_broken,
    .cancel = fake_cancel,
    .close = fake_close,
    .judge_login = NULL,
};

struct mg_source fake_source(struct fake_server *f)
{
    return (struct mg_source){&fake_ops, f};
}
