"""Integration test: `mailgrab stats --tz UTC --csv -` against known truth.

Generates a directory of .eml files (and a Maildir) in real-world shapes,
writes the truth as expected.json in the format of the test harness's corpus
generator, runs mailgrab, and compares the CSV field by field. Set
MG_STATS_CORPUS=DIR to check a corpus that already has an expected.json.
"""

import base64
import csv
import datetime
import io
import json
import os
import random
import subprocess
import tempfile
import unittest

MAILGRAB = os.environ.get("MAILGRAB", "mailgrab")
UTC = datetime.timezone.utc

# (format, offset-minutes) for dates the parser must understand
ZONES = [("+0000", 0), ("+0100", 60), ("-0500", -300), ("+0530", 330),
         ("EST", -300), ("EDT", -240), ("PST", -480), ("PDT", -420),
         ("GMT", 0), ("UT", 0), ("CST", -360), ("MDT", -360)]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
          "Oct", "Nov", "Dec"]


def date_header(rng, when):
    """A Date header value for UTC instant `when`, in a random real-world form."""
    zname, off = rng.choice(ZONES)
    local = when + datetime.timedelta(minutes=off)
    day = DAYS[local.weekday()]
    mon = MONTHS[local.month - 1]
    form = rng.randrange(6)
    if form == 0:
        return "%s, %02d %s %d %02d:%02d:%02d %s" % (
            day, local.day, mon, local.year, local.hour, local.minute, local.second, zname)
    if form == 1:  # 2-digit year, no day name
        return "%d %s %02d %02d:%02d:%02d %s" % (
            local.day, mon, local.year % 100, local.hour, local.minute, local.second, zname)
    if form == 2:  # trailing comment
        return "%s, %d %s %d %02d:%02d:%02d %s (zone comment)" % (
            day, local.day, mon, local.year, local.hour, local.minute, local.second, zname)
    if form == 3:  # folded
        return "%s, %d %s %d\r\n %02d:%02d:%02d %s" % (
            day, local.day, mon, local.year, local.hour, local.minute, local.second, zname)
    if form == 4:  # no seconds
        return "%s, %d %s %d %02d:%02d %s" % (
            day, local.day, mon, local.year, local.hour, local.minute, zname)
    return "%s,  %d %s %d %02d:%02d:%02d %s" % (  # extra blanks
        day, local.day, mon, local.year, local.hour, local.minute, local.second, zname)


def encoded_word(text, charset="utf-8"):
    return "=?%s?B?%s?=" % (charset, base64.b64encode(text.encode(charset)).decode())


SENDERS = [
    ("Alice Example", "alice@example.com"),
    ("Bob", "Bob@Example.ORG"),
    ("Jörg Müller", "joerg@example.de"),
    ("Иван", "ivan@example.ru"),
    ("", "noname@example.net"),
    ("Doe, Jane", "jane.doe@sub.example.com"),
]


def from_header(rng, name, addr):
    form = rng.randrange(5)
    if not name or form == 0:
        return addr
    if form == 1:
        return '"%s" <%s>' % (name, addr) if name.isascii() else "%s <%s>" % (
            encoded_word(name), addr)
    if form == 2:
        return "%s <%s>" % (encoded_word(name), addr)
    if form == 3:
        return "%s (%s)" % (addr, encoded_word(name))
    return "Team: %s <%s>;" % (encoded_word(name), addr)


def body_part(rng, words):
    text = " ".join(words)
    form = rng.randrange(4)
    if form == 0:
        return "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n" % text
    if form == 1:
        return ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
                "\r\n\r\n%s\r\n" % base64.encodebytes(text.encode()).decode().replace("\n", "\r\n"))
    if form == 2:
        return "Content-Type: text/html\r\n\r\n<html><body><p>%s</p></body></html>\r\n" % text
    return ("Content-Type: multipart/alternative; boundary=\"=_b%d\"\r\n\r\n"
            "--=_b%d\r\nContent-Type: text/plain\r\n\r\n%s\r\n"
            "--=_b%d\r\nContent-Type: text/html\r\n\r\n<b>%s</b>\r\n--=_b%d--\r\n" % (
                form, form, text, form, text, form))


def generate(root, count=300, seed=1234):
    """Write count messages under root; return the truth as a dict."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "Maildir", "cur"))
    os.makedirs(os.path.join(root, "Maildir", "new"))
    os.makedirs(os.path.join(root, "Maildir", "tmp"))
    os.makedirs(os.path.join(root, "box", "sub"))
    truth = {"total": {"messages": 0, "bytes": 0}, "sender": {}, "sender_domain": {},
             "hour_utc": [0] * 24, "weekday_utc": [0] * 7, "date_fallback": 0,
             "keyword": {}}
    base = datetime.datetime(2020, 1, 1, tzinfo=UTC)
    for i in range(count):
        when = base + datetime.timedelta(seconds=rng.randrange(3 * 365 * 86400))
        mtime = base + datetime.timedelta(seconds=rng.randrange(3 * 365 * 86400))
        headers = []
        if rng.random() < 0.08:
            key = "(none)"
            truth["sender_domain"]["(none)"] = truth["sender_domain"].get("(none)", 0) + 1
        else:
            name, addr = rng.choice(SENDERS)
            headers.append("From: " + from_header(rng, name, addr))
            key = addr.lower()
            dom = key.split("@", 1)[1]
            truth["sender_domain"][dom] = truth["sender_domain"].get(dom, 0) + 1
        truth["sender"][key] = truth["sender"].get(key, 0) + 1
        roll = rng.random()
        if roll < 0.1:
            effective = mtime  # no Date header
            truth["date_fallback"] += 1
        elif roll < 0.15:
            headers.append("Date: Mon, 4 Jan 2021 25:61:00 +0000")
            effective = mtime
            truth["date_fallback"] += 1
        else:
            headers.append("Date: " + date_header(rng, when))
            effective = when
        truth["hour_utc"][effective.hour] += 1
        truth["weekday_utc"][effective.weekday()] += 1
        marker = "marker%s" % "abcdefghij"[i % 7]
        headers.append("Subject: " + (encoded_word("report " + marker)
                                      if i % 2 else "Report " + marker.upper()))
        words = ["budget", "meeting", marker, "the", "and", "2021"]
        raw = "\r\n".join(headers) + "\r\nMIME-Version: 1.0\r\n" + body_part(rng, words)
        data = raw.encode("utf-8")
        where = rng.randrange(3)
        if where == 0:
            path = os.path.join(root, "box", "%04d.eml" % i)
        elif where == 1:
            path = os.path.join(root, "box", "sub", "%04d.eml" % i)
        else:
            path = os.path.join(root, "Maildir", rng.choice(["cur", "new"]),
                                "%d.%d.host:2,S" % (1600000000 + i, i))
        with open(path, "wb") as f:
            f.write(data)
        ts = mtime.timestamp()
        os.utime(path, (ts, ts))
        truth["total"]["messages"] += 1
        truth["total"]["bytes"] += len(data)
        for w in ("budget", "meeting", "report", marker):
            truth["keyword"][w] = truth["keyword"].get(w, 0) + 1
    # files that must be ignored
    for junk in (os.path.join(root, "box", ".hidden.eml"),
                 os.path.join(root, "Maildir", "tmp", "1.2.host"),
                 os.path.join(root, "box", "notes.txt")):
        with open(junk, "wb") as f:
            f.write(b"From: junk@example.com\r\n\r\nignored\r\n")
    with open(os.path.join(root, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
    return truth


def run_stats(root, *extra):
    proc = subprocess.run([MAILGRAB, "stats", root, "--tz", "UTC", "--csv", "-", *extra],
                          capture_output=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError("mailgrab stats exited %d: %s" % (
            proc.returncode, proc.stderr.decode(errors="replace")))
    rows = list(csv.reader(io.StringIO(proc.stdout.decode("utf-8"), newline="")))
    return rows, proc.stderr.decode(errors="replace")


def tables(rows):
    t = {}
    assert rows[0] == ["stat", "key", "value"], rows[0]
    for stat, key, value in rows[1:]:
        t.setdefault(stat, {})[key] = int(value)
    return t


class StatsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="mailgrab-stats-")
        external = os.environ.get("MG_STATS_CORPUS")
        if external:
            self.root = external
            with open(os.path.join(external, "expected.json"), encoding="utf-8") as f:
                self.truth = json.load(f)
        else:
            self.root = self.tmp.name
            self.truth = generate(self.root)

    def tearDown(self):
        self.tmp.cleanup()

    def check(self, t):
        truth = self.truth
        self.assertEqual(t["total"]["messages"], truth["total"]["messages"])
        self.assertEqual(t["total"]["bytes"], truth["total"]["bytes"])
        self.assertEqual(t["total"]["date_fallback"], truth["date_fallback"])
        self.assertEqual(t.get("sender", {}), truth["sender"])
        self.assertEqual(t.get("sender_domain", {}), truth["sender_domain"])
        self.assertEqual([t["hour"][str(h)] for h in range(24)], truth["hour_utc"])
        self.assertEqual([t["weekday"][d] for d in ("Mon", "Tue", "Wed", "Thu", "Fri",
                                                   "Sat", "Sun")], truth["weekday_utc"])
        for word, count in truth.get("keyword", {}).items():
            self.assertEqual(t["keyword"].get(word), count, word)

    def test_csv_matches_truth(self):
        rows, _ = run_stats(self.root, "--jobs", "1")
        t = tables(rows)
        self.check(t)
        if "keyword" in self.truth:
            for stop in ("the", "and", "2021"):
                self.assertNotIn(stop, t["keyword"])
        # deterministic order: value descending, then key
        senders = [(r[1], int(r[2])) for r in rows[1:] if r[0] == "sender"]
        self.assertEqual(senders, sorted(senders, key=lambda kv: (-kv[1], kv[0].encode())))

    def test_jobs_merge_identically(self):
        one, _ = run_stats(self.root, "--jobs", "1")
        three, _ = run_stats(self.root, "--jobs", "3")
        self.assertEqual(one, three)

    def test_stopwords_file_replaces_list(self):
        if "keyword" not in self.truth:
            self.skipTest("external corpus")
        path = os.path.join(self.root, ".stop")
        with open(path, "w", encoding="utf-8") as f:
            f.write("budget\n")
        rows, _ = run_stats(self.root, "--stopwords", path)
        t = tables(rows)
        self.assertNotIn("budget", t["keyword"])
        self.assertIn("the", t["keyword"])

    def test_poisoned_message_is_contained(self):
        if "keyword" not in self.truth:
            self.skipTest("external corpus")
        path = os.path.join(self.root, "box", "zz-poison.eml")
        with open(path, "wb") as f:
            f.write(b'From: p@example.com\r\nContent-Type: multipart/mixed; boundary="\\""'
                    b'\r\n\r\n--"\r\nContent-Type: text/plain\r\n\r\nx\r\n--"--\r\n')
        rows, _ = run_stats(self.root)
        t = tables(rows)
        self.assertEqual(t["total"]["messages"], self.truth["total"]["messages"] + 1)
        self.assertEqual(t["total"]["unparseable"], 1)
        self.assertEqual(t["sender"]["p@example.com"], 1)


if __name__ == "__main__":
    unittest.main()
