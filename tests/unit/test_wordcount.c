/* test_wordcount.c - keyword extraction rules, table-driven */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mailgrab/wordcount.h"

struct word_case {
    const char *text;
    const char *words; /* expected set, space separated, sorted by key */
};

static const struct word_case cases[] = {
    {"Hello World hello", "hello world"},
    {"the and for invoice", "invoice"},      /* stopwords */
    {"ab abc", "abc"},                       /* length >= 3 */
    {"2021 12345 abc123 1st", "1st abc123"}, /* numbers dropped, mixed kept */
    {"see https://example.com/path later", "later see"},
    {"mail bob@example.com today", "mail today"},
    {"visit www.example.org please", "please visit"},
    {"ÉCOLE École école", "école"}, /* Latin-1 lowering */
    {"ŁÓDŹ łódź", "łódź"},          /* Latin Extended-A */
    {"ΑΘΗΝΑ Αθήνα", "αθήνα αθηνα"},
    {"ПРИВЕТ Привет мир", "мир привет"}, /* Cyrillic; "мир" has 3 letters */
    {"ЁЛКА ёлка", "ёлка"},
    {"don't won't l'homme", "l'homme"}, /* contractions: stopwords */
    {"rock'n'roll", "rock'n'roll"},
    {"foo-bar_baz", "bar baz foo"},
    {"naïve café", "café naïve"},
    {"emoji🙂party", "emoji party"},
    {"\xff\xfe bad bytes", "bad bytes"},
    {"", ""},
};

static void collect_sorted(struct mg_strmap *set, char *out, size_t cap)
{
    size_t n;
    struct mg_strmap_entry **v = mg_strmap_sorted(set, &n);
    out[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", v[i]->key);
    free(v);
}

static void test_words(void **state)
{
    (void)state;
    struct mg_stopwords sw;
    assert_int_equal(mg_stopwords_default(&sw), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mg_strmap set;
        mg_strmap_init(&set);
        assert_int_equal(mg_words_collect(cases[i].text, strlen(cases[i].text), &sw, &set), 0);
        char got[512];
        collect_sorted(&set, got, sizeof(got));
        if (strcmp(got, cases[i].words) != 0)
            fail_msg("case %zu \"%s\": got \"%s\", want \"%s\"", i, cases[i].text, got,
                     cases[i].words);
        mg_strmap_finish(&set);
    }
    mg_stopwords_finish(&sw);
}

static void test_custom_stopwords(void **state)
{
    (void)state;
    static const char list[] = "# comment\r\nHello\r\n\r\n  world  \n";
    struct mg_stopwords sw;
    assert_int_equal(mg_stopwords_load(&sw, list, sizeof(list) - 1), 0);
    struct mg_strmap set;
    mg_strmap_init(&set);
    static const char text[] = "hello world the end";
    assert_int_equal(mg_words_collect(text, sizeof(text) - 1, &sw, &set), 0);
    char got[128];
    collect_sorted(&set, got, sizeof(got));
    assert_string_equal(got, "end the");
    mg_strmap_finish(&set);
    mg_stopwords_finish(&sw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_custom_stopwords),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
