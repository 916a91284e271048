/*
 * ipc.h - framed messages between mailgrab processes (the analyzer child, its
 * disposable workers, and --jobs processes).
 *
 * A frame is an 8-byte header - u32 payload length (little-endian), u8 protocol
 * version, u8 type, u16 zero - then the payload. A frame with another version,
 * an unknown type, a non-zero reserved field or a payload above MG_IPC_MAX is
 * malformed, and the receiver treats the peer as broken (for a child: fatal).
 *
 * Directions, and who may wait for whom (the analyzer must never slow or
 * freeze a backup):
 * - mailgrab -> analyzer: PATH frames, then one FINISH. mailgrab never blocks
 *   writing them: they go through a bounded queue flushed with non-blocking
 *   writes (analyzer.c); a path that does not fit is dropped and counted, and
 *   the count is reported in one warning at the end. FINISH is the last frame.
 * - analyzer -> mailgrab: only after FINISH: STATS chunks, at most one
 *   SKIPPED (paths received but not analysed, because the analyzer was told
 *   to stop with SIGTERM), then STATS_END. mailgrab reads them only after
 *   sending FINISH, with a time limit once the run is cancelled.
 * - batch worker -> analyzer: one RESULT per message, preceded by its ROW
 *   when the per-message table is asked for; the analyzer sends the worker
 *   nothing (paths are inherited across fork). A stats job forwards the rows
 *   to `mailgrab stats` as they come, 64 KiB of frames at a time, then its
 *   STATS and STATS_END.
 * An end of stream where a frame was due means the peer died: the analyzer
 *   exits quietly; mailgrab reports the statistics as unavailable.
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
#define MG_IPC_HEADER 8

enum mg_ipc_type {
    MG_IPC_PATH = 1,      /* parent -> analyzer: a committed message file (no NUL) */
    MG_IPC_FINISH = 2,    /* parent -> analyzer: no more paths, send the counts */
    MG_IPC_STATS = 3,     /* -> parent: a chunk of encoded statistics */
    MG_IPC_STATS_END = 4, /* -> parent: the statistics are complete */
    MG_IPC_RESULT = 5,    /* worker -> batch: one message's encoded statistics */
    MG_IPC_SKIPPED = 6,   /* analyzer -> parent: u64 LE, paths received but not analysed */
    MG_IPC_ROW = 7,       /* worker -> batch, job -> stats: one message's row (msgrow.h) */
    MG_IPC_PATH_SENT = 8, /* parent -> analyzer: as PATH, in a mailbox with the \Sent role */
    MG_IPC_TYPE_MAX = 8,
};

/* The 8-byte header of a frame of type carrying len bytes (len <= MG_IPC_MAX),
 * for a caller that queues frames itself. */
void mg_ipc_header(unsigned char h[MG_IPC_HEADER], enum mg_ipc_type type, size_t len);

/* 0, or -1 on a write error (errno set). Retries on EINTR and short writes. */
int mg_ipc_send(int fd, enum mg_ipc_type type, const void *data, size_t len);

/* Queue a frame at the end of b (for one write of several frames). 0, or -1
 * when b is full or len is above MG_IPC_MAX. */
int mg_ipc_append(struct mg_buf *b, enum mg_ipc_type type, const void *data, size_t len);
/* Write the frames queued in b, like mg_ipc_send. */
int mg_ipc_send_frames(int fd, const struct mg_buf *frames);

/* 0 with a frame, 1 on a clean EOF before a frame, -1 on error or malformed frame. */
int mg_ipc_recv(int fd, enum mg_ipc_type *type, struct mg_buf *payload);

/*
 * Frames from one fd taken in large reads (a worker's row and result arrive
 * together): fewer system calls than mg_ipc_recv. Bytes wait in the reader,
 * so it is only for an fd read in a blocking loop, never one that is polled.
 * Owns its buffer (mg_ipc_reader_finish frees it); not the fd.
 */
struct mg_ipc_reader {
    int fd;
    struct mg_buf in; /* in.data[head..in.len) is unread */
    size_t head;
};
void mg_ipc_reader_init(struct mg_ipc_reader *r, int fd);
void mg_ipc_reader_finish(struct mg_ipc_reader *r);
/* Like mg_ipc_recv. */
int mg_ipc_read(struct mg_ipc_reader *r, enum mg_ipc_type *type, struct mg_buf *payload);

#endif
