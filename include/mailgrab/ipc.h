/*
 * ipc.h - framed messages between mailgrab processes (the analyzer child, its
 * disposable workers, and --jobs processes).
 *
 * A frame is an 8-byte header - u32 payload length (little-endian), u8 protocol
 * version, u8 type, u16 zero - then the payload. A frame with another version,
 * an unknown type, a non-zero reserved field or a payload above MG_IPC_MAX is
 * malformed, and the receiver treats the peer as broken (for a child: fatal).
 *
 * Owns: nothing; payloads land in a caller-owned struct mg_buf.
 * Thread-safety: thread-safe for distinct fds; callers serialise writers that
 * share one fd.
 */
#ifndef MAILGRAB_IPC_H
#define MAILGRAB_IPC_H

#include <stddef.h>

#include "mailgrab/buf.h"

#define MG_IPC_VERSION 1
#define MG_IPC_MAX (16 * 1024 * 1024)

enum mg_ipc_type {
    MG_IPC_PATH = 1,      /* parent -> analyzer: a committed message file (no NUL) */
    MG_IPC_FINISH = 2,    /* parent -> analyzer: no more paths, send the counts */
    MG_IPC_STATS = 3,     /* -> parent: a chunk of encoded statistics */
    MG_IPC_STATS_END = 4, /* -> parent: the statistics are complete */
    MG_IPC_RESULT = 5,    /* worker -> batch: one message's encoded statistics */
    MG_IPC_TYPE_MAX = 5,
};

/* 0, or -1 on a write error (errno set). Retries on EINTR and short writes. */
int mg_ipc_send(int fd, enum mg_ipc_type type, const void *data, size_t len);

/* 0 with a frame, 1 on a clean EOF before a frame, -1 on error or malformed frame. */
int mg_ipc_recv(int fd, enum mg_ipc_type *type, struct mg_buf *payload);

#endif
