/* ipc.c - see include/mailgrab/ipc.h */
#include "mailgrab/ipc.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Write every byte of iov[0..cnt) in as few calls as the fd takes. */
static int write_iov(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        /* a dead peer must give EPIPE, not a SIGPIPE that kills a download */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK)
            w = writev(fd, iov, cnt);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        size_t done = (size_t)w;
        while (cnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

/* 0 when n bytes were read, 1 on EOF before any byte, -1 otherwise. */
static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, c + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return got == 0 ? 1 : -1;
        got += (size_t)r;
    }
    return 0;
}

void mg_ipc_header(unsigned char h[MG_IPC_HEADER], enum mg_ipc_type type, size_t len)
{
    h[0] = (unsigned char)len;
    h[1] = (unsigned char)(len >> 8);
    h[2] = (unsigned char)(len >> 16);
    h[3] = (unsigned char)(len >> 24);
    h[4] = MG_IPC_VERSION;
    h[5] = (unsigned char)type;
    h[6] = 0;
    h[7] = 0;
}

int mg_ipc_send(int fd, enum mg_ipc_type type, const void *data, size_t len)
{
    if (len > MG_IPC_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    unsigned char h[MG_IPC_HEADER];
    mg_ipc_header(h, type, len);
    struct iovec iov[2] = {{h, sizeof(h)}, {(void *)data, len}};
    return write_iov(fd, iov, len > 0 ? 2 : 1);
}

int mg_ipc_append(struct mg_buf *b, enum mg_ipc_type type, const void *data, size_t len)
{
    if (len > MG_IPC_MAX)
        return -1;
    unsigned char h[MG_IPC_HEADER];
    mg_ipc_header(h, type, len);
    if (mg_buf_append(b, h, sizeof(h)) != 0 || mg_buf_append(b, data, len) != 0)
        return -1;
    return 0;
}

int mg_ipc_send_frames(int fd, const struct mg_buf *frames)
{
    struct iovec iov = {frames->data, frames->len};
    return frames->len > 0 ? write_iov(fd, &iov, 1) : 0;
}

/* The type and payload length in header h; -1 when the header is malformed. */
static int parse_header(const unsigned char *h, enum mg_ipc_type *type, uint32_t *len)
{
    *len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (h[4] != MG_IPC_VERSION || h[5] == 0 || h[5] > MG_IPC_TYPE_MAX || h[6] != 0 || h[7] != 0 ||
        *len > MG_IPC_MAX)
        return -1;
    *type = (enum mg_ipc_type)h[5];
    return 0;
}

int mg_ipc_recv(int fd, enum mg_ipc_type *type, struct mg_buf *payload)
{
    unsigned char h[MG_IPC_HEADER];
    int rc = read_all(fd, h, sizeof(h));
    if (rc != 0)
        return rc;
    uint32_t len;
    if (parse_header(h, type, &len) != 0)
        return -1;
    mg_buf_reset(payload);
    char chunk[16384];
    while (len > 0) {
        size_t n = len < sizeof(chunk) ? len : sizeof(chunk);
        if (read_all(fd, chunk, n) != 0)
            return -1;
        if (mg_buf_append(payload, chunk, n) != 0)
            return -1;
        len -= (uint32_t)n;
    }
    return 0;
}

void mg_ipc_reader_init(struct mg_ipc_reader *r, int fd)
{
    r->fd = fd;
    r->head = 0;
    mg_buf_init(&r->in, MG_IPC_HEADER + MG_IPC_MAX);
}

void mg_ipc_reader_finish(struct mg_ipc_reader *r)
{
    mg_buf_finish(&r->in);
}

/* At least need bytes unread in r->in: 0; 1 on EOF with nothing unread; -1. */
static int reader_fill(struct mg_ipc_reader *r, size_t need)
{
    while (r->in.len - r->head < need) {
        if (r->head > 0) {
            memmove(r->in.data, r->in.data + r->head, r->in.len - r->head);
            r->in.len -= r->head;
            r->head = 0;
        }
        size_t ask = need - r->in.len > 65536 ? need - r->in.len : 65536;
        if (ask > r->in.max - r->in.len)
            ask = r->in.max - r->in.len;
        if (mg_buf_reserve(&r->in, ask) != 0)
            return -1;
        ssize_t got = read(r->fd, r->in.data + r->in.len, ask);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -1;
        if (got == 0)
            return r->in.len == 0 ? 1 : -1;
        r->in.len += (size_t)got;
    }
    return 0;
}

int mg_ipc_read(struct mg_ipc_reader *r, enum mg_ipc_type *type, struct mg_buf *payload)
{
    int rc = reader_fill(r, MG_IPC_HEADER);
    if (rc != 0)
        return rc;
    uint32_t len;
    if (parse_header((const unsigned char *)r->in.data + r->head, type, &len) != 0 ||
        reader_fill(r, MG_IPC_HEADER + (size_t)len) != 0)
        return -1;
    mg_buf_reset(payload);
    if (mg_buf_append(payload, r->in.data + r->head + MG_IPC_HEADER, len) != 0)
        return -1;
    r->head += MG_IPC_HEADER + (size_t)len;
    if (r->head == r->in.len)
        r->head = r->in.len = 0;
    return 0;
}
