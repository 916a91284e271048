/* Unit tests: the pure OAuth2 helpers (SASL strings, form bodies, token
 * endpoint replies, PKCE, presets). No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mailgrab/oauth2.h"
#include "mailgrab/password.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_base64(void **state)
{
    static const struct {
        const char *in, *std, *url;
    } cases[] = {
        {"", "", ""},
        {"f", "Zg==", "Zg"},
        {"fo", "Zm8=", "Zm8"},
        {"foo", "Zm9v", "Zm9v"},
        {"foob", "Zm9vYg==", "Zm9vYg"},
        {"fooba", "Zm9vYmE=", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
        {"\xfb\xff\xbf", "+/+/", "-_-_"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        char out[64];
        size_t len = strlen(cases[i].in);
        assert_int_equal(mg_base64((const uint8_t *)cases[i].in, len, false, out, sizeof(out)),
                         (long)strlen(cases[i].std));
        assert_string_equal(out, cases[i].std);
        assert_int_equal(mg_base64((const uint8_t *)cases[i].in, len, true, out, sizeof(out)),
                         (long)strlen(cases[i].url));
        assert_string_equal(out, cases[i].url);
    }
    char small[4];
    assert_int_equal(mg_base64((const uint8_t *)"foo", 3, false, small, sizeof(small)), -1);
}

static void test_xoauth2(void **state)
{
    char out[512];
    assert_int_equal(mg_xoauth2_initial("someuser@example.com",
                                        "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", out,
                                        sizeof(out)),
                     0);
    assert_string_equal(out, "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRm"
                             "dDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==");
    /* A \1 inside the token would forge a field. */
    assert_int_equal(mg_xoauth2_initial("u", "bad\001auth=x", out, sizeof(out)), -1);
    char small[16];
    assert_int_equal(mg_xoauth2_initial("u", "token", small, sizeof(small)), -1);
}

static void test_oauthbearer(void **state)
{
    char out[512];
    assert_int_equal(mg_oauthbearer_initial("user@example.com", "server.example.com", "143",
                                            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", out,
                                            sizeof(out)),
                     0);
    assert_string_equal(out, "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBv"
                             "cnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1s"
                             "emRHRXVZMjl0Q2c9PQEB");
    /* ',' and '=' in the authzid are escaped (RFC 5801). */
    assert_int_equal(mg_oauthbearer_initial("a=b,c", "h", "993", "t", out, sizeof(out)), 0);
    assert_string_equal(out, "bixhPWE9M0RiPTJDYywBaG9zdD1oAXBvcnQ9OTkzAWF1dGg9QmVhcmVyIHQBAQ==");
    assert_int_equal(mg_oauthbearer_initial("u", "h\001", "993", "t", out, sizeof(out)), -1);
}

static void test_form(void **state)
{
    char buf[256];
    struct mg_buf f;
    mg_buf_init_fixed(&f, buf, sizeof(buf));
    mg_form_add(&f, "grant_type", "refresh_token");
    mg_form_add(&f, "refresh_token", "1//0a+b/c=d&e");
    mg_form_add(&f, "scope", "https://x.example/A offline_access");
    mg_form_add(&f, "utf8", "\xc3\xa9~-._");
    assert_false(f.failed);
    assert_string_equal(buf, "grant_type=refresh_token&refresh_token=1%2F%2F0a%2Bb%2Fc%3Dd%26e"
                             "&scope=https%3A%2F%2Fx.example%2FA+offline_access"
                             "&utf8=%C3%A9~-._");
    assert_int_equal(f.len, strlen(buf));

    /* Overflow is sticky and never writes past the buffer. */
    char small[12];
    memset(small, 'X', sizeof(small));
    mg_buf_init_fixed(&f, small, sizeof(small) - 2);
    mg_form_add(&f, "a", "b");
    mg_form_add(&f, "code", "0123456789");
    mg_form_add(&f, "c", "d");
    assert_true(f.failed);
    assert_int_equal(small[sizeof(small) - 1], 'X');
    assert_int_equal(small[sizeof(small) - 2], 'X');
}

static void test_reply_ok(void **state)
{
    struct mg_oauth2_reply r;
    struct mg_error err;
    const char *body = "{\"access_token\":\"ya29.abc\",\"expires_in\":3599,"
                       "\"scope\":\"https://mail.google.com/\",\"token_type\":\"Bearer\"}\n";
    assert_int_equal(mg_oauth2_parse_reply(200, body, strlen(body), "h", &r, &err), MG_OK);
    assert_string_equal(r.access_token, "ya29.abc");
    assert_string_equal(r.refresh_token, "");
    assert_int_equal(r.expires_in, 3599);

    body = "{\"access_token\":\"A\",\"refresh_token\":\"R2\",\"expires_in\":\"120\"}";
    assert_int_equal(mg_oauth2_parse_reply(200, body, strlen(body), "h", &r, &err), MG_OK);
    assert_string_equal(r.refresh_token, "R2");
    assert_int_equal(r.expires_in, 120);

    /* Missing expires_in: assume an hour. Bytes after len are not read. */
    body = "{\"access_token\":\"A\"}garbage";
    assert_int_equal(mg_oauth2_parse_reply(200, body, 20, "h", &r, &err), MG_OK);
    assert_int_equal(r.expires_in, 3600);
}

static void test_reply_errors(void **state)
{
    static const struct {
        long status;
        const char *body;
        const char *want; /* substring of the message */
    } cases[] = {
        {400,
         "{\"error\":\"invalid_grant\",\"error_description\":\"Token has been expired or "
         "revoked.\"}",
         "run mailgrab login again"},
        {401, "{\"error\":\"invalid_client\",\"error_description\":\"Unauthorized\"}",
         "invalid_client: Unauthorized"},
        {400, "{\"error\":\"invalid_scope\",\"error_description\":\"bad\\nscope\"}",
         "tok.example refused (HTTP 400): invalid_scope: bad?scope"},
        {503, "<html>busy</html>", "HTTP 503 without a JSON error"},
        {200, "{\"token_type\":\"Bearer\"}", "without an access_token"},
        {200, "[1,2]", "did not answer with a JSON object"},
        {200, "{\"access_token\":\"A\"} x", "did not answer with a JSON object"},
        {200, "", "did not answer with a JSON object"},
        {200, "{\"access_token\":\"a\\u0001b\"}", "unusable access_token"},
        {200, "{\"access_token\":17}", "without an access_token"},
        {200, "{\"access_token\":\"ab\\u0000cd\"}", "unusable access_token"},
        {200, "{\"access_token\":\"A\",\"refresh_token\":\"r\\nx\"}", "unusable refresh_token"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct mg_oauth2_reply r;
        struct mg_error err;
        mg_error_clear(&err);
        assert_int_equal(mg_oauth2_parse_reply(cases[i].status, cases[i].body,
                                               strlen(cases[i].body), "tok.example", &r, &err),
                         MG_E_OAUTH);
        assert_int_equal(err.code, MG_E_OAUTH);
        if (strstr(err.msg, cases[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
        assert_string_equal(r.access_token, "");
    }
}

static void test_pkce(void **state)
{
    /* RFC 7636 appendix B. */
    char out[64];
    assert_int_equal(
        mg_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", out, sizeof(out)), 0);
    assert_string_equal(out, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    char small[43];
    assert_int_equal(mg_pkce_challenge("x", small, sizeof(small)), -1);
}

static void test_url_host(void **state)
{
    static const struct {
        const char *url, *host;
    } cases[] = {
        {"https://oauth2.googleapis.com/token", "oauth2.googleapis.com"},
        {"https://127.0.0.1:8443/token?x=1", "127.0.0.1"},
        {"https://user:pw@example.org", "example.org"},
        {"https://[::1]:443/t", "[::1]"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        char out[64];
        assert_int_equal(mg_url_host(cases[i].url, out, sizeof(out)), 0);
        assert_string_equal(out, cases[i].host);
    }
    char out[64];
    assert_int_equal(mg_url_host("https:///token", out, sizeof(out)), -1);
}

static void test_write_secret(void **state)
{
    char dir[] = "/tmp/mg-oauth2-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/refresh-token", dir);
    struct mg_error err;
    for (int round = 0; round < 2; round++) {
        const char *tok = round == 0 ? "1//first" : "1//second";
        assert_int_equal(mg_secret_write(path, tok, strlen(tok), &err), MG_OK);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
        char buf[64] = "";
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        fclose(f);
        char want[64];
        snprintf(want, sizeof(want), "%s\n", tok);
        assert_string_equal(buf, want);
        char *back = NULL;
        assert_int_equal(mg_oauth2_read_secret(path, "refresh token", &back, &err), MG_OK);
        assert_string_equal(back, tok);
        mg_secret_free(back);
    }
    /* No temporary file is left behind. */
    DIR *d = opendir(dir);
    assert_non_null(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.' || (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0))
            entries++;
    closedir(d);
    assert_int_equal(entries, 1);
    /* A readable secret file is refused. */
    assert_int_equal(chmod(path, 0644), 0);
    char *back = NULL;
    assert_int_equal(mg_oauth2_read_secret(path, "refresh token", &back, &err), MG_E_USAGE);
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),       cmocka_unit_test(test_xoauth2),
        cmocka_unit_test(test_oauthbearer),  cmocka_unit_test(test_form),
        cmocka_unit_test(test_reply_ok),     cmocka_unit_test(test_reply_errors),
        cmocka_unit_test(test_pkce),         cmocka_unit_test(test_url_host),
        cmocka_unit_test(test_write_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
