/*
 * manifest.h - what each stored message was when mailgrab stored it: the
 * per-mailbox manifest of SHA-256 sums that `mailgrab verify` checks.
 *
 * <mailbox dir>/.mailgrab-manifest, mode 0600, one line per message,
 * appended to (rewritten only to leave out messages whose files are removed
 * on purpose: a Gmail label taken off, mg_manifest_log_forget):
 *
 *     <uid> <size> <sha256, 64 lowercase hex> <origin> <name>\n
 *
 * origin 's' (streamed): the sum was computed while the message's bytes
 * arrived from the server and were written, and recorded once its batch was
 * durable under its final name. No second read. origin 'r' (read back): a
 * later backup run found the message stored without an entry (the run that
 * stored it was killed between naming its files and recording them, or the
 * backup predates manifests) and hashed the file once. name is the file's
 * name relative to the mailbox directory when it was recorded ("17.eml",
 * "cur/<...>,U=17:2,S"); the UID is the key, never the name, because a mail
 * client renames a Maildir file when its flags change. A later line for a UID
 * replaces an earlier one. Lines starting with '#' are comments.
 *
 * A crash in the middle of an append can leave a last line without its
 * newline: the reader reports it as torn, apart from damaged lines; the next
 * backup run cuts it off before appending (mg_manifest_log_open). Damaged
 * lines (anything else that is no entry) are reported by verify until the
 * next backup run, which writes the good entries to a fresh file, renames it
 * into place, and records the messages the damaged lines named from their
 * files.
 *
 * The reader is pure (no I/O), bounded (one line of MG_MANIFEST_LINE_MAX
 * bytes) and meant for files anyone could have edited; a reader belongs to
 * one thread. mg_manifest_log is the append side used by the store: its
 * appends are serialised by its own lock (the store's workers share it).
 * Memory: entries passed to callbacks are borrowed for the call only.
 */
#ifndef MAILGRAB_MANIFEST_H
#define MAILGRAB_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mailgrab/error.h"

#define MG_MANIFEST_FILE ".mailgrab-manifest"
#define MG_MANIFEST_LINE_MAX 512
#define MG_MANIFEST_NAME_MAX 255
#define MG_SHA256_LEN 32

struct mg_manifest_entry {
    uint32_t uid;
    uint64_t size;
    unsigned char sha256[MG_SHA256_LEN];
    char origin;      /* 's' streamed, 'r' read back from disk */
    const char *name; /* printable ASCII, no spaces; not NUL-terminated */
    size_t name_len;
};

/* One line (without its newline) -> e. Returns 0, or -1 if it is not a
 * well-formed entry. e->name points into line. */
int mg_manifest_parse_line(const char *line, size_t len, struct mg_manifest_entry *e);

/* e as one line with its newline, NUL-terminated. Returns its length, or -1
 * if it does not fit in cap or e->name is not a valid name. */
int mg_manifest_format_line(const struct mg_manifest_entry *e, char *buf, size_t cap);

typedef void (*mg_manifest_each_fn)(void *ctx, const struct mg_manifest_entry *e);

struct mg_manifest_reader {
    mg_manifest_each_fn each;
    void *ctx;
    char line[MG_MANIFEST_LINE_MAX];
    size_t len;                  /* bytes of the current line held */
    bool overlong;               /* the current line passed MG_MANIFEST_LINE_MAX */
    unsigned long lineno;        /* lines completed */
    unsigned long entries;       /* entries passed to each */
    unsigned long damaged;       /* complete lines that are no entry */
    unsigned long first_damaged; /* line number of the first, 0 if none */
    uint64_t fed;                /* bytes fed */
    uint64_t good_len;           /* bytes up to and including the last newline */
    bool torn;                   /* set by mg_manifest_reader_end */
};

void mg_manifest_reader_init(struct mg_manifest_reader *r, mg_manifest_each_fn each, void *ctx);
/* The next bytes of the file, in any pieces. */
void mg_manifest_reader_feed(struct mg_manifest_reader *r, const char *bytes, size_t len);
/* End of file: a last line without its newline is torn, not damaged. */
void mg_manifest_reader_end(struct mg_manifest_reader *r);

/* Read dirfd/MG_MANIFEST_FILE through r (then mg_manifest_reader_end). A
 * missing file reads as empty and sets *exists false. Symlinks are refused. */
enum mg_code mg_manifest_read(int dirfd, const char *dir, struct mg_manifest_reader *r,
                              bool *exists, struct mg_error *err);

/* SHA-256 computed as bytes arrive. Create/destroy by the owner; one thread. */
struct mg_sha256;
enum mg_code mg_sha256_create(struct mg_sha256 **out, struct mg_error *err);
void mg_sha256_destroy(struct mg_sha256 *h);
void mg_sha256_reset(struct mg_sha256 *h);
void mg_sha256_update(struct mg_sha256 *h, const void *bytes, size_t len);
void mg_sha256_final(struct mg_sha256 *h, unsigned char out[MG_SHA256_LEN]);

/* Size and SHA-256 of the regular file dirfd/name (not following a symlink). */
enum mg_code mg_manifest_hash_file(int dirfd, const char *name, uint64_t *size,
                                   unsigned char sha[MG_SHA256_LEN], struct mg_error *err);

/*
 * The append side, one per mailbox directory per run (the store's). Opening
 * reads the UIDs already recorded, cuts a torn last line, and replaces a
 * manifest that is not a plain file of its own (a symlink, or a hard link to
 * a file elsewhere is never written through: the old one is renamed away and
 * its entries are recorded again from the files).
 */
struct mg_manifest_log;
enum mg_code mg_manifest_log_open(int dirfd, const char *dir, struct mg_manifest_log **out,
                                  struct mg_error *err);
void mg_manifest_log_close(struct mg_manifest_log *l);
/* Was uid recorded when the log was opened? */
bool mg_manifest_log_has(const struct mg_manifest_log *l, uint32_t uid);
/* Append n entries and make them durable (one write, one fsync). After a
 * failure the log takes no more appends this run; the next run records the
 * missing entries from the files. Thread-safe. */
enum mg_code mg_manifest_log_append(struct mg_manifest_log *l, const struct mg_manifest_entry *v,
                                    size_t n, struct mg_error *err);
/* Leave the entries of uids (sorted in place) out: the manifest is written
 * anew and renamed into place, as for damaged lines. Only for messages
 * whose files are being removed on purpose (a Gmail label taken off). */
enum mg_code mg_manifest_log_forget(struct mg_manifest_log *l, int dirfd, uint32_t *uids, size_t n,
                                    struct mg_error *err);

#endif
