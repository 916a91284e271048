/* Unit tests: message lists, UID set text, chunk planning and stealing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mailgrab/plan.h"

static void test_uidset_format(void **state)
{
    static const struct {
        uint32_t uids[8];
        size_t n;
        size_t cap;
        const char *want;
        size_t want_n;
    } cases[] = {
        {{1}, 1, 64, "1", 1},
        {{1, 2, 3, 4}, 4, 64, "1:4", 4},
        {{1, 2, 4, 9, 10, 11}, 6, 64, "1:2,4,9:11", 6},
        {{4294967294u, 4294967295u}, 2, 64, "4294967294:4294967295", 2},
        {{1, 3, 5}, 3, 4, "1,3", 2}, /* "1,3,5" does not fit in 4 bytes */
        {{7}, 1, 1, "", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        size_t got = mg_uidset_format(cases[i].uids, cases[i].n, buf, cases[i].cap);
        assert_int_equal(got, cases[i].want_n);
        assert_string_equal(buf, cases[i].want);
    }
}

static void fill(struct mg_msglist *l, size_t n, const uint32_t *sizes)
{
    memset(l, 0, sizeof(*l));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mg_msglist_push(l, (uint32_t)(i + 1), sizes ? sizes[i] : 100), 0);
}

static void test_msglist_sort_dedupe_filter(void **state)
{
    struct mg_msglist l = {0};
    uint32_t uids[] = {5, 3, 9, 3, 1, 9};
    for (size_t i = 0; i < 6; i++)
        mg_msglist_push(&l, uids[i], uids[i] * 10);
    mg_msglist_sort(&l);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.v[0].uid, 1);
    assert_int_equal(l.v[3].uid, 9);
    assert_int_equal(mg_msglist_bytes(&l), 10 + 30 + 50 + 90);
    mg_msglist_truncate(&l, 2);
    assert_int_equal(l.n, 2);
    mg_msglist_finish(&l);
}

/* Every message lands in exactly one chunk, in order, chunks contiguous. */
static void check_partition(const struct mg_plan *p, size_t n)
{
    size_t next = 0;
    for (size_t c = 0; c < p->nchunks; c++) {
        assert_int_equal(p->chunks[c].lo, next);
        assert_true(p->chunks[c].hi >= p->chunks[c].lo);
        uint64_t b = 0;
        for (size_t i = p->chunks[c].lo; i < p->chunks[c].hi; i++)
            b += p->msgs->v[i].size;
        assert_int_equal(b, p->chunks[c].bytes);
        next = p->chunks[c].hi;
    }
    assert_int_equal(next, n);
}

static void test_plan_balances_bytes(void **state)
{
    /* One huge message among small ones: it gets a chunk nearly to itself. */
    uint32_t sizes[12] = {10, 10, 10, 10, 10, 1000, 10, 10, 10, 10, 10, 10};
    struct mg_msglist l;
    fill(&l, 12, sizes);
    struct mg_plan p;
    assert_int_equal(mg_plan_init(&p, &l, 2, 3), 0);
    check_partition(&p, 12);
    assert_true(p.chunks[0].bytes >= 1000 || p.chunks[1].bytes >= 1000);
    uint64_t small = p.chunks[0].bytes < p.chunks[1].bytes ? p.chunks[0].bytes : p.chunks[1].bytes;
    assert_true(small <= 110); /* all the rest, not more */
    mg_plan_finish(&p);
    mg_msglist_finish(&l);
}

static void test_plan_shapes(void **state)
{
    static const struct {
        size_t n, chunks;
    } cases[] = {{0, 4}, {1, 4}, {3, 10}, {10, 10}, {11, 10}, {1000, 7}, {5, 1}};
    for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
        struct mg_msglist l;
        fill(&l, cases[t].n, NULL);
        struct mg_plan p;
        assert_int_equal(mg_plan_init(&p, &l, cases[t].chunks, 3), 0);
        check_partition(&p, cases[t].n);
        size_t nonempty = 0;
        for (size_t c = 0; c < p.nchunks; c++) {
            size_t len = p.chunks[c].hi - p.chunks[c].lo;
            nonempty += len > 0;
            if (cases[t].n >= cases[t].chunks) /* equal sizes: equal counts +-1 */
                assert_true(len >= cases[t].n / cases[t].chunks - 1 &&
                            len <= cases[t].n / cases[t].chunks + 2);
        }
        size_t want = cases[t].n < cases[t].chunks ? cases[t].n : cases[t].chunks;
        assert_int_equal(nonempty, want);
        assert_int_equal(mg_plan_pending(&p), cases[t].n);
        mg_plan_finish(&p);
        mg_msglist_finish(&l);
    }
}

static void test_plan_take_and_steal(void **state)
{
    struct mg_msglist l;
    fill(&l, 100, NULL);
    struct mg_plan p;
    assert_int_equal(mg_plan_init(&p, &l, 2, 3), 0);
    size_t out[100];
    char seen[100] = {0};
    /* Worker 1 drains its own chunk, then steals from worker 0's. */
    size_t total = 0, n;
    while ((n = mg_plan_take(&p, 1, 10, UINT64_MAX, out)) > 0) {
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(seen[out[i]], 0);
            seen[out[i]] = 1;
        }
        total += n;
        if (total >= 60)
            break;
    }
    assert_true(total >= 60); /* more than its own 50: it stole */
    while ((n = mg_plan_take(&p, 0, 7, UINT64_MAX, out)) > 0) {
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(seen[out[i]], 0);
            seen[out[i]] = 1;
        }
        total += n;
    }
    assert_int_equal(total, 100);
    assert_int_equal(mg_plan_pending(&p), 0);
    assert_int_equal(mg_plan_take(&p, 1, 10, UINT64_MAX, out), 0);
    mg_plan_finish(&p);
    mg_msglist_finish(&l);
}

static void test_plan_byte_limit(void **state)
{
    uint32_t sizes[5] = {600, 600, 600, 5000, 1};
    struct mg_msglist l;
    fill(&l, 5, sizes);
    struct mg_plan p;
    assert_int_equal(mg_plan_init(&p, &l, 1, 3), 0);
    size_t out[5];
    assert_int_equal(mg_plan_take(&p, 0, 10, 1000, out), 1); /* 600+600 > 1000 */
    assert_int_equal(mg_plan_take(&p, 0, 10, 1300, out), 2);
    assert_int_equal(mg_plan_take(&p, 0, 10, 1000, out), 1); /* oversize alone */
    assert_int_equal(out[0], 3);
    mg_plan_finish(&p);
    mg_msglist_finish(&l);
}

static void test_plan_requeue_bounded(void **state)
{
    struct mg_msglist l;
    fill(&l, 3, NULL);
    struct mg_plan p;
    assert_int_equal(mg_plan_init(&p, &l, 1, 2), 0);
    size_t out[3];
    assert_int_equal(mg_plan_take(&p, 0, 3, UINT64_MAX, out), 3);
    assert_true(mg_plan_requeue(&p, 1));
    assert_int_equal(mg_plan_pending(&p), 1);
    assert_int_equal(mg_plan_take(&p, 0, 3, UINT64_MAX, out), 1);
    assert_int_equal(out[0], 1);
    assert_false(mg_plan_requeue(&p, 1)); /* second failure: give up */
    mg_plan_return(&p, 2);                /* never sent: no attempt spent */
    assert_int_equal(mg_plan_take(&p, 0, 3, UINT64_MAX, out), 1);
    assert_int_equal(out[0], 2);
    assert_int_equal(mg_plan_pending(&p), 0);
    mg_plan_finish(&p);
    mg_msglist_finish(&l);
}

/* A cut costs no attempt: a message cut any number of times is still tried. */
static void test_plan_cut_costs_no_attempt(void **state)
{
    struct mg_msglist l;
    fill(&l, 4, NULL);
    struct mg_plan p;
    assert_int_equal(mg_plan_init(&p, &l, 1, 2), 0);
    size_t out[4];
    for (int round = 0; round < 10; round++) {
        assert_int_equal(mg_plan_take(&p, 0, 4, UINT64_MAX, out), round == 0 ? 4 : 2);
        if (round == 0) { /* two arrived whole; two come back */
            mg_plan_return(&p, 3);
            mg_plan_return(&p, 2);
        } else {
            mg_plan_return(&p, out[0]);
            mg_plan_return(&p, out[1]);
        }
        assert_int_equal(mg_plan_pending(&p), 2);
    }
    assert_false(mg_plan_is_suspect(&p, 2));
    mg_plan_finish(&p);
    mg_msglist_finish(&l);
}

/* A suspect comes back first and alone, however much the worker asks for,
 * and stays a suspect; other retries come after it, together. */
static void test_plan_suspect_alone_first(void **state)
{
    struct mg_msglist l;
    fill(&l, 6, NULL);
    struct mg_plan p;
    assert_int_equal(mg_plan_init(&p, &l, 1, 3), 0);
    size_t out[6];
    assert_int_equal(mg_plan_take(&p, 0, 4, UINT64_MAX, out), 4);
    mg_plan_return(&p, 0);
    mg_plan_suspect(&p, 1);
    mg_plan_return(&p, 2);
    assert_true(mg_plan_is_suspect(&p, 1));
    assert_false(mg_plan_is_suspect(&p, 2));
    assert_int_equal(mg_plan_take(&p, 0, 10, UINT64_MAX, out), 1);
    assert_int_equal(out[0], 1);
    assert_int_equal(mg_plan_take(&p, 0, 10, UINT64_MAX, out), 2); /* the other retries */
    assert_true((out[0] == 0 && out[1] == 2) || (out[0] == 2 && out[1] == 0));
    /* Given back unsent, or refused, it is still handed out alone. */
    mg_plan_return(&p, 1);
    assert_true(mg_plan_requeue(&p, 0));
    assert_int_equal(mg_plan_take(&p, 0, 10, UINT64_MAX, out), 1);
    assert_int_equal(out[0], 1);
    assert_true(mg_plan_requeue(&p, 1));
    assert_int_equal(mg_plan_take(&p, 0, 10, UINT64_MAX, out), 1);
    assert_int_equal(out[0], 1);
    assert_int_equal(mg_plan_take(&p, 0, 10, UINT64_MAX, out), 1); /* the refused one */
    assert_int_equal(out[0], 0);
    assert_int_equal(mg_plan_take(&p, 0, 10, UINT64_MAX, out), 2); /* then new work */
    assert_int_equal(out[0], 4);
    assert_int_equal(mg_plan_pending(&p), 0);
    mg_plan_finish(&p);
    mg_msglist_finish(&l);
}

/* Strikes: the max_strikes-th gives the message up; until then it comes back
 * as a suspect. Refusals are counted apart. */
static void test_plan_strikes_give_up(void **state)
{
    struct mg_msglist l;
    fill(&l, 2, NULL);
    struct mg_plan p;
    assert_int_equal(mg_plan_init(&p, &l, 1, 3), 0);
    assert_int_equal(p.max_strikes, MG_PLAN_STRIKES);
    size_t out[2];
    assert_int_equal(mg_plan_take(&p, 0, 2, UINT64_MAX, out), 2);
    assert_true(mg_plan_requeue(&p, 0)); /* a refusal is not a strike */
    assert_int_equal(mg_plan_take(&p, 0, 2, UINT64_MAX, out), 1);
    assert_int_equal(mg_plan_strikes(&p, 0), 0);
    for (unsigned k = 1; k < MG_PLAN_STRIKES; k++) {
        assert_true(mg_plan_strike(&p, 0));
        assert_int_equal(mg_plan_strikes(&p, 0), k);
        assert_true(mg_plan_is_suspect(&p, 0));
        assert_int_equal(mg_plan_pending(&p), 1);
        assert_int_equal(mg_plan_take(&p, 0, 2, UINT64_MAX, out), 1);
        assert_int_equal(out[0], 0);
    }
    assert_false(mg_plan_strike(&p, 0));
    assert_int_equal(mg_plan_pending(&p), 0);
    assert_int_equal(mg_plan_take(&p, 0, 2, UINT64_MAX, out), 0);
    mg_plan_finish(&p);
    mg_msglist_finish(&l);
}

/* Batch size: doubles up to the maximum, halves down to one message and
 * MG_PLAN_MIN_BYTES (or the maximum, if that is smaller), grows back. */
static void test_plan_size_halve_grow(void **state)
{
    struct mg_plan_size s;
    mg_plan_size_init(&s, 16, 1u << 20, 256, 8u << 20);
    assert_int_equal(s.msgs, 16);
    assert_int_equal(s.bytes, 1u << 20);
    for (int i = 0; i < 10; i++)
        mg_plan_size_grow(&s);
    assert_int_equal(s.msgs, 256);
    assert_int_equal(s.bytes, 8u << 20);
    mg_plan_size_halve(&s);
    assert_int_equal(s.msgs, 128);
    assert_int_equal(s.bytes, 4u << 20);
    for (int i = 0; i < 20; i++)
        mg_plan_size_halve(&s);
    assert_int_equal(s.msgs, 1);
    assert_int_equal(s.bytes, MG_PLAN_MIN_BYTES);
    mg_plan_size_grow(&s);
    assert_int_equal(s.msgs, 2);
    assert_int_equal(s.bytes, 2 * MG_PLAN_MIN_BYTES);

    /* first sizes above the maximum are capped; a small maximum is the floor */
    mg_plan_size_init(&s, 16, 1u << 20, 4, 1000);
    assert_int_equal(s.msgs, 4);
    assert_int_equal(s.bytes, 1000);
    mg_plan_size_halve(&s);
    assert_int_equal(s.msgs, 2);
    assert_int_equal(s.bytes, 1000);
    mg_plan_size_grow(&s);
    assert_int_equal(s.msgs, 4);
    assert_int_equal(s.bytes, 1000);
}

/* The biggest message of at least min_size in the worker's own chunk comes
 * alone; the rest of the chunk is still handed out, each message once. */
static void test_plan_take_big(void **state)
{
    uint32_t sizes[8] = {10, 900, 20, 5000, 30, 4000, 6000, 40};
    struct mg_msglist l;
    fill(&l, 8, sizes);
    struct mg_plan p;
    assert_int_equal(mg_plan_init(&p, &l, 2, 3), 0);
    size_t out[8];
    assert_int_equal(p.chunks[1].lo, 6); /* chunk 0: sizes 10..4000, chunk 1: 6000, 40 */
    assert_int_equal(mg_plan_take_big(&p, 0, 1000, out), 1);
    assert_int_equal(out[0], 3); /* 5000: the biggest of chunk 0 */
    assert_int_equal(mg_plan_take_big(&p, 0, 1000, out), 1);
    assert_int_equal(out[0], 5);
    assert_int_equal(mg_plan_take_big(&p, 0, 1000, out), 0);
    assert_int_equal(mg_plan_take_big(&p, 1, 100000, out), 0);
    assert_int_equal(mg_plan_take_big(&p, 1, 1000, out), 1);
    assert_int_equal(out[0], 6);
    assert_int_equal(mg_plan_pending(&p), 5);
    bool seen[8] = {false, false, false, true, false, true, true, false};
    for (size_t w = 0; w < 2; w++) {
        size_t n;
        while ((n = mg_plan_take(&p, w, 8, UINT64_MAX, out)) > 0) {
            for (size_t i = 0; i < n; i++) {
                assert_false(seen[out[i]]);
                seen[out[i]] = true;
            }
        }
    }
    for (size_t i = 0; i < 8; i++)
        assert_true(seen[i]);
    assert_int_equal(mg_plan_pending(&p), 0);
    mg_plan_finish(&p);
    mg_msglist_finish(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uidset_format),
        cmocka_unit_test(test_msglist_sort_dedupe_filter),
        cmocka_unit_test(test_plan_balances_bytes),
        cmocka_unit_test(test_plan_shapes),
        cmocka_unit_test(test_plan_take_and_steal),
        cmocka_unit_test(test_plan_byte_limit),
        cmocka_unit_test(test_plan_requeue_bounded),
        cmocka_unit_test(test_plan_cut_costs_no_attempt),
        cmocka_unit_test(test_plan_suspect_alone_first),
        cmocka_unit_test(test_plan_strikes_give_up),
        cmocka_unit_test(test_plan_size_halve_grow),
        cmocka_unit_test(test_plan_take_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
