/* imap.c - see include/mailgrab/imap.h */
#include "mailgrab/imap.h"

#include <errno.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libetpan/libetpan.h>

#include "mailgrab/fetchresp.h"
#include "mailgrab/imapcode.h"
#include "mailgrab/imapframe.h"
#include "mailgrab/log.h"
#include "mailgrab/roles.h"
#include "mailgrab/mboxname.h"
#include "mailgrab/oauth2.h"

/* Exported by libetpan 1.9.4, whose mailimap_sender.h is not installed. They
 * let mailgrab send AUTHENTICATE with an initial response (RFC 4959) for
 * mechanisms libetpan does not know (OAUTHBEARER). */
int mailimap_token_send(mailstream *fd, const char *atom);
int mailimap_space_send(mailstream *fd);
int mailimap_crlf_send(mailstream *fd);
int mailimap_literal_count_send(mailstream *fd, size_t count);

#define SASL_MAX (2 * MG_OAUTH2_TOKEN_MAX + 1024)
/* A listing may hold a few more messages than EXISTS said (new mail arrives
 * meanwhile); without EXISTS, at most this many. */
#define LIST_SLACK 10000u
#define LIST_UNCOUNTED_MAX 1000000u
#define MAILBOXES_MAX 10000u

struct mg_imap {
    mailimap *imap;
    const struct mg_server *srv;
    /* Fetch state, valid during mg_imap_fetch. */
    const struct mg_fetch_sink *sink;
    bool in_body;        /* body pieces of the current message have begun */
    size_t body_bytes;   /* of the current message */
    bool sink_error;     /* a sink callback asked to stop */
    bool broken;         /* out of step with the server: only good for closing */
    bool caps_known;     /* caps holds what the server offers after login */
    char selected[1024]; /* the mailbox open read-write (for labels), or "" */
    unsigned caps;
    bool throttled; /* the last FETCH's OK asked to slow down */
};

#ifndef MAILGRAB_VERSION
#define MAILGRAB_VERSION "unknown"
#endif

/* The server's last response text, bounded, for messages. */
static const char *server_text(struct mg_imap *s)
{
    const char *t = s->imap ? s->imap->imap_response : NULL;
    return (t != NULL && *t != '\0') ? t : "no reason given";
}

static enum mg_code stream_error(struct mg_imap *s, const char *doing, struct mg_error *err)
{
    s->broken = true;
    if (mg_tls_refused(s->imap->imap_stream))
        return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                              "%s broke the protocol while %s: %s (mailgrab's bound)", s->srv->host,
                              doing, mg_tls_last_error(s->imap->imap_stream));
    const char *bye = mg_tls_bye_text(s->imap->imap_stream);
    char code[32];
    mg_imap_text_code(bye, code, sizeof(code));
    enum mg_refusal why = mg_imap_refusal(code, MG_CMD_OTHER);
    /* Gmail: "* BYE [OVERQUOTA] Account exceeded command or bandwidth limits." */
    if (bye != NULL && why == MG_REFUSED_LIMIT)
        return mg_error_set(err, MG_E_LIMIT,
                            "%s ended the session while %s: %s (a download quota: Gmail "
                            "allows about 2.5 GB a day over IMAP); what is stored is kept, run "
                            "again later for the rest",
                            s->srv->host, doing, bye);
    if (bye != NULL && why == MG_REFUSED_BUSY)
        return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_LATER,
                              "%s ended the session while %s, saying: %s", s->srv->host, doing,
                              bye);
    if (bye != NULL)
        return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                              "%s ended the session while %s, saying: %s", s->srv->host, doing,
                              bye);
    return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW, "connection to %s lost while %s: %s",
                          s->srv->host, doing, mg_tls_last_error(s->imap->imap_stream));
}

/* Map a libetpan failure that is not specific to one command. */
static enum mg_code generic_error(struct mg_imap *s, int r, const char *doing, struct mg_error *err)
{
    if (r == MAILIMAP_ERROR_STREAM)
        return stream_error(s, doing, err);
    if (r == MAILIMAP_ERROR_MEMORY)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory while %s", doing);
    s->broken = true;
    return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                          "%s sent a response mailgrab cannot parse while %s (libetpan error %d)",
                          s->srv->host, doing, r);
}

/* The tagged reply to the last command: its state (OK, NO, BAD) and the
 * atom of its response code ("" if none). */
struct reply {
    char state[8];
    char code[32];
};

/* Read from what libetpan last parsed, not from the codes it kept: those
 * may come from an untagged line. False when the reply is not there. */
static bool last_reply(struct mg_imap *s, struct reply *rp)
{
    memset(rp, 0, sizeof(*rp));
    const MMAPString *buf = s->imap ? s->imap->imap_stream_buffer : NULL;
    char tag[16];
    snprintf(tag, sizeof(tag), "%d", s->imap ? s->imap->imap_tag : 0);
    return buf != NULL && mg_imap_tagged_reply(buf->str, buf->len, tag, rp->state,
                                               sizeof(rp->state), rp->code, sizeof(rp->code)) == 0;
}

/* What the server's refusal of the last command means, by its code. */
static enum mg_refusal refusal(struct mg_imap *s, enum mg_imap_cmd cmd)
{
    struct reply rp;
    last_reply(s, &rp);
    return mg_imap_refusal(rp.code, cmd);
}

/* libetpan reports a tagged BAD as MAILIMAP_ERROR_PROTOCOL, like a reply
 * to a tag never sent; only the second leaves the session out of step. */
static bool answered_bad(struct mg_imap *s, int r)
{
    struct reply rp;
    return r == MAILIMAP_ERROR_PROTOCOL && last_reply(s, &rp) && strcasecmp(rp.state, "BAD") == 0;
}

/* The server's last response as the user should see it: "[CODE] text". */
static void said(struct mg_imap *s, char *buf, size_t cap)
{
    struct reply rp;
    last_reply(s, &rp);
    const char *code = rp.code;
    snprintf(buf, cap, "%s%s%s%s", code[0] ? "[" : "", code, code[0] ? "] " : "", server_text(s));
}

/* A tagged NO to a FETCH: the session is still in step; what came before it
 * is whole. Returns MG_OK when it only says that some messages are gone. */
static enum mg_code fetch_refused(struct mg_imap *s, const char *doing, struct mg_error *err)
{
    char text[256];
    said(s, text, sizeof(text));
    enum mg_refusal why = refusal(s, MG_CMD_FETCH);
    if (why == MG_REFUSED_GONE)
        return MG_OK; /* the caller sees what is missing */
    /* Gmail: "[OVERQUOTA] Account exceeded command or bandwidth limits." */
    if (why == MG_REFUSED_LIMIT)
        return mg_error_set(err, MG_E_LIMIT,
                            "%s refuses to send more while %s: %s (a download quota: Gmail "
                            "allows about 2.5 GB a day over IMAP); what is stored is kept, "
                            "run again later for the rest",
                            s->srv->host, doing, text);
    return mg_error_retry(err, MG_E_PROTOCOL,
                          why == MG_REFUSED_BUSY ? MG_RETRY_LATER : MG_RETRY_NOW,
                          "%s refused while %s: %s", s->srv->host, doing, text);
}

/* The server said NO to our credentials: a limit, or really a refusal? */
static enum mg_code refused(struct mg_imap *s, const struct mg_creds *cr, struct mg_error *err)
{
    char t[256];
    said(s, t, sizeof(t));
    enum mg_refusal why = refusal(s, MG_CMD_LOGIN);
    /* A server limiting connections or busy is not a bad password. */
    if (why == MG_REFUSED_BUSY)
        return mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER,
                              "%s will not open another session for %s: %s", s->srv->host, cr->user,
                              t);
    /* No code that blames the credentials: mg_imap_judge_login decides. */
    if (why == MG_REFUSED_UNSURE)
        return mg_error_retry(err, MG_E_AUTH, MG_RETRY_LATER, "%s refused the login of %s: %s",
                              s->srv->host, cr->user, t);
    if (cr->auth != MG_AUTH_PASSWORD)
        return mg_error_set(err, MG_E_AUTH,
                            "%s refused the OAuth2 token for %s: %s (check the account and that "
                            "the client may use IMAP; run mailgrab login again)",
                            s->srv->host, cr->user, t);
    return mg_error_set(err, MG_E_AUTH,
                        "login as %s at %s failed: %s (check the user and password; Gmail needs "
                        "an app password or --auth xoauth2)",
                        cr->user, s->srv->host, t);
}

enum mg_code mg_imap_judge_login(struct mg_error *err, bool logged_in_before)
{
    if (err->code != MG_E_AUTH || err->retry != MG_RETRY_LATER)
        return err->code;
    char was[MG_ERROR_MAX];
    snprintf(was, sizeof(was), "%s", err->msg);
    if (!logged_in_before)
        return mg_error_set(err, MG_E_AUTH,
                            "%s (check the user and password, or run mailgrab login again for "
                            "OAuth2; Gmail needs an app password or --auth xoauth2)",
                            was);
    return mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER,
                          "%s (taken for a connection limit: these credentials logged in before "
                          "in this run)",
                          was);
}

/* The state (OK, NO, BAD) of a parsed response's tagged end, or -1 when it
 * ended otherwise (a fatal BYE): the union is read only as what it is. */
static int tagged_state(const struct mailimap_response *resp)
{
    const struct mailimap_response_done *d = resp->rsp_resp_done;
    if (d == NULL || d->rsp_type != MAILIMAP_RESP_DONE_TYPE_TAGGED ||
        d->rsp_data.rsp_tagged == NULL || d->rsp_data.rsp_tagged->rsp_cond_state == NULL)
        return -1;
    return d->rsp_data.rsp_tagged->rsp_cond_state->rsp_type;
}

/* AUTHENTICATE mech <ir>; on a "+" challenge (a refusal with details),
 * answer with `dummy` to receive the tagged NO. Returns a libetpan code:
 * MAILIMAP_NO_ERROR, MAILIMAP_ERROR_LOGIN on NO, or a stream/parse error. */
static int sasl_ir(struct mg_imap *s, const char *mech, const char *ir, const char *dummy)
{
    mailimap *im = s->imap;
    mailstream *st = im->imap_stream;
    int r = mailimap_send_current_tag(im);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_token_send(st, "AUTHENTICATE");
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_space_send(st);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_token_send(st, mech);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_space_send(st);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_token_send(st, ir);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_crlf_send(st);
    if (r != MAILIMAP_NO_ERROR)
        return r;
    if (mailstream_flush(st) == -1 || mailimap_read_line(im) == NULL)
        return MAILIMAP_ERROR_STREAM;
    if (im->imap_stream_buffer->len > 0 && im->imap_stream_buffer->str[0] == '+') {
        if (mailimap_token_send(st, dummy) != MAILIMAP_NO_ERROR ||
            mailimap_crlf_send(st) != MAILIMAP_NO_ERROR || mailstream_flush(st) == -1)
            return MAILIMAP_ERROR_STREAM;
    }
    struct mailimap_response *resp = NULL;
    r = mailimap_parse_response(im, &resp);
    if (r != MAILIMAP_NO_ERROR)
        return r;
    int type = tagged_state(resp);
    mailimap_response_free(resp);
    if (type < 0)
        return MAILIMAP_ERROR_STREAM; /* the server ended the session */
    if (type != MAILIMAP_RESP_COND_STATE_OK)
        return MAILIMAP_ERROR_LOGIN;
    im->imap_state = MAILIMAP_STATE_AUTHENTICATED;
    return MAILIMAP_NO_ERROR;
}

/* Capabilities from before the login may not be the ones after it (RFC
 * 3501 6.2.3): forget them, so that only what the server says after
 * logging in counts. */
static void forget_capabilities(struct mg_imap *s)
{
    struct mailimap_connection_info *ci = s->imap->imap_connection_info;
    if (ci != NULL && ci->imap_capability != NULL) {
        mailimap_capability_data_free(ci->imap_capability);
        ci->imap_capability = NULL;
    }
}

static enum mg_code oauth_login(struct mg_imap *s, const struct mg_creds *cr, struct mg_error *err)
{
    bool bearer = cr->auth == MG_AUTH_OAUTHBEARER;
    const char *mech = bearer ? "OAUTHBEARER" : "XOAUTH2";
    struct mailimap_capability_data *caps = NULL;
    if (mailimap_capability(s->imap, &caps) == MAILIMAP_NO_ERROR && caps != NULL)
        mailimap_capability_data_free(caps);
    if (!mailimap_has_authentication(s->imap, mech))
        return mg_error_set(err, MG_E_AUTH,
                            "%s does not offer AUTH=%s: use --auth %s or --auth password",
                            s->srv->host, mech, bearer ? "xoauth2" : "oauthbearer");
    forget_capabilities(s);
    char *token = malloc(MG_OAUTH2_TOKEN_MAX);
    char *ir = malloc(SASL_MAX);
    enum mg_code rc = MG_OK;
    if (token == NULL || ir == NULL) {
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        goto out;
    }
    /* A refused token gets one more try with a fresh one: it may have
     * expired between our clock and the server's. */
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = mg_oauth2_token(cr->oauth, token, MG_OAUTH2_TOKEN_MAX, err);
        if (rc != MG_OK)
            goto out;
        int k = bearer ? mg_oauthbearer_initial(cr->user, s->srv->host, s->srv->port, token, ir,
                                                SASL_MAX)
                       : mg_xoauth2_initial(cr->user, token, ir, SASL_MAX);
        if (k != 0) {
            rc = mg_error_set(err, MG_E_OAUTH, "the OAuth2 token or user name is not usable");
            goto out;
        }
        int r = sasl_ir(s, mech, ir, bearer ? "AQ==" : "");
        explicit_bzero(ir, SASL_MAX);
        if (r == MAILIMAP_NO_ERROR) {
            rc = MG_OK;
            goto out;
        }
        if (r != MAILIMAP_ERROR_LOGIN) {
            rc = generic_error(s, r, "authenticating", err);
            goto out;
        }
        rc = refused(s, cr, err);
        if (rc != MG_E_AUTH)
            goto out;
        mg_oauth2_reject(cr->oauth, token);
        mg_info("%s refused the OAuth2 token; getting a fresh one", s->srv->host);
    }
out:
    if (token != NULL)
        explicit_bzero(token, MG_OAUTH2_TOKEN_MAX);
    free(token);
    free(ir);
    return rc;
}

/* COMPRESS DEFLATE (RFC 4978), sent by hand: Debian's libetpan has no zlib
 * and its mailimap_compress kills the session. The driver hands libetpan
 * the answer a byte at a time, so nothing after it is taken for text, and
 * switches right after a tagged OK. A NO or BAD leaves the session as it
 * was. */
static enum mg_code start_compress(struct mg_imap *s, struct mg_error *err)
{
    mailimap *im = s->imap;
    mailstream *st = im->imap_stream;
    if (im->imap_connection_info == NULL || im->imap_connection_info->imap_capability == NULL) {
        struct mailimap_capability_data *caps = NULL;
        int r = mailimap_capability(im, &caps);
        if (r != MAILIMAP_NO_ERROR)
            return generic_error(s, r, "asking for capabilities", err);
        mailimap_capability_data_free(caps);
    }
    if (!mailimap_has_extension(im, "COMPRESS=DEFLATE") || st->read_buffer_len != 0)
        return MG_OK;
    mg_tls_hold_reads(st, true);
    int r = mailimap_send_current_tag(im);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_token_send(st, "COMPRESS DEFLATE");
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_crlf_send(st);
    if (r == MAILIMAP_NO_ERROR && mailstream_flush(st) == -1)
        r = MAILIMAP_ERROR_STREAM;
    if (r == MAILIMAP_NO_ERROR && mailimap_read_line(im) == NULL)
        r = MAILIMAP_ERROR_STREAM;
    struct mailimap_response *resp = NULL;
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_parse_response(im, &resp);
    mg_tls_hold_reads(st, false);
    if (r != MAILIMAP_NO_ERROR) {
        if (answered_bad(s, r))
            return MG_OK;
        return generic_error(s, r, "switching to COMPRESS=DEFLATE", err);
    }
    int state = tagged_state(resp);
    mailimap_response_free(resp);
    if (state != MAILIMAP_RESP_COND_STATE_OK) {
        mg_debug("%s refused COMPRESS=DEFLATE: %s", s->srv->host, server_text(s));
        return MG_OK;
    }
    enum mg_code rc = mg_tls_start_compress(st, err);
    if (rc != MG_OK)
        s->broken = true;
    return rc;
}

static void note_caps(struct mg_imap *s);
static bool caps_said(const struct mg_imap *s);

enum mg_code mg_imap_open(const struct mg_server *srv, const struct mg_creds *cr,
                          struct mg_imap **out, struct mg_error *err)
{
    struct mg_imap *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    s->srv = srv;

    mailstream *stream = NULL;
    enum mg_code rc = mg_tls_connect(srv->tls, srv->host, srv->port, srv->timeout_s, &stream, err);
    if (rc != MG_OK) {
        free(s);
        return rc;
    }
    s->imap = mailimap_new(0, NULL);
    if (s->imap == NULL) {
        mailstream_close(stream);
        free(s);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    mailimap_set_timeout(s->imap, srv->timeout_s);

    int r = mailimap_connect(s->imap, stream); /* the session owns stream now */
    if (r != MAILIMAP_NO_ERROR_NON_AUTHENTICATED && r != MAILIMAP_NO_ERROR_AUTHENTICATED) {
        if (r == MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION)
            rc = mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER, "%s refused the session: %s",
                                srv->host, server_text(s));
        else if (mg_tls_greeted_bye(stream))
            rc = mg_error_retry(err, MG_E_CONNECT, MG_RETRY_LATER, "%s refused the session: %s",
                                srv->host, mg_tls_last_error(stream));
        else
            rc = generic_error(s, r, "reading the greeting", err);
        mg_imap_close(s, false);
        return rc;
    }
    if (r == MAILIMAP_NO_ERROR_NON_AUTHENTICATED && cr->auth != MG_AUTH_PASSWORD) {
        rc = oauth_login(s, cr, err);
        if (rc != MG_OK) {
            mg_imap_close(s, false);
            return rc;
        }
    } else if (r == MAILIMAP_NO_ERROR_NON_AUTHENTICATED) {
        forget_capabilities(s);
        r = mailimap_login(s->imap, cr->user, cr->password);
        if (r == MAILIMAP_ERROR_LOGIN) {
            rc = refused(s, cr, err);
            mg_imap_close(s, false);
            return rc;
        }
        if (r != MAILIMAP_NO_ERROR) {
            rc = generic_error(s, r, "logging in", err);
            if (err->retry == MG_RETRY_NOW)
                err->retry = MG_RETRY_LATER; /* dropped at login: often a limit */
            mg_imap_close(s, false);
            return rc;
        }
    }
    if (mg_tls_ctx_compress(srv->tls)) {
        rc = start_compress(s, err);
        if (rc != MG_OK) {
            mg_imap_close(s, false);
            return rc;
        }
    }
    if (caps_said(s))
        note_caps(s); /* Gmail is told who we are on every session */
    *out = s;
    return MG_OK;
}

/* A quoted string may hold 7-bit text only (RFC 3501 4.3): a name a server
 * listed in raw UTF-8 (hoodiecrow, GNU imap4d, Cyrus with some settings) is
 * sent back as a literal, which any server takes. */
static bool needs_literal(const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p >= 0x80 || *p == '\r' || *p == '\n')
            return true;
    return false;
}

/* mailimap_examine with the name as a synchronizing literal. */
static int examine_literal(struct mg_imap *s, const char *mailbox)
{
    mailimap *im = s->imap;
    mailstream *st = im->imap_stream;
    size_t len = strlen(mailbox);
    if (im->imap_state != MAILIMAP_STATE_AUTHENTICATED && im->imap_state != MAILIMAP_STATE_SELECTED)
        return MAILIMAP_ERROR_BAD_STATE;
    int r = mailimap_send_current_tag(im);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_token_send(st, "EXAMINE");
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_space_send(st);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_literal_count_send(st, len);
    if (r != MAILIMAP_NO_ERROR)
        return r;
    if (mailstream_flush(st) == -1 || mailimap_read_line(im) == NULL)
        return MAILIMAP_ERROR_STREAM;
    struct mailimap_response *resp = NULL;
    bool go_on = im->imap_stream_buffer->len > 0 && im->imap_stream_buffer->str[0] == '+';
    if (go_on) {
        if (mailstream_write(st, mailbox, len) != (ssize_t)len ||
            mailimap_crlf_send(st) != MAILIMAP_NO_ERROR || mailstream_flush(st) == -1 ||
            mailimap_read_line(im) == NULL)
            return MAILIMAP_ERROR_STREAM;
    }
    /* Without "+", the server refused the literal: its tagged reply is read. */
    if (im->imap_selection_info != NULL)
        mailimap_selection_info_free(im->imap_selection_info);
    im->imap_selection_info = mailimap_selection_info_new();
    r = mailimap_parse_response(im, &resp);
    if (r != MAILIMAP_NO_ERROR)
        return r;
    int state = tagged_state(resp);
    mailimap_response_free(resp);
    if (state < 0)
        return MAILIMAP_ERROR_STREAM; /* the server ended the session */
    if (go_on && state == MAILIMAP_RESP_COND_STATE_OK) {
        im->imap_state = MAILIMAP_STATE_SELECTED;
        return MAILIMAP_NO_ERROR;
    }
    mailimap_selection_info_free(im->imap_selection_info);
    im->imap_selection_info = NULL;
    im->imap_state = MAILIMAP_STATE_AUTHENTICATED;
    return MAILIMAP_ERROR_EXAMINE;
}

/* A tagged NO or BAD to EXAMINE costs this mailbox, not the session; a
 * busy server gets asked again later. */
static enum mg_code examine_refused(struct mg_imap *s, const char *mailbox, struct mg_error *err)
{
    char text[256];
    said(s, text, sizeof(text));
    if (refusal(s, MG_CMD_EXAMINE) == MG_REFUSED_BUSY)
        return mg_error_retry(err, MG_E_MAILBOX, MG_RETRY_LATER,
                              "mailbox '%s' cannot be opened now: %s", mailbox, text);
    return mg_error_set(err, MG_E_MAILBOX,
                        "mailbox '%s' cannot be opened: %s (check --mailbox; names are "
                        "case-sensitive except INBOX)",
                        mailbox, text);
}

enum mg_code mg_imap_examine(struct mg_imap *s, const char *mailbox, struct mg_mailbox_info *info,
                             struct mg_error *err)
{
    int r =
        needs_literal(mailbox) ? examine_literal(s, mailbox) : mailimap_examine(s->imap, mailbox);
    s->selected[0] = '\0'; /* no longer open read-write */
    if (r == MAILIMAP_ERROR_EXAMINE || answered_bad(s, r))
        return examine_refused(s, mailbox, err);
    if (r != MAILIMAP_NO_ERROR)
        return generic_error(s, r, "opening the mailbox", err);
    struct mailimap_selection_info *si = s->imap->imap_selection_info;
    memset(info, 0, sizeof(*info));
    if (si != NULL) {
        info->uidvalidity = si->sel_uidvalidity;
        info->exists = si->sel_exists;
        info->counted = si->sel_has_exists;
        info->uidnext = si->sel_uidnext;
    }
    /* Without it, the UIDs of one session mean nothing in the next: a backup
     * could not tell what it holds. */
    if (info->uidvalidity == 0)
        return mg_error_set(err, MG_E_MAILBOX,
                            "%s gave no UIDVALIDITY for mailbox '%s' (or 0): its message numbers "
                            "cannot be trusted from one run to the next, so it is not backed up; "
                            "report this to the server's administrator",
                            s->srv->host, mailbox);
    return MG_OK;
}

enum mg_code mg_imap_status(struct mg_imap *s, const char *mailbox, struct mg_mailbox_info *info,
                            struct mg_error *err)
{
    /* libetpan sends the name quoted: a raw UTF-8 name is opened instead. */
    if (needs_literal(mailbox))
        return mg_error_set(err, MG_E_MAILBOX, "STATUS is not asked for mailbox '%s'", mailbox);
    struct mailimap_status_att_list *want = mailimap_status_att_list_new_empty();
    bool condstore = (mg_imap_caps(s) & MG_CAP_CONDSTORE) != 0;
    if (want == NULL || mailimap_status_att_list_add(want, MAILIMAP_STATUS_ATT_UIDNEXT) != 0 ||
        mailimap_status_att_list_add(want, MAILIMAP_STATUS_ATT_UIDVALIDITY) != 0 ||
        mailimap_status_att_list_add(want, MAILIMAP_STATUS_ATT_MESSAGES) != 0 ||
        (condstore && mailimap_status_att_list_add(want, MAILIMAP_STATUS_ATT_HIGHESTMODSEQ) != 0)) {
        if (want != NULL)
            mailimap_status_att_list_free(want);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    struct mailimap_mailbox_data_status *st = NULL;
    int r = mailimap_status(s->imap, mailbox, want, &st);
    mailimap_status_att_list_free(want);
    if (r == MAILIMAP_ERROR_STATUS || answered_bad(s, r))
        return mg_error_set(err, MG_E_MAILBOX, "%s refused STATUS of mailbox '%s'", s->srv->host,
                            mailbox);
    if (r != MAILIMAP_NO_ERROR)
        return generic_error(s, r, "asking about the mailbox", err);
    memset(info, 0, sizeof(*info));
    for (clistiter *it = st && st->st_info_list ? clist_begin(st->st_info_list) : NULL; it != NULL;
         it = clist_next(it)) {
        struct mailimap_status_info *si = clist_content(it);
        if (si->st_att == MAILIMAP_STATUS_ATT_UIDNEXT)
            info->uidnext = si->st_value;
        else if (si->st_att == MAILIMAP_STATUS_ATT_UIDVALIDITY)
            info->uidvalidity = si->st_value;
        else if (si->st_att == MAILIMAP_STATUS_ATT_MESSAGES) {
            info->exists = si->st_value;
            info->counted = true;
        } else if (si->st_att == MAILIMAP_STATUS_ATT_EXTENSION && si->st_ext_data != NULL &&
                   si->st_ext_data->ext_extension == &mailimap_extension_condstore &&
                   si->st_ext_data->ext_type == MAILIMAP_CONDSTORE_TYPE_STATUS_INFO &&
                   si->st_ext_data->ext_data != NULL) {
            /* HIGHESTMODSEQ comes as CONDSTORE's extension data */
            const struct mailimap_condstore_status_info *cs = si->st_ext_data->ext_data;
            info->highestmodseq = cs->cs_highestmodseq_value;
        }
    }
    if (st != NULL)
        mailimap_mailbox_data_status_free(st);
    if (info->uidvalidity == 0 || info->uidnext == 0 || !info->counted)
        return mg_error_set(err, MG_E_MAILBOX, "%s's STATUS of '%s' was not complete", s->srv->host,
                            mailbox);
    return MG_OK;
}

static bool selectable(const struct mailimap_mbx_list_flags *f)
{
    if (f == NULL)
        return true;
    if (f->mbf_type == MAILIMAP_MBX_LIST_FLAGS_SFLAG &&
        f->mbf_sflag == MAILIMAP_MBX_LIST_SFLAG_NOSELECT)
        return false;
    for (clistiter *it = f->mbf_oflags ? clist_begin(f->mbf_oflags) : NULL; it != NULL;
         it = clist_next(it)) {
        struct mailimap_mbx_list_oflag *of = clist_content(it);
        if (of->of_flag_ext != NULL && (strcasecmp(of->of_flag_ext, "NonExistent") == 0 ||
                                        strcasecmp(of->of_flag_ext, "Noselect") == 0))
            return false;
    }
    return true;
}

/* SPECIAL-USE attributes (RFC 6154) and Gmail's \\Important, as roles. */
static unsigned roles_of(const struct mailimap_mbx_list_flags *f)
{
    unsigned roles = 0;
    for (clistiter *it = f && f->mbf_oflags ? clist_begin(f->mbf_oflags) : NULL; it != NULL;
         it = clist_next(it)) {
        struct mailimap_mbx_list_oflag *of = clist_content(it);
        if (of->of_flag_ext == NULL)
            continue;
        roles |= mg_role_bit(of->of_flag_ext, strlen(of->of_flag_ext));
    }
    return roles;
}

enum mg_code mg_imap_mailboxes(struct mg_imap *s,
                               void (*each)(const char *name, unsigned roles, void *ctx), void *ctx,
                               struct mg_error *err)
{
    clist *list = NULL;
    int r = mailimap_list(s->imap, "", "*", &list);
    if (r == MAILIMAP_ERROR_LIST)
        return mg_error_set(err, MG_E_PROTOCOL, "%s refused to list mailboxes: %s", s->srv->host,
                            server_text(s));
    if (r != MAILIMAP_NO_ERROR)
        return generic_error(s, r, "listing mailboxes", err);
    if (list != NULL && (unsigned)clist_count(list) > MAILBOXES_MAX) {
        mailimap_list_result_free(list);
        return mg_error_set(err, MG_E_PROTOCOL,
                            "%s lists more than %u mailboxes: give the ones to back up with "
                            "--mailbox",
                            s->srv->host, MAILBOXES_MAX);
    }
    for (clistiter *it = list ? clist_begin(list) : NULL; it != NULL; it = clist_next(it)) {
        struct mailimap_mailbox_list *mb = clist_content(it);
        if (mb->mb_name != NULL && selectable(mb->mb_flag))
            each(mb->mb_name, roles_of(mb->mb_flag), ctx);
    }
    if (list != NULL)
        mailimap_list_result_free(list);
    return MG_OK;
}

/* libetpan only hands items to the attribute handler (and then frees them)
 * when a progress callback is set too; this one does nothing. */
static void no_progress(size_t current, size_t maximum, void *ctx)
{
}

struct list_ctx {
    struct mg_imap *s;
    struct mg_msglist *out;
    uint32_t from; /* "from:*" also answers with the last message below from */
    size_t max;
    bool oom;
    bool too_many;
};

static void list_att(struct mailimap_msg_att *att, void *ctx)
{
    struct list_ctx *lc = ctx;
    uint32_t uid = 0, size = 0;
    bool has_size = false;
    for (clistiter *it = clist_begin(att->att_list); it != NULL; it = clist_next(it)) {
        struct mailimap_msg_att_item *item = clist_content(it);
        if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC)
            continue;
        struct mailimap_msg_att_static *st = item->att_data.att_static;
        if (st->att_type == MAILIMAP_MSG_ATT_UID)
            uid = st->att_data.att_uid;
        else if (st->att_type == MAILIMAP_MSG_ATT_RFC822_SIZE) {
            size = st->att_data.att_rfc822_size;
            has_size = true;
        }
    }
    /* Unsolicited FETCH responses (flag changes) carry no size: skip them. */
    if (uid == 0 || uid < lc->from || !has_size || lc->too_many || lc->oom)
        return;
    if (lc->out->n >= lc->max) {
        /* Memory follows the mailbox, not the server's whim: stop reading. */
        lc->too_many = true;
        mg_tls_cancel(lc->s->imap->imap_stream);
        return;
    }
    if (mg_msglist_push(lc->out, uid, size) != 0)
        lc->oom = true;
}

static void set_handlers(struct mg_imap *s, mailimap_msg_att_handler *att,
                         mailimap_msg_body_handler *body, void *ctx)
{
    mg_tls_expect_fetch(s->imap->imap_stream, att != NULL, body != NULL);
    mailimap_set_progress_callback(s->imap, att ? no_progress : NULL, att ? no_progress : NULL,
                                   NULL);
    mailimap_set_msg_att_handler(s->imap, att, ctx);
    mailimap_set_msg_body_handler(s->imap, body, ctx);
}

/* After a tagged NO, libetpan 1.9.4 has freed the result list already but
 * left the pointer set: freeing it again crashed on any refused FETCH. */
static void free_fetch_result(int r, clist *result)
{
    if (r == MAILIMAP_NO_ERROR && result != NULL)
        mailimap_fetch_list_free(result);
}

/* Free what a FETCH command was being built from, and say why. */
static enum mg_code fetch_oom(struct mailimap_set *set, struct mailimap_fetch_type *ft,
                              struct mg_error *err)
{
    if (set != NULL)
        mailimap_set_free(set);
    if (ft != NULL)
        mailimap_fetch_type_free(ft);
    return mg_error_set(err, MG_E_INTERNAL, "out of memory");
}

enum mg_code mg_imap_list(struct mg_imap *s, uint32_t from, struct mg_msglist *out,
                          struct mg_error *err)
{
    if (from == 0)
        from = 1;
    struct mailimap_set *set = mailimap_set_new_interval(from, 0); /* from:* */
    struct mailimap_fetch_type *ft = mailimap_fetch_type_new_fetch_att_list_empty();
    if (set == NULL || ft == NULL)
        goto oom;
    if (mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid()) != 0 ||
        mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_rfc822_size()) != 0)
        goto oom;

    const struct mailimap_selection_info *si = s->imap->imap_selection_info;
    size_t max =
        si != NULL && si->sel_has_exists ? (size_t)si->sel_exists + LIST_SLACK : LIST_UNCOUNTED_MAX;
    struct list_ctx lc = {s, out, from, out->n + max, false, false};
    set_handlers(s, list_att, NULL, &lc);
    clist *result = NULL;
    int r = mailimap_uid_fetch(s->imap, set, ft, &result);
    set_handlers(s, NULL, NULL, NULL);
    mailimap_set_free(set);
    mailimap_fetch_type_free(ft);
    free_fetch_result(r, result);
    if (lc.oom)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory listing messages");
    if (lc.too_many) {
        s->broken = true; /* its stream was cut short */
        return mg_error_set(err, MG_E_PROTOCOL,
                            "%s lists more messages than the mailbox holds (%zu; EXISTS said %u)",
                            s->srv->host, max,
                            si != NULL && si->sel_has_exists ? si->sel_exists : 0);
    }
    if (r == MAILIMAP_ERROR_UID_FETCH) {
        enum mg_code rc = fetch_refused(s, "listing the mailbox", err);
        if (rc != MG_OK && err->retry == MG_RETRY_NOW)
            err->retry = MG_RETRY_NONE; /* a listing refused for no stated reason stays refused */
        return rc;
    }
    if (r != MAILIMAP_NO_ERROR)
        return generic_error(s, r, "listing messages", err);
    return MG_OK;

oom:
    return fetch_oom(set, ft, err);
}

static int ignore_each(void *ctx, const struct mg_fetchresp *r, struct mg_error *err);
static enum mg_code raw_fetch(struct mg_imap *s, const char *cmd, const char *doing,
                              int (*each)(void *ctx, const struct mg_fetchresp *r,
                                          struct mg_error *err),
                              void *ctx, struct mg_error *err);

/* Say who we are (RFC 2971), where Google asks for it. Best effort. Sent
 * by hand: libetpan 1.9.4's mailimap_id_basic leaks its arguments. */
static void send_id(struct mg_imap *s)
{
    if (!mailimap_has_id(s->imap))
        return;
    struct mg_error err;
    if (raw_fetch(s, "MGL ID (\"name\" \"mailgrab\" \"version\" \"" MAILGRAB_VERSION "\")\r\n",
                  "saying who we are", ignore_each, NULL, &err) != MG_OK)
        mg_debug("ID: %s", err.msg);
}

/* What the server said it offers after login, if it said it (capabilities
 * from before the login are forgotten): the caps bits, and ID on Gmail. */
static void note_caps(struct mg_imap *s)
{
    s->caps_known = true;
    if (mailimap_has_extension(s->imap, "X-GM-EXT-1"))
        s->caps |= MG_CAP_GMAIL;
    if (mailimap_has_extension(s->imap, "CONDSTORE"))
        s->caps |= MG_CAP_CONDSTORE;
    if (mailimap_has_extension(s->imap, "SPECIAL-USE"))
        s->caps |= MG_CAP_SPECIAL_USE;
    if (s->caps & MG_CAP_GMAIL)
        send_id(s);
}

static bool caps_said(const struct mg_imap *s)
{
    const struct mailimap_connection_info *ci = s->imap->imap_connection_info;
    return ci != NULL && ci->imap_capability != NULL;
}

unsigned mg_imap_caps(struct mg_imap *s)
{
    if (s->caps_known || s->broken)
        return s->caps;
    if (!caps_said(s)) {
        struct mailimap_capability_data *cap = NULL;
        int r = mailimap_capability(s->imap, &cap);
        if (cap != NULL)
            mailimap_capability_data_free(cap);
        if (r != MAILIMAP_NO_ERROR) {
            if (r == MAILIMAP_ERROR_STREAM || r == MAILIMAP_ERROR_PARSE)
                s->broken = true;
            return 0;
        }
    }
    note_caps(s);
    return s->caps;
}

/* One whole response into buf: its line and, for each {n} literal it
 * announces, the n bytes and the rest of the line. The TLS driver bounds
 * its length (imapframe.h). -1 when the stream fails. */
static int read_response(mailstream *st, MMAPString *buf)
{
    mmap_string_truncate(buf, 0);
    for (;;) {
        if (mailstream_read_line_append(st, buf) == NULL)
            return -1;
        size_t n = buf->len;
        if (n < 2 || buf->str[n - 2] != '\r' || buf->str[n - 1] != '\n')
            return -1;
        /* "{123}\r\n" or "{123+}\r\n" ends a line that a literal follows. */
        size_t i = n - 2;
        if (i == 0 || buf->str[i - 1] != '}')
            return 0;
        i--;
        if (i > 0 && buf->str[i - 1] == '+')
            i--;
        size_t end = i, size = 0;
        while (i > 0 && buf->str[i - 1] >= '0' && buf->str[i - 1] <= '9' && end - i < 10)
            i--;
        if (i == end || i == 0 || buf->str[i - 1] != '{')
            return 0;
        for (size_t k = i; k < end; k++)
            size = size * 10 + (size_t)(buf->str[k] - '0');
        if (size > MG_FRAME_RESPONSE_MAX)
            return -1;
        char piece[4096];
        while (size > 0) {
            ssize_t got = mailstream_read(st, piece, size < sizeof(piece) ? size : sizeof(piece));
            if (got <= 0 || mmap_string_append_len(buf, piece, (size_t)got) == NULL)
                return -1;
            size -= (size_t)got;
        }
    }
}

#define GMLIST_TAG "MGL"

/* Keep one listed message: the labels decoded from modified UTF-7. */
static int keep_gm(struct mg_gmlist *out, const struct mg_fetchresp *r)
{
    struct mg_gmmsg m = {.uid = r->uid,
                         .size = r->size,
                         .msgid = r->msgid,
                         .thrid = r->has_thrid ? r->thrid : r->msgid,
                         .internaldate = r->internaldate};
    snprintf(m.flags, sizeof(m.flags), "%s", r->flags);
    size_t cap = r->labels_len * 4 + 1, len = 0;
    m.labels = malloc(cap);
    if (m.labels == NULL)
        return -1;
    const char *l = r->labels;
    for (size_t i = 0; i < r->nlabels; i++) {
        mg_gmlabel_decode(l, m.labels + len, cap - len);
        len += strlen(m.labels + len) + 1;
        l += strlen(l) + 1;
    }
    m.nlabels = r->nlabels;
    if (mg_gmlist_push(out, &m) != 0) {
        free(m.labels);
        return -1;
    }
    return 0;
}

/* Send cmd (a UID FETCH, tagged GMLIST_TAG) and read its answer ourselves:
 * each FETCH response goes to each(ctx, r), which returns 0, or an error
 * code (set in err) to stop; the session is then out of step. doing names
 * the command in messages. */
static enum mg_code raw_fetch(struct mg_imap *s, const char *cmd, const char *doing,
                              int (*each)(void *ctx, const struct mg_fetchresp *r,
                                          struct mg_error *err),
                              void *ctx, struct mg_error *err)
{
    mailstream *st = s->imap->imap_stream;
    MMAPString *buf = mmap_string_new("");
    char *labels = malloc(MG_FETCHRESP_LABELS_MAX);
    enum mg_code rc = MG_OK;
    if (buf == NULL || labels == NULL) {
        rc = mg_error_set(err, MG_E_INTERNAL, "out of memory");
        goto out;
    }
    mg_tls_expect_fetch(st, true, false);
    size_t n = strlen(cmd);
    if (mailstream_write(st, cmd, n) != (ssize_t)n || mailstream_flush(st) != 0) {
        rc = stream_error(s, doing, err);
        goto out;
    }
    for (;;) {
        if (read_response(st, buf) != 0) {
            rc = stream_error(s, doing, err);
            goto out;
        }
        const char *line = buf->str;
        size_t len = buf->len - 2; /* without CRLF */
        if (strncmp(line, GMLIST_TAG " ", sizeof(GMLIST_TAG)) == 0) {
            const char *state = line + sizeof(GMLIST_TAG);
            if (strncasecmp(state, "OK", 2) == 0)
                break;
            s->broken = strncasecmp(state, "NO", 2) != 0 && strncasecmp(state, "BAD", 3) != 0;
            rc = mg_error_set(err, MG_E_PROTOCOL, "%s refused %s: %.*s", s->srv->host, doing,
                              (int)(len < 200 ? len : 200), line);
            goto out;
        }
        if (strncmp(line, "* ", 2) != 0) {
            s->broken = true;
            rc = mg_error_set(err, MG_E_PROTOCOL,
                              "%s answered %s with something that is no IMAP response",
                              s->srv->host, doing);
            goto out;
        }
        struct mg_fetchresp r;
        enum mg_fetchresp_result pr =
            mg_fetchresp_parse(line, len, &r, labels, MG_FETCHRESP_LABELS_MAX);
        if (pr == MG_FETCHRESP_MALFORMED) {
            s->broken = true;
            rc = mg_error_set(err, MG_E_PROTOCOL, "%s sent a line mailgrab cannot read (%s): %.*s",
                              s->srv->host, doing, (int)(len < 120 ? len : 120), line);
            goto out;
        }
        if (pr == MG_FETCHRESP_OTHER) {
            if (strncasecmp(line, "* BYE", 5) == 0) {
                s->broken = true;
                rc = mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                                    "%s ended the session while %s, saying: %.*s", s->srv->host,
                                    doing, (int)(len < 200 ? len : 200), line + 2);
                goto out;
            }
            continue;
        }
        int e = each(ctx, &r, err);
        if (e != 0) {
            s->broken = true; /* the rest of the answer is unread */
            rc = (enum mg_code)e;
            goto out;
        }
    }
out:
    if (st != NULL)
        mg_tls_expect_fetch(st, false, false);
    if (buf != NULL)
        mmap_string_free(buf);
    free(labels);
    return rc;
}

struct gm_ctx {
    struct mg_imap *s;
    struct mg_gmlist *out;
    size_t max;
    uint32_t lo, hi; /* the UIDs asked for: lo <= uid < hi (0: no bound) */
};

static int gm_each(void *ctx, const struct mg_fetchresp *r, struct mg_error *err)
{
    struct gm_ctx *g = ctx;
    /* Unsolicited FETCH responses (flag changes) carry no size or id; "n:*"
     * gives the last message even when its UID is below n. */
    if (!r->has_uid || !r->has_size || !r->has_msgid || r->uid < g->lo ||
        (g->hi != 0 && r->uid >= g->hi))
        return 0;
    if (g->out->n >= g->max)
        return mg_error_set(err, MG_E_PROTOCOL,
                            "%s lists more messages than the mailbox holds (%zu)", g->s->srv->host,
                            g->max);
    if (keep_gm(g->out, r) != 0)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory listing messages");
    return 0;
}

#define GM_ITEMS "(UID RFC822.SIZE FLAGS INTERNALDATE X-GM-MSGID X-GM-THRID X-GM-LABELS)"

enum mg_code mg_imap_gmlist(struct mg_imap *s, uint32_t from, uint64_t changedsince,
                            struct mg_gmlist *out, struct mg_error *err)
{
    const struct mailimap_selection_info *si = s->imap->imap_selection_info;
    struct gm_ctx g = {s, out,
                       si != NULL && si->sel_has_exists ? (size_t)si->sel_exists + LIST_SLACK
                                                        : LIST_UNCOUNTED_MAX,
                       from > 1 ? from : 1, 0};
    char cmd[192];
    snprintf(cmd, sizeof(cmd), GMLIST_TAG " UID FETCH %u:* " GM_ITEMS "\r\n", g.lo);
    enum mg_code rc = raw_fetch(s, cmd, "listing messages", gm_each, &g, err);
    if (rc != MG_OK || from < 2 || changedsince == 0)
        return rc;
    /* Below from, only what changed (CONDSTORE): a label given or taken
     * off on Gmail raises the message's MODSEQ. */
    g.lo = 1;
    g.hi = from;
    snprintf(cmd, sizeof(cmd), GMLIST_TAG " UID FETCH 1:%u " GM_ITEMS " (CHANGEDSINCE %llu)\r\n",
             from - 1, (unsigned long long)changedsince);
    return raw_fetch(s, cmd, "asking which messages changed", gm_each, &g, err);
}

struct flags_ctx {
    uint32_t below;
    void (*each)(uint32_t uid, const char *flags, void *ctx);
    void *ctx;
};

static int flags_each(void *ctx, const struct mg_fetchresp *r, struct mg_error *err)
{
    struct flags_ctx *f = ctx;
    if (r->has_uid && r->has_flags && r->uid < f->below)
        f->each(r->uid, r->flags, f->ctx);
    return 0;
}

enum mg_code mg_imap_flags_since(struct mg_imap *s, uint32_t below, uint64_t modseq,
                                 void (*each)(uint32_t uid, const char *flags, void *ctx),
                                 void *ctx, struct mg_error *err)
{
    if (below < 2)
        return MG_OK;
    char cmd[128];
    if (modseq == 0) /* no CONDSTORE: every message's flags */
        snprintf(cmd, sizeof(cmd), GMLIST_TAG " UID FETCH 1:%u (UID FLAGS)\r\n", below - 1);
    else
        snprintf(cmd, sizeof(cmd), GMLIST_TAG " UID FETCH 1:%u (UID FLAGS) (CHANGEDSINCE %llu)\r\n",
                 below - 1, (unsigned long long)modseq);
    struct flags_ctx f = {below, each, ctx};
    return raw_fetch(s, cmd, "asking which flags changed", flags_each, &f, err);
}

static int ignore_each(void *ctx, const struct mg_fetchresp *r, struct mg_error *err)
{
    return 0;
}

/* One label for X-GM-LABELS: a system label (\Inbox) as it is, any other
 * in modified UTF-7 as a quoted string. 0, or -1 when it does not fit. */
static int put_label(const char *label, char *out, size_t cap, size_t *len)
{
    char utf7[1024];
    const char *v = label;
    if (label[0] != '\\') {
        if (mg_mbox_to_imap(label, utf7, sizeof(utf7)) != 0)
            return -1;
        v = utf7;
    } else {
        for (const char *p = label + 1; *p; p++)
            if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-'))
                return -1;
    }
    size_t n = *len;
    if (n + 2 >= cap)
        return -1;
    if (n > 0 && out[n - 1] != '(')
        out[n++] = ' ';
    if (label[0] == '\\') {
        size_t k = strlen(v);
        if (n + k >= cap)
            return -1;
        memcpy(out + n, v, k);
        n += k;
    } else {
        out[n++] = '"';
        for (const char *p = v; *p; p++) {
            if (n + 3 >= cap)
                return -1;
            if (*p == '"' || *p == '\\')
                out[n++] = '\\';
            out[n++] = *p;
        }
        out[n++] = '"';
    }
    out[n] = '\0';
    *len = n;
    return 0;
}

enum mg_code mg_imap_add_labels(struct mg_imap *s, const char *mailbox, uint32_t uid,
                                const char *const *labels, size_t n, struct mg_error *err)
{
    if (n == 0)
        return MG_OK;
    if (strcmp(s->selected, mailbox) != 0) {
        int r = mailimap_select(s->imap, mailbox);
        if (r != MAILIMAP_NO_ERROR)
            return r == MAILIMAP_ERROR_SELECT
                       ? mg_error_set(err, MG_E_MAILBOX, "%s refused to open '%s' for labels",
                                      s->srv->host, mailbox)
                       : generic_error(s, r, "opening the mailbox", err);
        snprintf(s->selected, sizeof(s->selected), "%s", mailbox);
    }
    char cmd[8192];
    int k = snprintf(cmd, sizeof(cmd), GMLIST_TAG " UID STORE %u +X-GM-LABELS (", uid);
    size_t len = (size_t)k;
    for (size_t i = 0; i < n; i++)
        if (put_label(labels[i], cmd, sizeof(cmd) - 3, &len) != 0)
            mg_warn("label '%s' cannot be given on %s; left out", labels[i], s->srv->host);
    memcpy(cmd + len, ")\r\n", 4);
    return raw_fetch(s, cmd, "adding labels", ignore_each, NULL, err);
}

static time_t imap_date_to_time(const struct mailimap_date_time *d)
{
    if (d == NULL)
        return (time_t)-1;
    struct tm tm = {.tm_year = d->dt_year - 1900,
                    .tm_mon = d->dt_month - 1,
                    .tm_mday = d->dt_day,
                    .tm_hour = d->dt_hour,
                    .tm_min = d->dt_min,
                    .tm_sec = d->dt_sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return t;
    /* dt_zone is +-HHMM as an integer: -0130 is -130. */
    int z = d->dt_zone;
    int sign = z < 0 ? -1 : 1;
    z *= sign;
    return t - sign * ((z / 100) * 3600 + (z % 100) * 60);
}

static bool fetch_body(int type, struct mailimap_msg_att_body_section *section, const char *bytes,
                       size_t len, void *ctx)
{
    struct mg_imap *s = ctx;
    s->in_body = true;
    s->body_bytes += len;
    if (!s->sink->body(s->sink->ctx, bytes, len)) {
        s->sink_error = true;
        return false;
    }
    return true;
}

/* IMAP system flags -> Maildir info letters, in the ASCII order Maildir wants. */
static void maildir_flags(const struct mailimap_msg_att_dynamic *dyn, char *out, size_t cap)
{
    static const struct {
        int type;
        char letter;
    } map[] = {{MAILIMAP_FLAG_DRAFT, 'D'},
               {MAILIMAP_FLAG_FLAGGED, 'F'},
               {MAILIMAP_FLAG_ANSWERED, 'R'},
               {MAILIMAP_FLAG_SEEN, 'S'},
               {MAILIMAP_FLAG_DELETED, 'T'}};
    bool has[sizeof(map) / sizeof(map[0])] = {false};
    if (dyn != NULL && dyn->att_list != NULL) {
        for (clistiter *it = clist_begin(dyn->att_list); it != NULL; it = clist_next(it)) {
            struct mailimap_flag_fetch *ff = clist_content(it);
            if (ff->fl_type != MAILIMAP_FLAG_FETCH_OTHER || ff->fl_flag == NULL)
                continue;
            for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
                if (ff->fl_flag->fl_type == map[i].type)
                    has[i] = true;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]) && n + 1 < cap; i++)
        if (has[i])
            out[n++] = map[i].letter;
    out[n] = '\0';
}

/* Is the message just received whole? Names what is wrong in why if not. */
static bool whole(struct mg_imap *s, unsigned sections, bool nil, bool has_size, uint32_t size,
                  char *why, size_t cap)
{
    if (nil)
        snprintf(why, cap, "%s sent NIL for its body (BODY[] NIL)", s->srv->host);
    else if (sections > 1)
        snprintf(why, cap, "%s sent its body %u times in one response", s->srv->host, sections);
    else if (!has_size)
        snprintf(why, cap, "%s sent it without its RFC822.SIZE", s->srv->host);
    else if (s->body_bytes != size)
        snprintf(why, cap, "%s sent %zu bytes for an RFC822.SIZE of %u", s->srv->host,
                 s->body_bytes, size);
    else
        return true;
    return false;
}

static void fetch_att(struct mailimap_msg_att *att, void *ctx)
{
    struct mg_imap *s = ctx;
    uint32_t uid = 0, size = 0;
    time_t idate = (time_t)-1;
    bool has_body = false, has_size = false, nil = false;
    unsigned sections = 0;
    char flags[8] = "";
    for (clistiter *it = clist_begin(att->att_list); it != NULL; it = clist_next(it)) {
        struct mailimap_msg_att_item *item = clist_content(it);
        if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC)
            maildir_flags(item->att_data.att_dyn, flags, sizeof(flags));
        if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC)
            continue;
        struct mailimap_msg_att_static *st = item->att_data.att_static;
        switch (st->att_type) {
        case MAILIMAP_MSG_ATT_UID:
            uid = st->att_data.att_uid;
            break;
        case MAILIMAP_MSG_ATT_INTERNALDATE:
            idate = imap_date_to_time(st->att_data.att_internal_date);
            break;
        case MAILIMAP_MSG_ATT_RFC822_SIZE:
            size = st->att_data.att_rfc822_size;
            has_size = true;
            break;
        case MAILIMAP_MSG_ATT_BODY_SECTION:
            has_body = true;
            sections++;
            /* NIL: libetpan leaves no string; a literal or "" leaves one. */
            if (st->att_data.att_body_section == NULL ||
                st->att_data.att_body_section->sec_body_part == NULL)
                nil = true;
            break;
        default:
            break;
        }
    }
    if (s->sink_error)
        return;
    /* A FETCH without BODY[] is a flag update, not an answer to us; its bytes,
     * if any were streamed, belong to nobody. */
    if (!has_body || uid == 0) {
        if (s->in_body)
            s->sink->done(s->sink->ctx, 0, idate, "");
        s->in_body = false;
        s->body_bytes = 0;
        return;
    }
    char why[160];
    if (!whole(s, sections, nil, has_size, size, why, sizeof(why))) {
        s->sink->bad(s->sink->ctx, uid, why); /* drops what was streamed */
    } else {
        if (!s->in_body && !s->sink->body(s->sink->ctx, "", 0)) /* an empty message */
            s->sink_error = true;
        if (!s->sink_error && !s->sink->done(s->sink->ctx, uid, idate, flags))
            s->sink_error = true;
    }
    s->in_body = false;
    s->body_bytes = 0;
}

/* "* <number> FETCH" at p. */
static bool fetch_start(const char *p, size_t len)
{
    size_t i = 2;
    if (len < 2 || p[0] != '*' || p[1] != ' ')
        return false;
    while (i < len && p[i] >= '0' && p[i] <= '9')
        i++;
    return i > 2 && len - i >= 6 && strncasecmp(p + i, " FETCH", 6) == 0;
}

/* The UID of the FETCH response libetpan was reading when the stream broke
 * or the parse failed, from the text it holds of the command's answer (the
 * last response in it); 0 when it cannot be told. */
static uint32_t failed_uid(struct mg_imap *s)
{
    const MMAPString *b = s->imap->imap_stream_buffer;
    if (b == NULL || b->str == NULL || b->len == 0)
        return 0;
    size_t start = b->len;
    for (size_t i = b->len; i-- > 0;) {
        if ((i == 0 || b->str[i - 1] == '\n') && fetch_start(b->str + i, b->len - i)) {
            start = i;
            break;
        }
    }
    size_t end = b->len - start > 4096 ? start + 4096 : b->len;
    for (size_t i = start + 1; i + 4 < end; i++) {
        if ((b->str[i - 1] != '(' && b->str[i - 1] != ' ') || strncasecmp(b->str + i, "UID ", 4))
            continue;
        uint64_t uid = 0;
        for (size_t j = i + 4; j < end && b->str[j] >= '0' && b->str[j] <= '9'; j++)
            if ((uid = uid * 10 + (uint64_t)(b->str[j] - '0')) > UINT32_MAX)
                return 0;
        return (uint32_t)uid;
    }
    return 0;
}

static struct mailimap_set *uid_set(const uint32_t *uids, size_t n)
{
    struct mailimap_set *set = mailimap_set_new_empty();
    if (set == NULL)
        return NULL;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && uids[j + 1] == uids[j] + 1)
            j++;
        if (mailimap_set_add_interval(set, uids[i], uids[j]) != MAILIMAP_NO_ERROR) {
            mailimap_set_free(set);
            return NULL;
        }
        i = j + 1;
    }
    return set;
}

enum mg_code mg_imap_fetch(struct mg_imap *s, const uint32_t *uids, size_t n,
                           const struct mg_fetch_sink *sink, bool *answered, struct mg_error *err)
{
    *answered = false;
    s->throttled = false;
    struct mailimap_set *set = uid_set(uids, n);
    struct mailimap_fetch_type *ft = mailimap_fetch_type_new_fetch_att_list_empty();
    struct mailimap_section *sec = NULL;
    struct mailimap_fetch_att *body = NULL;
    if (set == NULL || ft == NULL)
        goto oom;
    sec = mailimap_section_new(NULL);
    body = sec ? mailimap_fetch_att_new_body_peek_section(sec) : NULL;
    if (body == NULL) {
        if (sec != NULL)
            mailimap_section_free(sec);
        goto oom;
    }
    if (mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid()) != 0 ||
        mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_rfc822_size()) != 0 ||
        mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_internaldate()) !=
            0 ||
        mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_flags()) != 0 ||
        mailimap_fetch_type_new_fetch_att_list_add(ft, body) != 0) {
        mailimap_fetch_att_free(body);
        goto oom;
    }

    s->sink = sink;
    s->in_body = false;
    s->body_bytes = 0;
    s->sink_error = false;
    set_handlers(s, fetch_att, fetch_body, s);
    clist *result = NULL;
    int r = mailimap_uid_fetch(s->imap, set, ft, &result);
    set_handlers(s, NULL, NULL, NULL);
    mailimap_set_free(set);
    mailimap_fetch_type_free(ft);
    free_fetch_result(r, result);
    s->sink = NULL;

    if (s->sink_error)
        return MG_E_IO; /* the sink has filled in its own error */
    if (r != MAILIMAP_NO_ERROR && r != MAILIMAP_ERROR_UID_FETCH) {
        enum mg_code rc = generic_error(s, r, "fetching messages", err);
        /* A response that cannot be parsed, or that broke a bound, is pinned
         * on the message it came with, when that can be told: its neighbours
         * need not pay for it. A cut is no message's fault (the pool decides). */
        bool malformed = r != MAILIMAP_ERROR_MEMORY &&
                         (r != MAILIMAP_ERROR_STREAM || mg_tls_refused(s->imap->imap_stream));
        uint32_t uid = malformed ? failed_uid(s) : 0;
        if (uid != 0)
            sink->bad(sink->ctx, uid, err->msg);
        return rc;
    }
    if (s->in_body)
        return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                              "%s ended a message without its attributes", s->srv->host);
    *answered = true;
    if (r == MAILIMAP_ERROR_UID_FETCH)
        return fetch_refused(s, "fetching messages", err);
    const MMAPString *buf = s->imap->imap_stream_buffer;
    char tag[16];
    snprintf(tag, sizeof(tag), "%d", s->imap->imap_tag);
    s->throttled = buf != NULL && mg_imap_ok_throttled(buf->str, buf->len, tag);
    return MG_OK;

oom:
    return fetch_oom(set, ft, err);
}

/* -- Restoring: CREATE, APPEND, finding a message again ------------------ */

/* The capability list, asked for when the login reply did not carry it. */
static const struct mailimap_capability_data *capabilities(struct mg_imap *s)
{
    mailimap *im = s->imap;
    if (im->imap_connection_info == NULL || im->imap_connection_info->imap_capability == NULL) {
        struct mailimap_capability_data *cd = NULL;
        if (mailimap_capability(im, &cd) == MAILIMAP_NO_ERROR && cd != NULL) {
            /* Kept where the session keeps the login's, freed with it. */
            if (im->imap_connection_info != NULL &&
                im->imap_connection_info->imap_capability == NULL)
                im->imap_connection_info->imap_capability = cd;
            else if (im->imap_connection_info == NULL ||
                     im->imap_connection_info->imap_capability != cd)
                mailimap_capability_data_free(cd);
        }
    }
    if (im->imap_connection_info == NULL)
        return NULL;
    return im->imap_connection_info->imap_capability;
}

/* The capability named `name` (any case), or one "name=VALUE": its value. */
static const char *capability(struct mg_imap *s, const char *name)
{
    const struct mailimap_capability_data *cd = capabilities(s);
    size_t len = strlen(name);
    for (clistiter *it = cd ? clist_begin(cd->cap_list) : NULL; it != NULL; it = clist_next(it)) {
        const struct mailimap_capability *c = clist_content(it);
        const char *n = c->cap_data.cap_name;
        if (c->cap_type != MAILIMAP_CAPABILITY_NAME || n == NULL || strncasecmp(n, name, len) != 0)
            continue;
        if (n[len] == '\0')
            return "";
        if (n[len] == '=')
            return n + len + 1;
    }
    return NULL;
}

bool mg_imap_literal_plus(struct mg_imap *s)
{
    return capability(s, "LITERAL+") != NULL;
}

uint64_t mg_imap_appendlimit(struct mg_imap *s)
{
    const char *v = capability(s, "APPENDLIMIT");
    if (v == NULL || *v < '0' || *v > '9')
        return 0;
    return strtoull(v, NULL, 10);
}

enum mg_code mg_imap_create(struct mg_imap *s, const char *mailbox, struct mg_error *err)
{
    int r = mailimap_create(s->imap, mailbox);
    if (r == MAILIMAP_NO_ERROR)
        return MG_OK;
    if (r != MAILIMAP_ERROR_CREATE && !answered_bad(s, r))
        return generic_error(s, r, "creating a mailbox", err);
    struct reply rp;
    last_reply(s, &rp);
    /* Most servers say ALREADYEXISTS; some give no code for it (the APPEND
     * that follows tells, with TRYCREATE, if it was really refused). */
    if (strcasecmp(rp.code, "ALREADYEXISTS") == 0 || rp.code[0] == '\0')
        return MG_OK;
    char text[256];
    said(s, text, sizeof(text));
    return mg_error_set(err, MG_E_MAILBOX, "%s refused to create mailbox '%s': %s", s->srv->host,
                        mailbox, text);
}

/* APPEND's arguments up to and including the literal's size. */
static int append_head(const char *mailbox, const struct mg_append_msg *m, bool plus, char *buf,
                       size_t cap)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static const struct {
        char letter;
        const char *flag;
    } flags[] = {{'D', "\\Draft"},
                 {'F', "\\Flagged"},
                 {'R', "\\Answered"},
                 {'S', "\\Seen"},
                 {'T', "\\Deleted"}};
    char fl[64] = "";
    size_t fn = 0;
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (m->flags == NULL || strchr(m->flags, flags[i].letter) == NULL)
            continue;
        fn += (size_t)snprintf(fl + fn, sizeof(fl) - fn, "%s%s", fn ? " " : "", flags[i].flag);
    }
    struct tm tm;
    if (gmtime_r(&m->internaldate, &tm) == NULL || tm.tm_year + 1900 < 1000 ||
        tm.tm_year + 1900 > 9999)
        return -1;
    /* The name is modified UTF-7 (7-bit): a quoted string always does.
     * Without one, this is a further message of a MULTIAPPEND. */
    char q[2 * 1024 + 16] = "";
    size_t qn = 0;
    if (mailbox != NULL)
        qn = (size_t)snprintf(q, sizeof(q), "APPEND \"");
    for (const char *p = mailbox ? mailbox : ""; *p != '\0'; p++) {
        if (qn + 3 >= sizeof(q) || (unsigned char)*p >= 0x80 || *p == '\r' || *p == '\n')
            return -1;
        if (*p == '"' || *p == '\\')
            q[qn++] = '\\';
        q[qn++] = *p;
    }
    if (mailbox != NULL)
        q[qn++] = '"';
    q[qn] = '\0';
    int n = snprintf(buf, cap, "%s (%s) \"%02d-%s-%04d %02d:%02d:%02d +0000\" {%llu%s}\r\n", q, fl,
                     tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (unsigned long long)m->size, plus ? "+" : "");
    return n > 0 && (size_t)n < cap ? n : -1;
}

/* The file's bytes. */
static enum mg_code send_literal(struct mg_imap *s, const struct mg_append_msg *m,
                                 struct mg_error *err)
{
    mailstream *st = s->imap->imap_stream;
    char buf[65536];
    uint64_t left = m->size;
    off_t off = 0;
    while (left > 0) {
        size_t want = left < sizeof(buf) ? (size_t)left : sizeof(buf);
        ssize_t got = pread(m->fd, buf, want, off);
        if (got <= 0) {
            /* The size is promised to the server: nothing else can follow. */
            s->broken = true;
            return mg_error_set(err, MG_E_IO, "a message file could not be read (%s)",
                                got < 0 ? strerror(errno) : "it got shorter");
        }
        if (mailstream_write(st, buf, (size_t)got) != got)
            return stream_error(s, "sending a message", err);
        left -= (uint64_t)got;
        off += got;
    }
    return MG_OK;
}

/* The CRLF that ends a command. */
static enum mg_code end_command(struct mg_imap *s, struct mg_error *err)
{
    if (mailstream_write(s->imap->imap_stream, "\r\n", 2) != 2)
        return stream_error(s, "sending a message", err);
    return MG_OK;
}

/* [APPENDUID uidvalidity uid-set] in a tagged OK line: the UIDs, in the
 * order of the messages, go to out[0 .. count - 1]. */
static void appenduid(const char *line, size_t len, struct mg_append_reply *out, size_t count)
{
    const char *key = "[APPENDUID ";
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < len; i++) {
        if (strncasecmp(line + i, key, kl) != 0)
            continue;
        char tmp[512];
        size_t n = len - i - kl < sizeof(tmp) - 1 ? len - i - kl : sizeof(tmp) - 1;
        memcpy(tmp, line + i + kl, n);
        tmp[n] = '\0';
        char *p;
        unsigned long uv = strtoul(tmp, &p, 10);
        if (*p != ' ' || uv == 0 || uv > UINT32_MAX)
            return;
        size_t k = 0;
        while (k < count) {
            unsigned long lo = strtoul(p + 1, &p, 10), hi = lo;
            if (*p == ':')
                hi = strtoul(p + 1, &p, 10);
            if (lo == 0 || hi < lo || hi > UINT32_MAX)
                return;
            for (unsigned long u = lo; u <= hi && k < count; u++, k++) {
                out[k].uidvalidity = (uint32_t)uv;
                out[k].uid = (uint32_t)u;
            }
            if (*p != ',')
                break;
        }
        return;
    }
}

/* What a refused APPEND's code says. OVERQUOTA: the account is full or
 * over a daily upload limit; a rerun later goes on. LIMIT (Dovecot's
 * quota_max_mail_size, RFC 5530: "exceeds some limit") and TOOBIG are this
 * message's own refusal; so is anything else but a busy server. */
static void append_refusal(const char *code, struct mg_append_reply *out)
{
    out->quota = strcasecmp(code, "OVERQUOTA") == 0;
    out->busy = mg_imap_refusal(code, MG_CMD_OTHER) == MG_REFUSED_BUSY;
    out->trycreate = strcasecmp(code, "TRYCREATE") == 0;
}

/* Read lines up to the tagged reply to `tag`; untagged ones pass by. */
static enum mg_code read_reply(struct mg_imap *s, int tag, struct mg_append_reply *out,
                               size_t count, struct mg_error *err)
{
    mailimap *im = s->imap;
    char tagstr[16];
    snprintf(tagstr, sizeof(tagstr), "%d", tag);
    size_t tl = strlen(tagstr);
    for (;;) {
        if (mailimap_read_line(im) == NULL)
            return stream_error(s, "waiting for the server to take a message", err);
        const MMAPString *b = im->imap_stream_buffer;
        if (b->len >= 2 && b->str[0] == '*' && b->str[1] == ' ')
            continue; /* EXISTS, RECENT; after a BYE, the stream's end tells */
        if (b->len > tl && memcmp(b->str, tagstr, tl) == 0 && b->str[tl] == ' ')
            break;
        s->broken = true;
        return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                              "%s sent an unexpected line while taking messages", s->srv->host);
    }
    const MMAPString *b = im->imap_stream_buffer;
    char state[8], code[32];
    memset(out, 0, sizeof(*out));
    if (mg_imap_tagged_reply(b->str, b->len, tagstr, state, sizeof(state), code, sizeof(code)) !=
        0) {
        s->broken = true;
        return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                              "%s sent a reply mailgrab cannot parse while taking messages",
                              s->srv->host);
    }
    if (strcasecmp(state, "OK") == 0) {
        for (size_t i = 0; i < count; i++)
            out[i] = (struct mg_append_reply){.ok = true, .settled = true};
        appenduid(b->str, b->len, out, count);
        return MG_OK;
    }
    out->settled = true;
    append_refusal(code, out);
    /* The text after the tag and state, line end dropped, bounded. */
    size_t skip = tl + 1 + strlen(state);
    size_t n = b->len > skip ? b->len - skip : 0;
    const char *t = b->str + skip;
    while (n > 0 && *t == ' ') {
        t++;
        n--;
    }
    while (n > 0 && (t[n - 1] == '\r' || t[n - 1] == '\n'))
        n--;
    snprintf(out->said, sizeof(out->said), "%.*s", (int)(n < 200 ? n : 200), t);
    return MG_OK;
}

/* Send one APPEND (and, without LITERAL+, its literal once the server says
 * go on). *tag: the command's tag; *refused: the server answered before
 * the literal (the reply is in *out then). */
static enum mg_code append_one(struct mg_imap *s, const char *mailbox,
                               const struct mg_append_msg *m, bool plus, int *tag, bool *refused,
                               struct mg_append_reply *out, struct mg_error *err)
{
    mailimap *im = s->imap;
    char head[2300];
    *refused = false;
    int hn = append_head(mailbox, m, plus, head, sizeof(head));
    if (hn < 0)
        return mg_error_set(err, MG_E_INTERNAL, "mailbox name or date cannot be sent");
    if (mailimap_send_current_tag(im) != MAILIMAP_NO_ERROR ||
        mailstream_write(im->imap_stream, head, (size_t)hn) != hn)
        return stream_error(s, "sending a message", err);
    *tag = im->imap_tag;
    if (!plus) {
        if (mailstream_flush(im->imap_stream) == -1 || mailimap_read_line(im) == NULL)
            return stream_error(s, "sending a message", err);
        const MMAPString *b = im->imap_stream_buffer;
        if (b->len == 0 || b->str[0] != '+') {
            /* Refused at once (too big, say): this line is the reply,
             * unless untagged lines come first. */
            char tagstr[16];
            snprintf(tagstr, sizeof(tagstr), "%d", *tag);
            if (b->len >= 2 && b->str[0] == '*') {
                enum mg_code rc = read_reply(s, *tag, out, 1, err);
                *refused = true;
                return rc;
            }
            char state[8], code[32];
            if (mg_imap_tagged_reply(b->str, b->len, tagstr, state, sizeof(state), code,
                                     sizeof(code)) != 0) {
                s->broken = true;
                return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_NOW,
                                      "%s sent an unexpected line to APPEND", s->srv->host);
            }
            memset(out, 0, sizeof(*out));
            out->settled = true;
            append_refusal(code, out);
            snprintf(out->said, sizeof(out->said), "%s%s%s%s", code[0] ? "[" : "", code,
                     code[0] ? "] " : "", state);
            *refused = true;
            return MG_OK;
        }
    }
    enum mg_code rc = send_literal(s, m, err);
    return rc == MG_OK ? end_command(s, err) : rc;
}

/* One APPEND of v[0 .. n - 1] (MULTIAPPEND when n > 1), with LITERAL+. */
static enum mg_code multi_send(struct mg_imap *s, const char *mailbox,
                               const struct mg_append_msg *v, size_t n, int *tag,
                               struct mg_error *err)
{
    mailimap *im = s->imap;
    if (mailimap_send_current_tag(im) != MAILIMAP_NO_ERROR)
        return stream_error(s, "sending a message", err);
    *tag = im->imap_tag;
    for (size_t i = 0; i < n; i++) {
        char head[2300];
        int hn = append_head(i == 0 ? mailbox : NULL, &v[i], true, head, sizeof(head));
        if (hn < 0) {
            s->broken = true; /* the command is begun */
            return mg_error_set(err, MG_E_INTERNAL, "mailbox name or date cannot be sent");
        }
        if (mailstream_write(im->imap_stream, head, (size_t)hn) != hn)
            return stream_error(s, "sending a message", err);
        enum mg_code rc = send_literal(s, &v[i], err);
        if (rc != MG_OK)
            return rc;
    }
    return end_command(s, err);
}

/* Without LITERAL+: one APPEND at a time, each literal after the go-ahead. */
static enum mg_code append_each(struct mg_imap *s, const char *mailbox,
                                const struct mg_append_msg *v, size_t n,
                                struct mg_append_reply *out, size_t *answered, struct mg_error *err)
{
    for (size_t i = 0; i < n; i++) {
        bool refused = false;
        int tag = 0;
        enum mg_code rc = append_one(s, mailbox, &v[i], false, &tag, &refused, &out[i], err);
        if (rc == MG_OK && !refused) {
            if (mailstream_flush(s->imap->imap_stream) == -1)
                rc = stream_error(s, "sending a message", err);
            else
                rc = read_reply(s, tag, &out[i], 1, err);
        }
        if (rc != MG_OK)
            return rc;
        (*answered)++;
    }
    return MG_OK;
}

#define MULTI_MSGS 32          /* messages in one MULTIAPPEND */
#define MULTI_BYTES (4u << 20) /* ... or about this many bytes */
#define WINDOW 8               /* APPEND commands on their way at once */

enum mg_code mg_imap_append(struct mg_imap *s, const char *mailbox, const struct mg_append_msg *v,
                            size_t n, struct mg_append_reply *out, size_t *answered,
                            struct mg_error *err)
{
    *answered = 0;
    memset(out, 0, n * sizeof(*out));
    if (!mg_imap_literal_plus(s))
        return append_each(s, mailbox, v, n, out, answered, err);
    /* With LITERAL+ nothing waits for a go-ahead: up to WINDOW commands are
     * on their way at any time, and a reply read makes room for the next,
     * so the link never idles a round trip. Where the server offers
     * MULTIAPPEND, one command carries several messages, which the server
     * takes all or none, in one transaction (far cheaper for Dovecot than a
     * transaction each). A refused group is sent again one by one, so that
     * only the message refused is refused. */
    bool multi = capability(s, "MULTIAPPEND") != NULL;
    struct unit {
        size_t first, count;
        int tag;
    } ring[WINDOW];
    size_t head = 0, nout = 0; /* ring[head .. head + nout) are on their way */
    size_t next = 0;           /* next message never sent */
    size_t *singles = calloc(n ? n : 1, sizeof(*singles));
    size_t nsingles = 0, si = 0;
    if (singles == NULL)
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    enum mg_code rc = MG_OK;
    while (rc == MG_OK && *answered < n) {
        while (nout < WINDOW && (si < nsingles || next < n)) {
            struct unit u = {0, 1, 0};
            if (si < nsingles) {
                u.first = singles[si++];
            } else {
                u.first = next;
                uint64_t bytes = v[next].size;
                while (multi && next + u.count < n && u.count < MULTI_MSGS &&
                       bytes + v[next + u.count].size <= MULTI_BYTES)
                    bytes += v[next + u.count++].size;
                next += u.count;
            }
            /* Singles were grouped before: they sit apart from the rest. */
            rc = multi_send(s, mailbox, &v[u.first], u.count, &u.tag, err);
            if (rc != MG_OK)
                break;
            ring[(head + nout++) % WINDOW] = u;
        }
        if (rc != MG_OK || nout == 0)
            break;
        if (mailstream_flush(s->imap->imap_stream) == -1) {
            rc = stream_error(s, "sending a message", err);
            break;
        }
        struct unit u = ring[head];
        head = (head + 1) % WINDOW;
        nout--;
        rc = read_reply(s, u.tag, &out[u.first], u.count, err);
        if (rc != MG_OK)
            break;
        if (out[u.first].ok || u.count == 1) {
            *answered += u.count;
            continue;
        }
        for (size_t i = 0; i < u.count; i++) {
            out[u.first + i] = (struct mg_append_reply){0};
            singles[nsingles++] = u.first + i;
        }
    }
    free(singles);
    return rc;
}

enum mg_code mg_imap_find(struct mg_imap *s, const char *mailbox, const char *message_id,
                          uint64_t size, uint32_t *uids, size_t cap, size_t *n,
                          struct mg_error *err)
{
    *n = 0;
    struct mg_mailbox_info mi;
    enum mg_code rc = mg_imap_examine(s, mailbox, &mi, err);
    if (rc != MG_OK)
        return rc;
    if (size == 0 || size > UINT32_MAX)
        return MG_OK;
    struct mailimap_search_key *key = mailimap_search_key_new_multiple_empty();
    struct mailimap_search_key *k1 = mailimap_search_key_new_larger((uint32_t)(size - 1));
    struct mailimap_search_key *k2 =
        size < UINT32_MAX ? mailimap_search_key_new_smaller((uint32_t)(size + 1)) : NULL;
    struct mailimap_search_key *k3 = NULL;
    if (message_id != NULL && message_id[0] != '\0') {
        char *h = strdup("Message-ID");
        char *v = strdup(message_id);
        k3 = h && v ? mailimap_search_key_new_header(h, v) : NULL;
        if (k3 == NULL) {
            free(h);
            free(v);
        }
    }
    bool ok = key != NULL && k1 != NULL && k2 != NULL &&
              (message_id == NULL || message_id[0] == '\0' || k3 != NULL);
    if (ok && mailimap_search_key_multiple_add(key, k1) == MAILIMAP_NO_ERROR)
        k1 = NULL;
    else
        ok = false;
    if (ok && mailimap_search_key_multiple_add(key, k2) == MAILIMAP_NO_ERROR)
        k2 = NULL;
    else
        ok = false;
    if (ok && k3 != NULL) {
        if (mailimap_search_key_multiple_add(key, k3) == MAILIMAP_NO_ERROR)
            k3 = NULL;
        else
            ok = false;
    }
    if (k1)
        mailimap_search_key_free(k1);
    if (k2)
        mailimap_search_key_free(k2);
    if (k3)
        mailimap_search_key_free(k3);
    if (!ok) {
        if (key)
            mailimap_search_key_free(key);
        return mg_error_set(err, MG_E_INTERNAL, "out of memory");
    }
    clist *list = NULL;
    int r = mailimap_uid_search(s->imap, NULL, key, &list);
    mailimap_search_key_free(key);
    if (r != MAILIMAP_NO_ERROR) {
        if (r == MAILIMAP_ERROR_UID_SEARCH || answered_bad(s, r)) {
            char text[256];
            said(s, text, sizeof(text));
            return mg_error_retry(err, MG_E_PROTOCOL, MG_RETRY_LATER,
                                  "%s refused to search mailbox '%s': %s", s->srv->host, mailbox,
                                  text);
        }
        return generic_error(s, r, "searching a mailbox", err);
    }
    for (clistiter *it = clist_begin(list); it != NULL; it = clist_next(it)) {
        uint32_t *u = clist_content(it);
        if (*n < cap)
            uids[*n] = *u;
        (*n)++;
    }
    mailimap_search_result_free(list);
    return MG_OK;
}

bool mg_imap_broken(const struct mg_imap *s)
{
    return s == NULL || s->broken;
}

void mg_imap_cancel(struct mg_imap *s)
{
    if (s != NULL && s->imap != NULL)
        mg_tls_cancel(s->imap->imap_stream);
}

void mg_imap_close(struct mg_imap *s, bool polite)
{
    if (s == NULL)
        return;
    if (s->imap != NULL) {
        if (polite)
            mailimap_logout(s->imap);
        /* mailimap_free on a live stream would send LOGOUT and wait out a
         * whole timeout on a broken one: close the stream ourselves first. */
        if (s->imap->imap_stream != NULL) {
            mailstream_close(s->imap->imap_stream);
            s->imap->imap_stream = NULL;
        }
        mailimap_free(s->imap);
    }
    free(s);
}

/* The source interface: an mg_session is an mg_imap. */
static struct mg_imap *imap_of(struct mg_session *s)
{
    return (struct mg_imap *)s;
}

static enum mg_code src_open(void *ctx, struct mg_session **out, struct mg_error *err)
{
    const struct mg_imap_source *is = ctx;
    struct mg_imap *s;
    enum mg_code rc = mg_imap_open(is->srv, is->creds, &s, err);
    if (rc == MG_OK)
        *out = (struct mg_session *)s;
    return rc;
}

static enum mg_code src_examine(struct mg_session *s, const char *mailbox,
                                struct mg_mailbox_info *info, struct mg_error *err)
{
    return mg_imap_examine(imap_of(s), mailbox, info, err);
}

static enum mg_code src_mailboxes(struct mg_session *s,
                                  void (*each)(const char *name, unsigned roles, void *ctx),
                                  void *ctx, struct mg_error *err)
{
    return mg_imap_mailboxes(imap_of(s), each, ctx, err);
}

static unsigned src_caps(struct mg_session *s)
{
    return mg_imap_caps(imap_of(s));
}

static enum mg_code src_gmlist(struct mg_session *s, uint32_t from, uint64_t changedsince,
                               struct mg_gmlist *out, struct mg_error *err)
{
    return mg_imap_gmlist(imap_of(s), from, changedsince, out, err);
}

static enum mg_code src_flags_since(struct mg_session *s, uint32_t below, uint64_t modseq,
                                    void (*each)(uint32_t uid, const char *flags, void *ctx),
                                    void *ctx, struct mg_error *err)
{
    return mg_imap_flags_since(imap_of(s), below, modseq, each, ctx, err);
}

static enum mg_code src_list(struct mg_session *s, uint32_t from, struct mg_msglist *out,
                             struct mg_error *err)
{
    return mg_imap_list(imap_of(s), from, out, err);
}

static enum mg_code src_status(struct mg_session *s, const char *mailbox,
                               struct mg_mailbox_info *info, struct mg_error *err)
{
    return mg_imap_status(imap_of(s), mailbox, info, err);
}

static enum mg_code src_fetch(struct mg_session *s, const uint32_t *uids, size_t n,
                              const struct mg_fetch_sink *sink, bool *answered,
                              struct mg_error *err)
{
    return mg_imap_fetch(imap_of(s), uids, n, sink, answered, err);
}

static bool src_throttled(const struct mg_session *s)
{
    return s != NULL && ((const struct mg_imap *)s)->throttled;
}

static bool src_broken(const struct mg_session *s)
{
    return mg_imap_broken((const struct mg_imap *)s);
}

static void src_cancel(struct mg_session *s)
{
    mg_imap_cancel(imap_of(s));
}

static void src_close(struct mg_session *s, bool polite)
{
    mg_imap_close(imap_of(s), polite);
}

static const struct mg_source_ops imap_ops = {
    .open = src_open,
    .examine = src_examine,
    .mailboxes = src_mailboxes,
    .caps = src_caps,
    .gmlist = src_gmlist,
    .flags_since = src_flags_since,
    .list = src_list,
    .status = src_status,
    .fetch = src_fetch,
    .broken = src_broken,
    .cancel = src_cancel,
    .close = src_close,
    .judge_login = mg_imap_judge_login,
    .throttled = src_throttled,
};

struct mg_source mg_imap_source(struct mg_imap_source *is)
{
    return (struct mg_source){&imap_ops, is};
}
