"""A straightforward Python stdlib equivalent of `mailgrab stats` (the baseline
for bench/stats_bench.sh): email parsing plus collections.Counter, one process."""

import collections
import email
import email.policy
import email.utils
import html
import os
import re
import sys
import time

WORD = re.compile(r"[^\W_]+(?:'[^\W\d_]+)*")
TAG = re.compile(r"<[^>]*>")


def files(root):
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")
                   and not (x == "tmp" and os.path.isdir(os.path.join(d, "cur")))]
        in_maildir = os.path.basename(d) in ("cur", "new")
        for n in names:
            if not n.startswith(".") and (in_maildir or n.endswith(".eml")):
                yield os.path.join(d, n)


def main():
    root = sys.argv[1]
    stop = set()
    if len(sys.argv) > 2:
        with open(sys.argv[2], encoding="utf-8") as f:
            stop = {w.strip().lower() for w in f if w.strip() and not w.startswith("#")}
    senders, domains, keywords = (collections.Counter() for _ in range(3))
    hours, wdays = [0] * 24, [0] * 7
    total = fallback = nbytes = 0
    for path in files(root):
        with open(path, "rb") as f:
            data = f.read()
        st = os.stat(path)
        total += 1
        nbytes += len(data)
        msg = email.message_from_bytes(data, policy=email.policy.default)
        try:
            addrs = email.utils.getaddresses([str(msg.get("From", ""))])
            addr = addrs[0][1].lower() if addrs and "@" in addrs[0][1] else "(none)"
        except Exception:
            addr = "(none)"
        senders[addr] += 1
        if addr != "(none)":
            domains[addr.rsplit("@", 1)[1]] += 1
        try:
            when = email.utils.parsedate_to_datetime(str(msg["Date"])).timestamp()
        except Exception:
            when = st.st_mtime
            fallback += 1
        tm = time.gmtime(when)
        hours[tm.tm_hour] += 1
        wdays[tm.tm_wday] += 1
        text = [str(msg.get("Subject", ""))]
        for part in msg.walk():
            if part.get_content_type() in ("text/plain", "text/html"):
                try:
                    body = part.get_content()
                except Exception:
                    continue
                if part.get_content_type() == "text/html":
                    body = html.unescape(TAG.sub(" ", body))
                text.append(body)
        words = {w.lower() for w in WORD.findall(" ".join(text))}
        keywords.update(w for w in words
                        if len(w) >= 3 and not w.isdigit() and w not in stop)
    print("messages", total, "bytes", nbytes, "fallback", fallback,
          "senders", len(senders), "keywords", len(keywords))


if __name__ == "__main__":
    main()
