"""Statistics as data: the per-message table (--messages-csv), the JSON
aggregates (--json), the new aggregates (month, recipient, attachment types,
lists, largest) and the HTML report (--html), checked against the corpus
generator's truth, recorded while the messages were built.

The HTML report is rendered by headless Chromium (Debian's `chromium`, from
scripts/install-deps): a screenshot must not be blank, the DOM must hold the
charts, and no network request may be made. Requests are caught by a local
listener set as Chromium's proxy; a control page with one remote image shows
that the listener does see a request when a page makes one.
"""

import csv
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import unittest
import zlib

from mgtest import corpus
from mgtest.tools import binary

SEED = 11
COUNT = 240
ME = "me@sender.example"
SENT = [  # (To, Cc) of mail from ME, in a mailbox named "Outbox"
    ("Zed <zed@dest.example>, yan@dest.example", ""),
    ("zed@dest.example", "Xu <xu@other.example>, ZED@dest.example"),
    ("Team: wu@dest.example, vi@dest.example;", ""),
]


def eml(from_, to, cc="", subject="s", extra=""):
    lines = [f"From: {from_}", f"To: {to}"]
    if cc:
        lines.append(f"Cc: {cc}")
    lines += ["Date: Tue, 3 Mar 2020 10:00:00 +0000", f"Subject: {subject}"]
    if extra:
        lines.append(extra)
    lines += ["Content-Type: text/plain", "", "body text here", ""]
    return "\r\n".join(lines).encode()


def build(root):
    """The corpus Maildir INBOX, sent mail in Outbox/ (eml), and a message from
    someone else in a mailbox named Sent (a name alone makes nothing sent)."""
    truth = {}
    dest = os.path.join(root, "INBOX", "cur")
    os.makedirs(dest)
    for i in range(COUNT):
        msg, mtime, t = corpus.build_message(SEED, i)
        name = f"{mtime}.M{i}P{SEED}.mgtest:2,"
        path = os.path.join(dest, name)
        with open(path, "wb") as f:
            f.write(msg)
        os.utime(path, (mtime, mtime))
        t["size"] = len(msg)
        truth["INBOX/cur/" + name] = t
    os.makedirs(os.path.join(root, "Outbox"))
    for k, (to, cc) in enumerate(SENT):
        with open(os.path.join(root, "Outbox", f"{k + 1}.eml"), "wb") as f:
            f.write(eml(f"Me <{ME.upper()}>", to, cc, extra="List-Id: Dev list <dev.lists.example>"))
    # Gmail's labels and thread ids, as a Gmail backup records them
    with open(os.path.join(root, "labels.jsonl"), "w", encoding="utf-8") as f:
        for k, path in enumerate(sorted(truth)[:5]):
            f.write(json.dumps({"msgid": str(900 + k), "thrid": str(7000 + k // 2),
                                "labels": ["\\Inbox", f"Work/{k}"], "path": path,
                                "size": truth[path]["size"],
                                "internaldate": "2020-01-01T00:00:00Z", "flags": []}) + "\n")
            truth[path]["labels"] = ["\\Inbox", f"Work/{k}"]
            truth[path]["thrid"] = str(7000 + k // 2)
        f.write("not json\n")
    # a Gmail backup links a message into each of its label folders: the
    # copies under Work/ must count once, under the first name (INBOX/...)
    os.makedirs(os.path.join(root, "Work", "cur"))
    for path in sorted(truth)[:3]:
        os.link(os.path.join(root, path), os.path.join(root, "Work", "cur",
                                                       os.path.basename(path)))
    os.makedirs(os.path.join(root, "Sent"))
    with open(os.path.join(root, "Sent", "1.eml"), "wb") as f:
        f.write(eml("other@else.example", "nobody@dest.example"))
    return truth


def run(root, *args):
    argv = [binary("MAILGRAB"), "stats", root, "--tz", "UTC", "--me", ME, *args]
    p = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    if p.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(argv), p.returncode,
                                                   p.stderr.decode(errors="replace")))
    return p


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def long_csv(rows):
    assert rows[0] == ["stat", "key", "value"], rows[0]
    return [(s, k, int(v)) for s, k, v in rows[1:]]


def setUpModule():
    global TMP, ROOT, TRUTH
    TMP = tempfile.TemporaryDirectory(prefix="mailgrab-statsdata-")
    ROOT = os.path.join(TMP.name, "mail")
    os.makedirs(ROOT)
    TRUTH = build(ROOT)


def tearDownModule():
    TMP.cleanup()


class TestMessagesCsv(unittest.TestCase):
    def table(self, jobs):
        out = os.path.join(TMP.name, f"messages-{jobs}.csv")
        run(ROOT, "--jobs", str(jobs), "--messages-csv", out, "--csv",
            os.path.join(TMP.name, "long.csv"))
        rows = read_csv(out)
        self.assertEqual(rows[0][:17], [
            "path", "mailbox", "date_utc", "from_addr", "from_name", "from_domain",
            "to_count", "cc_count", "size", "attachments", "attachment_bytes", "subject",
            "message_id", "in_reply_to", "list_id", "labels", "thrid"])
        return [dict(zip(rows[0], r)) for r in rows[1:]]

    def test_rows_equal_truth_with_jobs_1_and_3(self):
        one = self.table(1)
        three = self.table(3)
        key = lambda r: r["path"]
        self.assertEqual(sorted(one, key=key), sorted(three, key=key))
        by_path = {r["path"]: r for r in one}
        self.assertEqual(len(one), COUNT + len(SENT) + 1)
        self.assertEqual(len(by_path), len(one), "a path appears twice")
        for path, t in TRUTH.items():
            r = by_path.get(path)
            self.assertIsNotNone(r, path)
            want_from = "" if t["sender"] == "(none)" else t["sender"]
            self.assertEqual(r["from_addr"], want_from, path)
            self.assertEqual(r["from_domain"], want_from.split("@", 1)[1] if want_from else "",
                             path)
            self.assertEqual(int(r["size"]), t["size"], path)
            self.assertEqual(r["date_utc"][11:13], "%02d" % t["hour"], path)
            if not t["fallback"]:  # seconds may be dropped by the truth (no-seconds style)
                self.assertEqual(r["date_utc"][:16], t["utc"][:16], path)
            self.assertEqual(r["date_fallback"], "1" if t["fallback"] else "0", path)
            self.assertEqual(int(r["to_count"]), t["to_count"], path)
            self.assertEqual(int(r["attachments"]), t["attachments"], path)
            self.assertEqual(int(r["attachment_bytes"]), t["attachment_bytes"], path)
            self.assertEqual(r["message_id"], t["message_id"], path)
            self.assertEqual(r["mailbox"], "INBOX", path)
            self.assertEqual(r["sent"], "0", path)
            self.assertEqual(json.loads(r["labels"]) if r["labels"] else None, t.get("labels"),
                             path)
            self.assertEqual(r["thrid"], t.get("thrid", ""), path)
        out = by_path["Outbox/2.eml"]
        self.assertEqual((out["mailbox"], out["sent"], out["to_count"], out["cc_count"],
                          out["list_id"], out["from_addr"], out["date_utc"]),
                         ("Outbox", "1", "1", "2", "dev.lists.example", ME,
                          "2020-03-03T10:00:00Z"))
        # the per-message table adds up to the long CSV
        t = {(s, k): v for s, k, v in long_csv(read_csv(os.path.join(TMP.name, "long.csv")))}
        self.assertEqual(sum(int(r["size"]) for r in one), t[("total", "bytes")])
        self.assertEqual(sum(int(r["attachment_bytes"]) for r in one),
                         t[("total", "attachment_bytes")])


class TestAggregates(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        c = os.path.join(TMP.name, "agg.csv")
        j = os.path.join(TMP.name, "agg.json")
        run(ROOT, "--csv", c, "--json", j)
        cls.rows = long_csv(read_csv(c))
        with open(j, encoding="utf-8") as f:
            cls.doc = json.load(f)
        cls.by = {}
        for s, k, v in cls.rows:
            cls.by.setdefault(s, {})[k] = v

    def test_json_equals_csv(self):
        self.assertEqual(self.doc["format"], "mailgrab-stats")
        flat = [(stat, r["key"], r["value"]) for stat, rs in self.doc["stats"].items()
                for r in rs]
        self.assertEqual(flat, self.rows)

    def test_totals_months_and_hours_add_up(self):
        total = self.by["total"]["messages"]
        self.assertEqual(total, COUNT + len(SENT) + 1)
        self.assertEqual(sum(self.by["month"].values()), total)
        self.assertEqual(sum(self.by["hour_weekday"].values()), total)
        self.assertEqual(len(self.by["hour_weekday"]), 168)
        months = [k for s, k, _ in self.rows if s == "month"]
        self.assertEqual(months, sorted(months))
        want = {}
        for t in TRUTH.values():
            want[t["utc"][:7]] = want.get(t["utc"][:7], 0) + 1
        want["2020-03"] = want.get("2020-03", 0) + len(SENT) + 1
        self.assertEqual(self.by["month"], want)

    def test_recipients_only_from_sent_mail(self):
        # To/Cc of the three messages from --me, each address once per message;
        # nothing from INBOX (To alice/bob) nor from the mailbox named Sent
        self.assertEqual(self.by["recipient"], {
            "zed@dest.example": 2, "yan@dest.example": 1, "xu@other.example": 1,
            "wu@dest.example": 1, "vi@dest.example": 1})
        self.assertEqual(self.by["total"]["sent"], len(SENT))

    def test_attachments_lists_and_largest(self):
        n = sum(t["attachments"] for t in TRUTH.values())
        b = sum(t["attachment_bytes"] for t in TRUTH.values())
        self.assertGreater(n, 0)
        self.assertEqual(self.by["attachment_type"], {"application/octet-stream": n})
        self.assertEqual(self.by["attachment_type_bytes"], {"application/octet-stream": b})
        self.assertEqual(self.by["total"]["attachments"], n)
        self.assertEqual(self.by["list"], {"dev.lists.example": len(SENT)})
        largest = [(k, v) for s, k, v in self.rows if s == "largest"]
        sizes = sorted(((t["size"], p) for p, t in TRUTH.items()), key=lambda x: (-x[0], x[1]))
        self.assertEqual(largest[:10], [(p, s) for s, p in sizes[:10]])


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("chromium is needed for the HTML report test: run scripts/install-deps")


# Chromium's own calls home (update checks, clock, sign-in), made whatever
# page is open and despite --disable-background-networking; the page's
# requests are the others.
BROWSER_OWN = re.compile(rb"^\S+ (https?://)?[a-z0-9.-]*\.(google\.com|googleapis\.com|gvt1\.com)[:/]")


class Listener:
    """A TCP listener that records every connection (Chromium's proxy)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(2)
            try:
                self.requests.append(c.recv(4096).split(b"\r\n", 1)[0])
            except OSError:
                self.requests.append(b"(connection)")
            c.close()

    def close(self):
        self.sock.close()


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB/RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[x] = (line[x] + pr) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


class TestHtmlReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.html = os.path.join(TMP.name, "report.html")
        run(ROOT, "--html", cls.html)
        cls.browser = chromium()

    def chromium(self, url, *args):
        listener = Listener()
        profile = tempfile.mkdtemp(prefix="chromium-", dir=TMP.name)
        argv = [self.browser, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--user-data-dir=" + profile,
                "--disable-extensions",
                "--disable-default-apps", "--disable-domain-reliability",
                "--disable-client-side-phishing-detection", "--no-pings",
                "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,"
                "MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
                f"--proxy-server=http://127.0.0.1:{listener.port}",
                "--virtual-time-budget=3000", *args, url]
        try:
            p = subprocess.run(argv, capture_output=True, timeout=90, check=False,
                               env=dict(os.environ, HOME=profile))
        finally:
            listener.close()
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-2000:])
        return p, [r for r in listener.requests if not BROWSER_OWN.search(r)]

    def test_control_page_request_is_seen(self):
        page = os.path.join(TMP.name, "control.html")
        with open(page, "w") as f:
            f.write('<!DOCTYPE html><p>x</p><img src="http://report-test.example/x.png">')
        _, requests = self.chromium("file://" + page, "--screenshot=" + page + ".png")
        self.assertTrue(any(b"report-test.example" in r for r in requests), requests)

    def test_renders_charts_without_network(self):
        shot = os.path.join(TMP.name, "report.png")
        _, requests = self.chromium("file://" + self.html, "--screenshot=" + shot,
                                    "--window-size=1000,1800", "--hide-scrollbars")
        self.assertEqual(requests, [])
        p, requests = self.chromium("file://" + self.html, "--dump-dom")
        self.assertEqual(requests, [])
        dom = p.stdout.decode("utf-8")
        for chart in ("month", "heatmap", "senders", "domains", "attachments"):
            self.assertIn(f'id="chart-{chart}"', dom)
        self.assertEqual(dom.count("<rect x="), 168)  # the heat map's cells
        self.assertIn("zed@dest.example", dom)  # recipients table
        self.assertNotIn("<script", dom)
        # not blank: many non-white pixels, and more than a few colours
        w, h, bpp, rows = png_pixels(shot)
        self.assertEqual((w, h), (1000, 1800))
        colours, ink = set(), 0
        for row in rows[::4]:
            for x in range(0, w * bpp, bpp * 4):
                px = row[x:x + 3]
                colours.add(px)
                ink += px != b"\xff\xff\xff"
        self.assertGreater(ink, (w // 4) * (h // 4) // 20, "screenshot is almost blank")
        self.assertGreater(len(colours), 20)


if __name__ == "__main__":
    unittest.main()
