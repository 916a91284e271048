/* Unit tests: a refusal means what its response code says (RFC 5530). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/imap.h"
#include "mailgrab/imapcode.h"

static void test_refusal_by_code(void **state)
{
    static const struct {
        const char *code;
        enum mg_imap_cmd cmd;
        enum mg_refusal want;
    } cases[] = {
        {"UNAVAILABLE", MG_CMD_FETCH, MG_REFUSED_BUSY},
        {"inuse", MG_CMD_EXAMINE, MG_REFUSED_BUSY},
        {"THROTTLED", MG_CMD_LOGIN, MG_REFUSED_BUSY},
        /* Dovecot's "NO [LIMIT] Maximum number of connections ..." */
        {"LIMIT", MG_CMD_LOGIN, MG_REFUSED_BUSY},
        {"LIMIT", MG_CMD_FETCH, MG_REFUSED_LIMIT},
        /* Gmail's "[OVERQUOTA] Account exceeded command or bandwidth limits." */
        {"OVERQUOTA", MG_CMD_FETCH, MG_REFUSED_LIMIT},
        {"AUTHENTICATIONFAILED", MG_CMD_LOGIN, MG_REFUSED_AUTH},
        {"AUTHORIZATIONFAILED", MG_CMD_LOGIN, MG_REFUSED_AUTH},
        {"EXPIRED", MG_CMD_LOGIN, MG_REFUSED_AUTH},
        {"CONTACTADMIN", MG_CMD_LOGIN, MG_REFUSED_AUTH},
        {"PRIVACYREQUIRED", MG_CMD_LOGIN, MG_REFUSED_AUTH},
        /* Gmail's "NO [ALERT] Too many simultaneous connections" and a
         * server that gives no code at all: the caller decides. */
        {"ALERT", MG_CMD_LOGIN, MG_REFUSED_UNSURE},
        {"", MG_CMD_LOGIN, MG_REFUSED_UNSURE},
        {"NONEXISTENT", MG_CMD_EXAMINE, MG_REFUSED_MAILBOX},
        {"NOPERM", MG_CMD_EXAMINE, MG_REFUSED_MAILBOX},
        {"", MG_CMD_EXAMINE, MG_REFUSED_MAILBOX},
        {"SYNTAX", MG_CMD_EXAMINE, MG_REFUSED_MAILBOX},
        {"EXPUNGEISSUED", MG_CMD_FETCH, MG_REFUSED_GONE},
        {"", MG_CMD_FETCH, MG_REFUSED},
        {"ALERT", MG_CMD_FETCH, MG_REFUSED},
        {"NOPERM", MG_CMD_FETCH, MG_REFUSED},
        {"SERVERBUG", MG_CMD_FETCH, MG_REFUSED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum mg_refusal got = mg_imap_refusal(cases[i].code, cases[i].cmd);
        if (got != cases[i].want)
            fail_msg("case %zu (%s): got %d, want %d", i, cases[i].code, (int)got,
                     (int)cases[i].want);
    }
    assert_int_equal(mg_imap_refusal(NULL, MG_CMD_FETCH), MG_REFUSED);
}

/* The words "exceeded", "bandwidth" or "Too many" decide nothing. */
static void test_text_decides_nothing(void **state)
{
    char st[8], code[32];
    const char *reply = "* OK [UNAVAILABLE] hello\r\n"
                        "12 NO Account exceeded command or bandwidth limits. Too many\r\n";
    assert_int_equal(
        mg_imap_tagged_reply(reply, strlen(reply), "12", st, sizeof(st), code, sizeof(code)), 0);
    assert_string_equal(st, "NO");
    assert_string_equal(code, "");
    assert_int_equal(mg_imap_refusal(code, MG_CMD_FETCH), MG_REFUSED);
}

static void test_tagged_reply(void **state)
{
    static const struct {
        const char *buf, *tag;
        int rc;
        const char *state, *code;
    } cases[] = {
        {"7 NO [OVERQUOTA] Account exceeded\r\n", "7", 0, "NO", "OVERQUOTA"},
        {"* BAD [SYNTAX] Unexpected char\r\n7 BAD Error parsing command\r\n", "7", 0, "BAD", ""},
        {"* 3 EXISTS\r\n17 OK [READ-ONLY] done\r\n", "17", 0, "OK", "READ-ONLY"},
        {"17 NO [LIMIT Maximum number\r\n", "17", 0, "NO", "LIMIT"},
        {"171 NO [LIMIT] x\r\n", "17", -1, "", ""},
        {"* NO [ALERT] x\r\n", "17", -1, "", ""},
        {"", "1", -1, "", ""},
        {"5 NO\r\n", "5", 0, "NO", ""},
        {"5 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)", "5", 0, "NO",
         "AUTHENTICATIONFAILED"},
        {"5 NO [" /* cut short */, "5", 0, "NO", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char st[8] = "", code[32] = "";
        int rc = mg_imap_tagged_reply(cases[i].buf, strlen(cases[i].buf), cases[i].tag, st,
                                      sizeof(st), code, sizeof(code));
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(st, cases[i].state);
            assert_string_equal(code, cases[i].code);
        }
    }
    /* A code longer than the buffer is cut, never overrun. */
    char st[4], code[5];
    const char *r = "9 NO [AUTHENTICATIONFAILED] x\r\n";
    assert_int_equal(mg_imap_tagged_reply(r, strlen(r), "9", st, sizeof(st), code, sizeof(code)),
                     0);
    assert_string_equal(code, "AUTH");
}

/* A login refused without a code that blames the credentials. */
static void test_judge_login(void **state)
{
    struct mg_error e;
    mg_error_retry(&e, MG_E_AUTH, MG_RETRY_LATER, "refused: [ALERT] Too many");
    assert_int_equal(mg_imap_judge_login(&e, false), MG_E_AUTH);
    assert_int_equal(e.retry, MG_RETRY_NONE);
    assert_non_null(strstr(e.msg, "refused: [ALERT] Too many"));

    mg_error_retry(&e, MG_E_AUTH, MG_RETRY_LATER, "refused: [ALERT] Too many");
    assert_int_equal(mg_imap_judge_login(&e, true), MG_E_CONNECT);
    assert_int_equal(e.retry, MG_RETRY_LATER);
    assert_non_null(strstr(e.msg, "connection limit"));

    /* A refusal that blamed the credentials stays one, whatever came before. */
    mg_error_set(&e, MG_E_AUTH, "[AUTHENTICATIONFAILED] Invalid credentials");
    assert_int_equal(mg_imap_judge_login(&e, true), MG_E_AUTH);
    assert_int_equal(e.retry, MG_RETRY_NONE);
    mg_error_retry(&e, MG_E_CONNECT, MG_RETRY_LATER, "busy");
    assert_int_equal(mg_imap_judge_login(&e, false), MG_E_CONNECT);
}

/* Slow down: [THROTTLED] as a response code, or where Gmail puts it, at
 * the end of an OK's text; never in other words, other tags or NO. */
static void test_throttled_ok(void **state)
{
    (void)state;
    static const struct {
        const char *buf;
        bool want;
    } cases[] = {
        {"* 1 FETCH (UID 1)\r\n7 OK Success [THROTTLED]\r\n", true},
        {"7 OK [THROTTLED] Fetch completed.\r\n", true},
        {"7 OK Success [throttled]\r\n", true},
        {"7 OK Success [THROTTLED]", true},
        {"7 OK Success\r\n", false},
        {"7 OK Success, not THROTTLED at all\r\n", false},
        {"7 OK Success [THROTTLED] or not\r\n", false},
        {"7 OK Success[THROTTLED]\r\n", false},
        {"7 NO Success [THROTTLED]\r\n", false},
        {"6 OK Success [THROTTLED]\r\n7 OK Success\r\n", false},
        {"* OK [THROTTLED]\r\n7 OK done\r\n", false},
        {"17 OK Success [THROTTLED]\r\n", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (mg_imap_ok_throttled(cases[i].buf, strlen(cases[i].buf), "7") != cases[i].want)
            fail_msg("case %zu: %s", i, cases[i].buf);
}

/* A BYE's code: Gmail's quota is a limit, UNAVAILABLE is busy. */
static void test_bye_code(void **state)
{
    (void)state;
    char code[32];
    mg_imap_text_code("[OVERQUOTA] Account exceeded command or bandwidth limits.", code,
                      sizeof(code));
    assert_string_equal(code, "OVERQUOTA");
    assert_int_equal(mg_imap_refusal(code, MG_CMD_OTHER), MG_REFUSED_LIMIT);
    mg_imap_text_code("[UNAVAILABLE] Temporary System Problem", code, sizeof(code));
    assert_int_equal(mg_imap_refusal(code, MG_CMD_OTHER), MG_REFUSED_BUSY);
    mg_imap_text_code("Session expired, please login again.", code, sizeof(code));
    assert_string_equal(code, "");
    mg_imap_text_code("Account exceeded [OVERQUOTA]", code, sizeof(code));
    assert_string_equal(code, "");
    mg_imap_text_code(NULL, code, sizeof(code));
    assert_string_equal(code, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusal_by_code), cmocka_unit_test(test_text_decides_nothing),
        cmocka_unit_test(test_tagged_reply),    cmocka_unit_test(test_judge_login),
        cmocka_unit_test(test_throttled_ok),    cmocka_unit_test(test_bye_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
