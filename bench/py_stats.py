"""A straightforward Python stdlib equivalent of `mailgrab stats` (the baseline
for bench/stats_bench.sh): email parsing plus collections.Counter, one process.

py_stats.py ROOT [STOPWORDS] [--me ADDRESS] [--messages-csv FILE] [--json FILE]
does the same job as mailgrab stats with those options: senders, domains,
keywords, hours, weekdays, hour x weekday, months, recipients of sent mail,
attachment types and bytes, List-Id, the largest messages, a per-message
CSV row for every message and the aggregates as JSON."""

import collections
import csv
import heapq
import json
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
    args = sys.argv[1:]
    opts = {}
    for name in ("--me", "--messages-csv", "--json"):
        if name in args:
            i = args.index(name)
            opts[name] = args[i + 1]
            del args[i:i + 2]
    root = args[0]
    me = opts.get("--me", "").lower()
    stop = set()
    if len(args) > 1:
        with open(args[1], encoding="utf-8") as f:
            stop = {w.strip().lower() for w in f if w.strip() and not w.startswith("#")}
    senders, domains, keywords = (collections.Counter() for _ in range(3))
    months, recipients, att_count, att_bytes, lists, hwd = (collections.Counter()
                                                             for _ in range(6))
    largest = []
    hours, wdays = [0] * 24, [0] * 7
    total = fallback = nbytes = 0
    rows_file = open(opts.get("--messages-csv", os.devnull), "w", newline="", encoding="utf-8")
    rows = csv.writer(rows_file)
    rows.writerow(["path", "mailbox", "date_utc", "from_addr", "from_name", "from_domain",
                   "to_count", "cc_count", "size", "attachments", "attachment_bytes", "subject",
                   "message_id", "in_reply_to", "list_id"])
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
        hwd[(tm.tm_wday, tm.tm_hour)] += 1
        months[time.strftime("%Y-%m", tm)] += 1
        try:
            to = email.utils.getaddresses([str(x) for x in msg.get_all("To", [])])
            cc = email.utils.getaddresses([str(x) for x in msg.get_all("Cc", [])])
        except Exception:
            to, cc = [], []
        if me and addr == me:
            recipients.update({a.lower() for _, a in to + cc if "@" in a})
        list_id = str(msg.get("List-Id", "") or "")
        if "<" in list_id:
            list_id = list_id.split("<", 1)[1].split(">", 1)[0]
        if list_id:
            lists[list_id] += 1
        heapq.heappush(largest, (len(data), path))
        if len(largest) > 100:
            heapq.heappop(largest)
        n_att = n_att_bytes = 0
        text = [str(msg.get("Subject", ""))]
        for part in msg.walk():
            if part.is_multipart():
                continue
            if (part.get_content_disposition() == "attachment"
                    or part.get_content_type() not in ("text/plain", "text/html")):
                size = len(part.get_payload(decode=True) or b"")
                att_count[part.get_content_type()] += 1
                att_bytes[part.get_content_type()] += size
                n_att += 1
                n_att_bytes += size
                continue
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
        rel = os.path.relpath(path, root)
        rows.writerow([rel, os.path.basename(os.path.dirname(rel)),
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", tm), "" if addr == "(none)" else addr,
                       "", addr.rsplit("@", 1)[1] if "@" in addr else "", len(to), len(cc),
                       len(data), n_att, n_att_bytes, str(msg.get("Subject", "")),
                       str(msg.get("Message-ID", "")), str(msg.get("In-Reply-To", "")), list_id])
    rows_file.close()
    if "--json" in opts:
        with open(opts["--json"], "w", encoding="utf-8") as f:
            json.dump({"sender": senders, "sender_domain": domains, "keyword": keywords,
                       "hour": hours, "weekday": wdays,
                       "hour_weekday": {f"{d} {h}": v for (d, h), v in hwd.items()},
                       "month": months, "recipient": recipients, "attachment_type": att_count,
                       "attachment_type_bytes": att_bytes, "list": lists,
                       "largest": sorted(largest, reverse=True),
                       "total": {"messages": total, "bytes": nbytes, "date_fallback": fallback}},
                      f)
    print("messages", total, "bytes", nbytes, "fallback", fallback,
          "senders", len(senders), "keywords", len(keywords))


if __name__ == "__main__":
    main()
