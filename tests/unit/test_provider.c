/* test_provider.c - provider facts: presets by name, connection caps by host,
 * and --provider's choices matching the table */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/provider.h"
#include "mailgrab/settings.h"

static void test_providers(void **state)
{
    const struct mg_provider *g = mg_provider_find("gmail");
    assert_non_null(g);
    assert_string_equal(g->imap_host, "imap.gmail.com");
    assert_string_equal(g->imap_port, "993");
    assert_string_equal(g->auth_url, "https://accounts.google.com/o/oauth2/v2/auth");
    assert_string_equal(g->token_url, "https://oauth2.googleapis.com/token");
    assert_string_equal(g->scope, "https://mail.google.com/");
    assert_true(g->offline_consent);

    const struct mg_provider *m = mg_provider_find("outlook");
    assert_non_null(m);
    assert_string_equal(m->imap_host, "outlook.office365.com");
    assert_string_equal(m->imap_port, "993");
    assert_string_equal(m->auth_url,
                        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize");
    assert_string_equal(m->token_url, "https://login.microsoftonline.com/common/oauth2/v2.0/token");
    assert_string_equal(m->scope,
                        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access");
    assert_false(m->offline_consent);
    assert_int_equal(g->max_connections, 15);

    assert_null(mg_provider_find("yahoo"));
    assert_null(mg_provider_find(NULL));
}

static void test_known_connection_limits(void **state)
{
    static const struct {
        const char *host;
        unsigned most;
    } cases[] = {
        {"imap.gmail.com", 15},  {"IMAP.GMAIL.COM", 15}, {"imap.googlemail.com", 15},
        {"gmail.com", 15},       {"notgmail.com", 0},    {"imap.gmail.com.evil.example", 0},
        {"imap.example.org", 0}, {"127.0.0.1", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (mg_provider_max_connections(cases[i].host) != cases[i].most)
            fail_msg("%s: want %u", cases[i].host, cases[i].most);
}

/* Gmail's default daily budget stays under Google's 2500 MB a day. */
static void test_default_daily_limits(void **state)
{
    (void)state;
    unsigned long long g = mg_provider_daily_limit("imap.gmail.com");
    assert_true(g > 0 && g < 2500ull * 1000 * 1000);
    assert_int_equal(mg_provider_daily_limit("imap.googlemail.com"), g);
    assert_int_equal(mg_provider_daily_limit("imap.gmail.com.evil.example"), 0);
    assert_int_equal(mg_provider_daily_limit("outlook.office365.com"), 0);
    assert_int_equal(mg_provider_daily_limit("127.0.0.1"), 0);
    assert_int_equal(mg_provider_daily_limit(NULL), 0);
}

/* Every choice --provider offers is a provider mailgrab knows. */
static void test_provider_choices(void **state)
{
    size_t n;
    const struct mg_setting *t = mg_settings(&n);
    const struct mg_setting *p = NULL;
    for (size_t i = 0; i < n; i++)
        if (t[i].id == MG_SET_PROVIDER)
            p = &t[i];
    assert_non_null(p);
    for (size_t i = 0; i < MG_CHOICES_MAX && p->choices[i] != NULL; i++)
        assert_non_null(mg_provider_find(p->choices[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_providers),
        cmocka_unit_test(test_known_connection_limits),
        cmocka_unit_test(test_default_daily_limits),
        cmocka_unit_test(test_provider_choices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
