"""Seeded benchmark corpus, written straight into a Dovecot Maildir.

Sizes follow a mail-like mix: about 97% of the messages are 2-50 kB
(log-normal, median ~10 kB), the rest are 100 kB - 2 MB (log-uniform, 2%),
for a mean of roughly 27 kB.  Every file uses CRLF line endings, so the
size on disk is the size the server reports, and its name carries
,S=<size>,W=<size> so Dovecot needs not read a file to learn its size.
The same seed and count always give the same bytes.
"""

import base64
import math
import os
import random

SMALL_MIN, SMALL_MAX = 2_000, 50_000
LARGE_MIN, LARGE_MAX = 100_000, 2_000_000
LARGE_SHARE = 0.02

_WORDS = ("the of and to in is that for it as was with be by on not he this are "
          "or his from at which but have an they you were her she there been one "
          "all we their has would when if so no will more out up into do any your "
          "what some can only other new time could these two may then first also "
          "meeting invoice report quarter budget schedule review draft attached "
          "please thanks regards update project release server mailbox backup").split()


def sizes(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < LARGE_SHARE:
            s = math.exp(rng.uniform(math.log(LARGE_MIN), math.log(LARGE_MAX)))
        else:
            s = rng.lognormvariate(math.log(10_000), 0.75)
            s = min(max(s, SMALL_MIN), SMALL_MAX)
        out.append(int(s))
    return out


def _text_pool(rng, nbytes):
    lines, total = [], 0
    while total < nbytes:
        words, width = [], 0
        while width < 70:
            w = rng.choice(_WORDS)
            words.append(w)
            width += len(w) + 1
        line = " ".join(words) + "\r\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def _b64_pool(rng, nbytes):
    raw = rng.randbytes(nbytes * 3 // 4 + 64)
    b = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return b


def _slice_lines(pool, rng, length):
    """About length bytes of whole CRLF lines from pool."""
    start = pool.find(b"\r\n", rng.randrange(0, len(pool) - length - 200)) + 2
    end = pool.find(b"\r\n", start + max(length - 80, 0)) + 2
    return pool[start:end]


def fill(maildir, n, seed=1, prefix="mgbench"):
    """Writes n messages into maildir/cur; returns (count, total_bytes)."""
    rng = random.Random(seed * 7919 + 1)
    text = _text_pool(rng, 4 << 20)
    b64 = _b64_pool(rng, 5 << 20)
    cur = os.path.join(maildir, "cur")
    os.makedirs(cur, exist_ok=True)
    total = 0
    for i, size in enumerate(sizes(n, seed)):
        day = 1 + i % 28
        head = (f"Return-Path: <sender{i % 97}@example.org>\r\n"
                f"From: Sender {i % 97} <sender{i % 97}@example.org>\r\n"
                f"To: Alice <alice@example.com>\r\n"
                f"Subject: benchmark message {i} {rng.choice(_WORDS)} {rng.choice(_WORDS)}\r\n"
                f"Date: Mon, {day:02d} Sep 2025 {i % 24:02d}:{i % 60:02d}:00 +0000\r\n"
                f"Message-ID: <bench.{seed}.{i}@example.org>\r\n"
                "MIME-Version: 1.0\r\n").encode()
        if size >= LARGE_MIN:
            bnd = f"b{seed}x{i}"
            body_text = _slice_lines(text, rng, 2_000)
            att = _slice_lines(b64, rng, size - len(head) - len(body_text) - 400)
            msg = (head + f'Content-Type: multipart/mixed; boundary="{bnd}"\r\n\r\n'.encode()
                   + f"--{bnd}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n".encode()
                   + body_text
                   + f"--{bnd}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Transfer-Encoding: base64\r\n"
                     f'Content-Disposition: attachment; filename="file{i}.bin"\r\n\r\n'.encode()
                   + att + f"--{bnd}--\r\n".encode())
        else:
            body = _slice_lines(text, rng, max(size - len(head) - 60, 200))
            msg = head + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body
        name = f"{1700000000 + i}.{prefix}{i},S={len(msg)},W={len(msg)}:2,"
        with open(os.path.join(cur, name), "wb") as f:
            f.write(msg)
        total += len(msg)
    return n, total


if __name__ == "__main__":
    import sys
    s = sizes(int(sys.argv[1]) if len(sys.argv) > 1 else 5000, 1)
    print(f"n={len(s)} mean={sum(s)/len(s):.0f} min={min(s)} max={max(s)} "
          f"large={sum(1 for x in s if x >= LARGE_MIN)}")
