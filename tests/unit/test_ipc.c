/* test_ipc.c - frames sent one way and read back the other: one by one,
 * queued several to a write, and through the buffered reader */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "mailgrab/ipc.h"

static void pair(int fd[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
}

static void expect_frame(struct mg_ipc_reader *r, enum mg_ipc_type type, const char *data,
                         size_t len)
{
    struct mg_buf payload;
    mg_buf_init(&payload, MG_IPC_MAX);
    enum mg_ipc_type got;
    assert_int_equal(mg_ipc_read(r, &got, &payload), 0);
    assert_int_equal(got, type);
    assert_int_equal(payload.len, len);
    if (len > 0)
        assert_memory_equal(payload.data, data, len);
    mg_buf_finish(&payload);
}

/* Frames queued into one write come out one by one, in order, and a clean
 * end after the last gives 1. */
static void test_queued_frames(void **state)
{
    (void)state;
    int fd[2];
    pair(fd);
    struct mg_buf q;
    mg_buf_init(&q, 1 << 20);
    assert_int_equal(mg_ipc_append(&q, MG_IPC_ROW, "row one", 7), 0);
    assert_int_equal(mg_ipc_append(&q, MG_IPC_RESULT, "result", 6), 0);
    assert_int_equal(mg_ipc_append(&q, MG_IPC_STATS_END, NULL, 0), 0);
    assert_int_equal(mg_ipc_send_frames(fd[1], &q), 0);
    assert_int_equal(mg_ipc_send(fd[1], MG_IPC_PATH, "/a/b", 4), 0);
    close(fd[1]);

    struct mg_ipc_reader r;
    mg_ipc_reader_init(&r, fd[0]);
    expect_frame(&r, MG_IPC_ROW, "row one", 7);
    expect_frame(&r, MG_IPC_RESULT, "result", 6);
    expect_frame(&r, MG_IPC_STATS_END, NULL, 0);
    expect_frame(&r, MG_IPC_PATH, "/a/b", 4);
    struct mg_buf payload;
    mg_buf_init(&payload, MG_IPC_MAX);
    enum mg_ipc_type t;
    assert_int_equal(mg_ipc_read(&r, &t, &payload), 1);
    mg_buf_finish(&payload);
    mg_ipc_reader_finish(&r);
    mg_buf_finish(&q);
    close(fd[0]);
}

/* A frame larger than one read (and than the socket buffer) arrives whole;
 * the writer runs in a child so neither side waits for the other. */
static void test_large_frame(void **state)
{
    (void)state;
    size_t big = 3u << 20;
    char *data = malloc(big);
    assert_non_null(data);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 7 + (i >> 12));
    int fd[2];
    pair(fd);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        int rc = mg_ipc_send(fd[1], MG_IPC_STATS, "x", 1) != 0 ||
                 mg_ipc_send(fd[1], MG_IPC_STATS, data, big) != 0 ||
                 mg_ipc_send(fd[1], MG_IPC_STATS_END, NULL, 0) != 0;
        _exit(rc);
    }
    close(fd[1]);
    struct mg_ipc_reader r;
    mg_ipc_reader_init(&r, fd[0]);
    expect_frame(&r, MG_IPC_STATS, "x", 1);
    expect_frame(&r, MG_IPC_STATS, data, big);
    expect_frame(&r, MG_IPC_STATS_END, NULL, 0);
    mg_ipc_reader_finish(&r);
    close(fd[0]);
    free(data);
}

/* The end of the stream inside a frame, or a malformed header, is an
 * error (-1), not a clean end. */
static void test_cut_and_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t n;
    } cases[] = {
        {"\x05\x00\x00\x00\x01\x07\x00\x00"
         "abc",
         11},                                    /* payload cut short */
        {"\x05\x00\x00", 3},                     /* header cut short */
        {"\x00\x00\x00\x00\x02\x07\x00\x00", 8}, /* unknown version */
        {"\x00\x00\x00\x00\x01\x63\x00\x00", 8}, /* unknown type */
        {"\x00\x00\x00\x02\x01\x07\x00\x00", 8}, /* above MG_IPC_MAX */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd[2];
        pair(fd);
        assert_int_equal(write(fd[1], cases[i].bytes, cases[i].n), (ssize_t)cases[i].n);
        close(fd[1]);
        struct mg_ipc_reader r;
        mg_ipc_reader_init(&r, fd[0]);
        struct mg_buf payload;
        mg_buf_init(&payload, MG_IPC_MAX);
        enum mg_ipc_type t;
        if (mg_ipc_read(&r, &t, &payload) != -1)
            fail_msg("case %zu: not an error", i);
        mg_buf_finish(&payload);
        mg_ipc_reader_finish(&r);
        close(fd[0]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queued_frames),
        cmocka_unit_test(test_large_frame),
        cmocka_unit_test(test_cut_and_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
