/* session.c - see include/mailgrab/session.h */
#include "mailgrab/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailgrab/cancel.h"
#include "mailgrab/log.h"

#define MAX_TRIES 3 /* of one control operation */

enum mg_code mg_sessions_init(struct mg_sessions *s, const struct mg_source *src, unsigned n,
                              struct mg_error *err)
{
    memset(s, 0, sizeof(*s));
    s->n = n ? n : 1;
    s->slots = calloc(s->n, sizeof(*s->slots));
    if (s->slots == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    s->src = *src;
    s->pause_ms = 1000;
    for (unsigned i = 0; i < s->n; i++) {
        s->slots[i].set = s;
        s->slots[i].id = i;
    }
    pthread_mutex_init(&s->mu, NULL);
    return MG_OK;
}

static void *logout_main(void *arg)
{
    struct mg_slot *slot = arg;
    slot->set->src.ops->close(slot->sess, true);
    return NULL;
}

void mg_slot_join_warm(struct mg_slot *slot)
{
    if (slot->warming) {
        pthread_join(slot->warm, NULL);
        slot->warming = false;
    }
}

void mg_sessions_finish(struct mg_sessions *s)
{
    if (s->slots == NULL)
        return;
    for (unsigned i = 0; i < s->n; i++)
        mg_slot_join_warm(&s->slots[i]);
    /* LOGOUT waits a round trip for its answer: say goodbye on every
     * session at once rather than one after another. */
    pthread_t *t = calloc(s->n, sizeof(*t));
    bool *spawned = calloc(s->n, sizeof(*spawned));
    for (unsigned i = 0; i < s->n; i++) {
        if (s->slots[i].sess == NULL)
            continue;
        if (t != NULL && spawned != NULL &&
            pthread_create(&t[i], NULL, logout_main, &s->slots[i]) == 0)
            spawned[i] = true;
        else
            s->src.ops->close(s->slots[i].sess, true);
    }
    for (unsigned i = 0; t != NULL && spawned != NULL && i < s->n; i++)
        if (spawned[i])
            pthread_join(t[i], NULL);
    free(t);
    free(spawned);
    pthread_mutex_destroy(&s->mu);
    free(s->slots);
    s->slots = NULL;
}

unsigned mg_sessions_backoff(const struct mg_sessions *s, enum mg_retry retry, unsigned n)
{
    if (retry == MG_RETRY_LATER)
        return s->pause_ms << (n < 6 ? n : 6);
    return s->pause_ms / 5 * n;
}

void mg_sessions_abort(struct mg_sessions *s, bool on)
{
    pthread_mutex_lock(&s->mu);
    s->abort = on;
    for (unsigned i = 0; on && i < s->n; i++)
        if (s->slots[i].sess != NULL)
            s->src.ops->cancel(s->slots[i].sess);
    pthread_mutex_unlock(&s->mu);
}

static void set_session(struct mg_slot *slot, struct mg_session *sess)
{
    struct mg_sessions *s = slot->set;
    pthread_mutex_lock(&s->mu);
    slot->sess = sess;
    slot->fetches = 0;
    slot->carried = 0;
    slot->examined[0] = '\0';
    if (sess != NULL && s->abort)
        s->src.ops->cancel(sess);
    pthread_mutex_unlock(&s->mu);
}

void mg_slot_drop(struct mg_slot *slot)
{
    struct mg_sessions *s = slot->set;
    pthread_mutex_lock(&s->mu);
    struct mg_session *sess = slot->sess;
    slot->sess = NULL;
    slot->examined[0] = '\0';
    pthread_mutex_unlock(&s->mu);
    s->src.ops->close(sess, false);
}

enum mg_code mg_slot_open(struct mg_slot *slot, struct mg_error *err)
{
    if (slot->sess != NULL)
        return MG_OK;
    struct mg_sessions *s = slot->set;
    struct mg_session *sess;
    enum mg_code rc = s->src.ops->open(s->src.ctx, &sess, err);
    if (rc == MG_OK) {
        set_session(slot, sess);
        atomic_store(&s->logged_in, true);
    } else if (s->src.ops->judge_login != NULL) {
        rc = s->src.ops->judge_login(err, atomic_load(&s->logged_in));
    }
    return rc;
}

/* EXAMINE mailbox on slot's session. */
static enum mg_code examine_on(struct mg_slot *slot, const char *mailbox,
                               struct mg_mailbox_info *mi, struct mg_error *err)
{
    struct mg_sessions *s = slot->set;
    slot->examined[0] = '\0'; /* a failed EXAMINE closes the old mailbox too */
    enum mg_code rc = s->src.ops->examine(slot->sess, mailbox, mi, err);
    if (rc == MG_OK) {
        snprintf(slot->examined, sizeof(slot->examined), "%s", mailbox);
        slot->info = *mi;
    } else if (s->src.ops->broken(slot->sess)) {
        mg_slot_drop(slot); /* out of step; a refusal leaves it usable */
    }
    return rc;
}

enum mg_code mg_slot_ready(struct mg_slot *slot, const char *mailbox, struct mg_error *err)
{
    enum mg_code rc = mg_slot_open(slot, err);
    if (rc == MG_OK && strcmp(slot->examined, mailbox) != 0) {
        struct mg_mailbox_info mi;
        rc = examine_on(slot, mailbox, &mi, err);
    }
    return rc;
}

typedef enum mg_code (*control_op)(struct mg_sessions *s, struct mg_session *sess, void *arg,
                                   struct mg_error *err);

/* Run op on the control session; when the session breaks or cannot be
 * opened for a passing reason, open a new one and try again. */
static enum mg_code with_control(struct mg_sessions *s, control_op op, void *arg,
                                 struct mg_error *err)
{
    struct mg_slot *ctl = &s->slots[0];
    for (unsigned attempt = 1;; attempt++) {
        if (mg_cancelled())
            return mg_cancel_error(err);
        enum mg_code rc = mg_slot_open(ctl, err);
        if (rc == MG_OK)
            rc = op(s, ctl->sess, arg, err);
        rc = mg_cancel_check(rc, err); /* a cancelled stream is no broken one */
        if (rc == MG_OK || rc == MG_E_INTERRUPTED || err->retry == MG_RETRY_NONE ||
            attempt >= MAX_TRIES)
            return rc;
        bool broken = s->src.ops->broken(ctl->sess);
        if (broken)
            mg_slot_drop(ctl);
        mg_info("%s; %s", err->msg, broken ? "reconnecting" : "asking again");
        mg_cancel_sleep(mg_sessions_backoff(s, err->retry, attempt));
    }
}

static enum mg_code no_op(struct mg_sessions *s, struct mg_session *sess, void *arg,
                          struct mg_error *err)
{
    return MG_OK;
}

/* A connection cut or stalled while it is being opened (TLS handshake,
 * greeting, login) is tried again like any other; refusals (credentials,
 * certificate, nothing listening) are final. */
enum mg_code mg_sessions_connect(struct mg_sessions *s, struct mg_error *err)
{
    return with_control(s, no_op, NULL, err);
}

struct list_arg {
    const char *mailbox;
    uint32_t from;
    uint64_t modseq;
    void (*flag)(uint32_t uid, const char *flags, void *ctx);
    struct mg_mailbox_info *mi;
    struct mg_msglist *out;
    struct mg_gmlist *gm;
    void (*each)(const char *name, unsigned roles, void *ctx);
    void *ctx;
};

/* EXAMINE on the control session unless the mailbox is open there. */
static enum mg_code examine_op(struct mg_sessions *s, struct mg_session *sess, void *arg,
                               struct mg_error *err)
{
    struct list_arg *la = arg;
    struct mg_slot *ctl = &s->slots[0];
    if (strcmp(ctl->examined, la->mailbox) == 0) {
        *la->mi = ctl->info;
        return MG_OK;
    }
    return examine_on(ctl, la->mailbox, la->mi, err);
}

static enum mg_code list_op(struct mg_sessions *s, struct mg_session *sess, void *arg,
                            struct mg_error *err)
{
    struct list_arg *la = arg;
    la->out->n = 0; /* a retry starts over */
    enum mg_code rc = examine_op(s, sess, arg, err);
    if (rc == MG_OK && (la->mi->exists > 0 || !la->mi->counted))
        rc = s->src.ops->list(s->slots[0].sess, la->from ? la->from : 1, la->out, err);
    return rc;
}

static enum mg_code gmlist_op(struct mg_sessions *s, struct mg_session *sess, void *arg,
                              struct mg_error *err)
{
    struct list_arg *la = arg;
    for (size_t i = 0; i < la->gm->n; i++) /* a retry starts over */
        free(la->gm->v[i].labels);
    la->gm->n = 0;
    enum mg_code rc = examine_op(s, sess, arg, err);
    if (rc == MG_OK && (la->mi->exists > 0 || !la->mi->counted))
        rc = s->src.ops->gmlist(s->slots[0].sess, la->from ? la->from : 1, la->modseq, la->gm, err);
    return rc;
}

static enum mg_code mailboxes_op(struct mg_sessions *s, struct mg_session *sess, void *arg,
                                 struct mg_error *err)
{
    struct list_arg *la = arg;
    return s->src.ops->mailboxes(sess, la->each, la->ctx, err);
}

enum mg_code mg_sessions_examine(struct mg_sessions *s, const char *mailbox,
                                 struct mg_mailbox_info *mi, struct mg_error *err)
{
    struct list_arg la = {.mailbox = mailbox, .mi = mi};
    return with_control(s, examine_op, &la, err);
}

enum mg_code mg_sessions_list(struct mg_sessions *s, const char *mailbox, uint32_t from,
                              struct mg_mailbox_info *mi, struct mg_msglist *out,
                              struct mg_error *err)
{
    struct list_arg la = {.mailbox = mailbox, .from = from, .mi = mi, .out = out};
    return with_control(s, list_op, &la, err);
}

static enum mg_code flags_op(struct mg_sessions *s, struct mg_session *sess, void *arg,
                             struct mg_error *err)
{
    struct list_arg *la = arg;
    enum mg_code rc = examine_op(s, sess, arg, err);
    if (rc == MG_OK)
        rc =
            s->src.ops->flags_since(s->slots[0].sess, la->from, la->modseq, la->flag, la->ctx, err);
    return rc;
}

enum mg_code mg_sessions_flags_since(struct mg_sessions *s, const char *mailbox, uint32_t below,
                                     uint64_t modseq,
                                     void (*each)(uint32_t uid, const char *flags, void *ctx),
                                     void *ctx, struct mg_error *err)
{
    if (s->src.ops->flags_since == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "this source cannot say which flags changed");
    struct mg_mailbox_info mi;
    struct list_arg la = {
        .mailbox = mailbox, .from = below, .modseq = modseq, .mi = &mi, .flag = each, .ctx = ctx};
    return with_control(s, flags_op, &la, err);
}

static enum mg_code status_op(struct mg_sessions *s, struct mg_session *sess, void *arg,
                              struct mg_error *err)
{
    struct list_arg *la = arg;
    return s->src.ops->status(sess, la->mailbox, la->mi, err);
}

enum mg_code mg_sessions_status(struct mg_sessions *s, const char *mailbox,
                                struct mg_mailbox_info *mi, struct mg_error *err)
{
    if (s->src.ops->status == NULL)
        return mg_error_set(err, MG_E_MAILBOX, "this source has no STATUS");
    struct list_arg la = {.mailbox = mailbox, .mi = mi};
    return with_control(s, status_op, &la, err);
}

enum mg_code mg_sessions_gmlist(struct mg_sessions *s, const char *mailbox, uint32_t from,
                                uint64_t changedsince, struct mg_mailbox_info *mi,
                                struct mg_gmlist *out, struct mg_error *err)
{
    if (s->src.ops->gmlist == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "this source has no Gmail listing");
    struct list_arg la = {
        .mailbox = mailbox, .from = from, .modseq = changedsince, .mi = mi, .gm = out};
    return with_control(s, gmlist_op, &la, err);
}

static enum mg_code caps_op(struct mg_sessions *s, struct mg_session *sess, void *arg,
                            struct mg_error *err)
{
    unsigned *caps = arg;
    *caps = s->src.ops->caps != NULL ? s->src.ops->caps(sess) : 0;
    if (s->src.ops->broken(sess))
        return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                              "the connection was lost asking what the server offers");
    return MG_OK;
}

enum mg_code mg_sessions_caps(struct mg_sessions *s, unsigned *caps, struct mg_error *err)
{
    return with_control(s, caps_op, caps, err);
}

enum mg_code mg_sessions_mailboxes(struct mg_sessions *s,
                                   void (*each)(const char *name, unsigned roles, void *ctx),
                                   void *ctx, struct mg_error *err)
{
    struct list_arg la = {.each = each, .ctx = ctx};
    return with_control(s, mailboxes_op, &la, err);
}

static void *warm_main(void *arg)
{
    struct mg_slot *slot = arg;
    struct mg_error err;
    mg_error_clear(&err);
    enum mg_code rc = mg_slot_ready(slot, slot->warm_mailbox, &err);
    /* Not an error yet: the slot's worker tries again and judges. */
    if (rc != MG_OK)
        mg_debug("connection %u could not be readied ahead: %s", slot->id, err.msg);
    return NULL;
}

void mg_sessions_warm(struct mg_sessions *s, const char *mailbox, unsigned n)
{
    /* Warm-up threads inherit main's blocked signals (cancel.h); a cancel
     * ends their network waits at once, and nothing is warmed after it. */
    if (strlen(mailbox) >= MG_MAILBOX_MAX || mg_cancelled())
        return;
    for (unsigned i = 1; i < n && i < s->n; i++) {
        struct mg_slot *slot = &s->slots[i];
        mg_slot_join_warm(slot);
        if (slot->sess != NULL && strcmp(slot->examined, mailbox) == 0)
            continue;
        snprintf(slot->warm_mailbox, sizeof(slot->warm_mailbox), "%s", mailbox);
        slot->warming = pthread_create(&slot->warm, NULL, warm_main, slot) == 0;
    }
}
