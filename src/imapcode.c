/* imapcode.c - see include/mailgrab/imapcode.h */
#include "mailgrab/imapcode.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool any_of(const char *code, const char *const *list)
{
    for (; *list != NULL; list++)
        if (strcasecmp(code, *list) == 0)
            return true;
    return false;
}

enum mg_refusal mg_imap_refusal(const char *code, enum mg_imap_cmd cmd)
{
    static const char *const busy[] = {"UNAVAILABLE", "INUSE", "THROTTLED", NULL};
    static const char *const auth[] = {"AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED",
                                       "PRIVACYREQUIRED",      "CONTACTADMIN",        NULL};
    static const char *const mailbox[] = {"NONEXISTENT", "NOPERM",     "CANNOT",
                                          "TRYCREATE",   "CORRUPTION", NULL};
    if (code == NULL)
        code = "";
    if (any_of(code, busy))
        return MG_REFUSED_BUSY;
    /* Dovecot refuses a session over mail_max_userip_connections with
     * "NO [LIMIT]": at login LIMIT limits sessions, later it limits data. */
    if (strcasecmp(code, "LIMIT") == 0)
        return cmd == MG_CMD_LOGIN ? MG_REFUSED_BUSY : MG_REFUSED_LIMIT;
    if (strcasecmp(code, "OVERQUOTA") == 0)
        return MG_REFUSED_LIMIT;
    if (any_of(code, auth))
        return MG_REFUSED_AUTH;
    if (strcasecmp(code, "EXPUNGEISSUED") == 0)
        return MG_REFUSED_GONE;
    if (cmd == MG_CMD_LOGIN && (code[0] == '\0' || strcasecmp(code, "ALERT") == 0))
        return MG_REFUSED_UNSURE;
    if (cmd == MG_CMD_EXAMINE || any_of(code, mailbox))
        return cmd == MG_CMD_EXAMINE ? MG_REFUSED_MAILBOX : MG_REFUSED;
    return MG_REFUSED;
}

static void copy_word(const char *p, const char *end, const char *stops, char *out, size_t cap)
{
    size_t n = 0;
    while (p < end && strchr(stops, *p) == NULL && n + 1 < cap)
        out[n++] = *p++;
    out[n] = '\0';
}

void mg_imap_text_code(const char *text, char *code, size_t code_cap)
{
    if (code_cap == 0)
        return;
    code[0] = '\0';
    if (text != NULL && text[0] == '[')
        copy_word(text + 1, text + strlen(text), " ]\r\n", code, code_cap);
}

bool mg_imap_ok_throttled(const char *buf, size_t len, const char *tag)
{
    char state[8], code[32];
    if (mg_imap_tagged_reply(buf, len, tag, state, sizeof(state), code, sizeof(code)) != 0 ||
        strcasecmp(state, "OK") != 0)
        return false;
    if (strcasecmp(code, "THROTTLED") == 0)
        return true;
    /* Gmail's form: the code closes the line. Find the line again. */
    size_t tlen = strlen(tag);
    const char *line = NULL;
    for (size_t i = 0; i + tlen < len; i++)
        if ((i == 0 || buf[i - 1] == '\n') && memcmp(buf + i, tag, tlen) == 0 &&
            buf[i + tlen] == ' ')
            line = buf + i;
    const char *end = memchr(line, '\n', (size_t)(buf + len - line));
    if (end == NULL)
        end = buf + len;
    while (end > line && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    static const char want[] = "[THROTTLED]";
    size_t w = sizeof(want) - 1;
    return (size_t)(end - line) > w && end[-(long)w - 1] == ' ' &&
           strncasecmp(end - w, want, w) == 0;
}

int mg_imap_tagged_reply(const char *buf, size_t len, const char *tag, char *state,
                         size_t state_cap, char *code, size_t code_cap)
{
    size_t tlen = strlen(tag);
    const char *line = NULL;
    for (size_t i = 0; i + tlen < len; i++) {
        if ((i == 0 || buf[i - 1] == '\n') && memcmp(buf + i, tag, tlen) == 0 &&
            buf[i + tlen] == ' ')
            line = buf + i;
    }
    if (line == NULL || state_cap == 0 || code_cap == 0)
        return -1;
    const char *end = buf + len;
    const char *p = line + tlen + 1;
    copy_word(p, end, " \r\n", state, state_cap);
    while (p < end && *p != ' ' && *p != '\r' && *p != '\n')
        p++;
    code[0] = '\0';
    if (p + 1 < end && p[0] == ' ' && p[1] == '[')
        copy_word(p + 2, end, " ]\r\n", code, code_cap);
    return 0;
}
