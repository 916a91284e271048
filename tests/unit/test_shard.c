/* test_shard.c - --shard: the spec, the schedulers' variables, the stable
 * partition of accounts by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/shard.h"

/* The environment of one case: NAME=VALUE pairs. */
static const char *const *env_now;

static const char *fake_env(const char *name)
{
    size_t n = strlen(name);
    for (const char *const *e = env_now; e != NULL && *e != NULL; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static void test_spec(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        bool ok;
    } cases[] = {
        {"1/1", true},    {"3/5", true},   {"5/5", true},       {"auto", true},
        {"auto/4", true}, {"0/5", false},  {"6/5", false},      {"1/0", false},
        {"", false},      {"1", false},    {"/5", false},       {"1/", false},
        {"a/5", false},   {"1/5x", false}, {"auto/", false},    {"auto/0", false},
        {"autox", false}, {"-1/5", false}, {"1/100001", false}, {"1/100000", true},
        {" 1/5", false},  {"1/ 5", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (mg_shard_spec_ok(cases[i].spec) != cases[i].ok)
            fail_msg("'%s': want %s", cases[i].spec, cases[i].ok ? "ok" : "refused");
}

static void test_resolve(void **state)
{
    (void)state;
    static const char *const slurm_3_11_4_task7[] = {
        "SLURM_ARRAY_TASK_ID=7", "SLURM_ARRAY_TASK_MIN=3", "SLURM_ARRAY_TASK_STEP=4",
        "SLURM_ARRAY_TASK_COUNT=3", NULL};
    static const char *const slurm_plain[] = {"SLURM_ARRAY_TASK_ID=0", "SLURM_ARRAY_TASK_MIN=0",
                                              "SLURM_ARRAY_TASK_COUNT=4", NULL};
    static const char *const slurm_off_step[] = {"SLURM_ARRAY_TASK_ID=6", "SLURM_ARRAY_TASK_MIN=3",
                                                 "SLURM_ARRAY_TASK_STEP=4",
                                                 "SLURM_ARRAY_TASK_COUNT=3", NULL};
    static const char *const slurm_past[] = {"SLURM_ARRAY_TASK_ID=9", "SLURM_ARRAY_TASK_MIN=1",
                                             "SLURM_ARRAY_TASK_COUNT=3", NULL};
    static const char *const slurm_no_count[] = {"SLURM_ARRAY_TASK_ID=2", "SLURM_ARRAY_TASK_MIN=1",
                                                 NULL};
    static const char *const slurm_junk[] = {"SLURM_ARRAY_TASK_ID=2x", "SLURM_ARRAY_TASK_MIN=1",
                                             "SLURM_ARRAY_TASK_COUNT=3", NULL};
    static const char *const k8s_2[] = {"JOB_COMPLETION_INDEX=2", NULL};
    static const char *const none[] = {NULL};
    static const struct {
        const char *spec;
        const char *const *env;
        enum mg_code rc;
        unsigned index, count;
    } cases[] = {
        {"2/7", none, MG_OK, 2, 7},
        {"2/7", k8s_2, MG_OK, 2, 7}, /* I/N wins over the environment */
        {"auto", slurm_3_11_4_task7, MG_OK, 2, 3},
        {"auto/3", slurm_3_11_4_task7, MG_OK, 2, 3},
        {"auto/4", slurm_3_11_4_task7, MG_E_USAGE, 0, 0},
        {"auto", slurm_plain, MG_OK, 1, 4},
        {"auto", slurm_off_step, MG_E_USAGE, 0, 0},
        {"auto", slurm_past, MG_E_USAGE, 0, 0},
        {"auto", slurm_no_count, MG_E_USAGE, 0, 0},
        {"auto", slurm_junk, MG_E_USAGE, 0, 0},
        {"auto/3", k8s_2, MG_OK, 3, 3},
        {"auto/2", k8s_2, MG_E_USAGE, 0, 0},
        {"auto", k8s_2, MG_E_USAGE, 0, 0}, /* an Indexed Job does not say N */
        {"auto", none, MG_E_USAGE, 0, 0},
        {"0/3", none, MG_E_USAGE, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        env_now = cases[i].env;
        struct mg_shard s = {9, 9};
        struct mg_error err;
        mg_error_clear(&err);
        enum mg_code rc = mg_shard_resolve(cases[i].spec, fake_env, &s, &err);
        if (rc != cases[i].rc ||
            (rc == MG_OK && (s.index != cases[i].index || s.count != cases[i].count)))
            fail_msg("case %zu '%s': rc %d %u/%u (%s)", i, cases[i].spec, rc, s.index, s.count,
                     err.msg);
        if (rc != MG_OK && (err.code != MG_E_USAGE || err.msg[0] == '\0'))
            fail_msg("case %zu: no usage error message", i);
    }
}

/* FNV-1a 64 as published: the documented index must never change. */
static void test_hash_is_fnv1a(void **state)
{
    (void)state;
    assert_true(mg_shard_hash("") == 0xcbf29ce484222325ull);
    assert_true(mg_shard_hash("a") == 0xaf63dc4c8601ec8cull);
    assert_true(mg_shard_hash("foobar") == 0x85944171f73967e8ull);
}

/* For every N, each name is in exactly one shard, whatever the order. */
static void test_partition(void **state)
{
    (void)state;
    char names[200][32];
    for (int i = 0; i < 200; i++)
        snprintf(names[i], sizeof(names[i]), "account-%d", i);
    for (unsigned n = 1; n <= 12; n++) {
        unsigned per[13] = {0};
        for (int i = 0; i < 200; i++) {
            unsigned in = 0;
            for (unsigned k = 1; k <= n; k++) {
                struct mg_shard s = {k, n};
                if (mg_shard_has(&s, names[i])) {
                    in++;
                    per[k]++;
                }
            }
            if (in != 1)
                fail_msg("%s is in %u of %u shards", names[i], in, n);
        }
        for (unsigned k = 1; k <= n; k++)
            if (per[k] == 0)
                fail_msg("shard %u/%u is empty over 200 names", k, n);
    }
    struct mg_shard all = {0, 0};
    assert_true(mg_shard_has(&all, "anything"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_hash_is_fnv1a),
        cmocka_unit_test(test_partition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
