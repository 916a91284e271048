#!/usr/bin/env python3
"""Statistics during a download, against a real Dovecot.

The corpus generator knows, by construction, each message's sender and the
UTC hour and weekday of its Date (or of its INTERNALDATE when the Date is
missing or unusable). This test downloads the corpus with --csv, checks that
CSV field by field against that truth, and checks that `mailgrab stats` on the
same directory afterwards produces exactly the same CSV.

Sent mail is known by the server's \\Sent role, not by a mailbox's name:
on a Dovecot whose "Posted" folder has the role and whose "Sent" folder has
not, the recipients counted are exactly those of Posted's messages, during
the download and from the stored backup (its .mailgrab-roles).
"""

import csv
import email.utils
import imaplib
import io
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest

from mgtest import corpus, tools
from mgtest.server import Dovecot

N_MESSAGES = int(os.environ.get("MG_TEST_MESSAGES", "400"))
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]

server = None
workdir = None
expected = None
password_file = None


def setUpModule():
    global server, workdir, expected, password_file
    tools.binary("MAILGRAB")
    workdir = tempfile.mkdtemp(prefix="mgtest-stats-")
    server = Dovecot()
    server.start()
    try:
        expected = corpus.generate(server.maildir(), N_MESSAGES,
                                   os.path.join(workdir, "expected.json"),
                                   big=1, big_size=1 << 20, server=server)
        password_file = tools.write_secret(workdir, server.password("alice"))
    except BaseException:
        server.stop()
        raise


def tearDownModule():
    if server is not None:
        server.stop()
    if workdir and not os.environ.get("MG_KEEP_TMP"):
        shutil.rmtree(workdir, ignore_errors=True)


def parse_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["stat", "key", "value"], rows[:1]
    table = {}
    for stat, key, value in rows[1:]:
        table.setdefault(stat, {})[key] = int(value)
    return table


class TestStatsPipeline(unittest.TestCase):
    maxDiff = 4000

    def test_download_csv_matches_truth_and_standalone(self):
        out = os.path.join(tempfile.mkdtemp(dir=workdir), "mail")
        during = os.path.join(workdir, "during.csv")
        argv = tools.mailgrab_argv(server, password_file=password_file, output=out,
                                   extra=["--chunks", "4", "--csv", during, "--tz", "UTC"])
        res = tools.run(argv, timeout=120)
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertEqual(res.stdout, "", "--csv FILE must leave stdout alone" + res.describe())
        with open(during, encoding="utf-8") as f:
            text_during = f.read()
        got = parse_csv(text_during)

        # Field by field against the generator's truth.
        self.assertEqual(got["total"]["messages"], expected["total"]["messages"])
        self.assertEqual(got["total"]["bytes"], expected["total"]["bytes"])
        self.assertEqual(got.get("sender", {}), expected["sender"])
        self.assertEqual(got.get("sender_domain", {}), expected["sender_domain"])
        self.assertEqual([got["hour"][f"{h:02d}" if f"{h:02d}" in got["hour"] else str(h)]
                          for h in range(24)], expected["hour_utc"])
        self.assertEqual([got["weekday"][d] for d in WEEKDAYS], expected["weekday_utc"])
        fallback = got["total"].get("date_fallback")
        if fallback is not None:
            self.assertEqual(fallback, expected["date_fallback"])

        # The same directory analysed afterwards gives the very same CSV.
        after = subprocess.run([tools.binary("MAILGRAB"), "stats", out, "--tz", "UTC",
                                "--csv", "-"], capture_output=True, text=True, timeout=120)
        self.assertEqual(after.returncode, 0, after.stderr)
        self.assertEqual(after.stdout, text_during)

    def test_download_tables_equal_standalone(self):
        """--messages-csv, --json and --html during a download: the rows and
        aggregates equal what `mailgrab stats` gives on the backup after."""
        out = os.path.join(tempfile.mkdtemp(dir=workdir), "mail")
        d = tempfile.mkdtemp(dir=workdir)
        rows, js, html = (os.path.join(d, n) for n in ("rows.csv", "stats.json", "r.html"))
        argv = tools.mailgrab_argv(server, password_file=password_file, output=out,
                                   extra=["--format", "maildir", "--messages-csv", rows,
                                          "--json", js, "--html", html, "--tz", "UTC"])
        res = tools.run(argv, timeout=120)
        self.assertEqual(res.returncode, 0, res.describe())
        after_rows = os.path.join(d, "after.csv")
        after = subprocess.run([tools.binary("MAILGRAB"), "stats", out, "--tz", "UTC",
                                "--messages-csv", after_rows, "--json", "-"],
                               capture_output=True, text=True, timeout=120)
        self.assertEqual(after.returncode, 0, after.stderr)
        with open(js, encoding="utf-8") as f:
            self.assertEqual(f.read(), after.stdout)

        def table(path):
            with open(path, encoding="utf-8", newline="") as f:
                r = list(csv.reader(f))
            return r[0], sorted(r[1:])
        head, during_rows = table(rows)
        self.assertEqual(table(after_rows), (head, during_rows))
        self.assertEqual(len(during_rows), expected["total"]["messages"])
        self.assertEqual(sum(int(r[head.index("size")]) for r in during_rows),
                         expected["total"]["bytes"])
        self.assertEqual({r[head.index("mailbox")] for r in during_rows}, {"INBOX"})
        self.assertTrue(all(r[0].startswith("INBOX/cur/") for r in during_rows), during_rows[0])
        with open(html, encoding="utf-8") as f:
            self.assertIn('id="chart-month"', f.read())


SENT_ROLE_CONF = """\
namespace inbox {
  inbox = yes
  mailbox Posted {
    special_use = \\Sent
  }
}
"""


def note(sender, to, cc=()):
    head = [f"From: {sender}", f"To: {', '.join(to)}"]
    if cc:
        head.append(f"Cc: {', '.join(cc)}")
    head += ["Subject: roles", "Date: Tue, 03 Mar 2020 10:00:00 +0000",
             f"Message-ID: {email.utils.make_msgid(domain='roles.example')}"]
    return ("\r\n".join(head) + "\r\n\r\nbody\r\n").encode()


class TestSentByRole(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.srv = Dovecot(extra_conf=SENT_ROLE_CONF)
        cls.srv.start()
        conn = imaplib.IMAP4_SSL(cls.srv.host, cls.srv.imaps_port,
                                 ssl_context=ssl.create_default_context(cafile=cls.srv.ca_file))
        try:
            conn.login("alice", cls.srv.password("alice"))
            for box, msgs in (
                    ("Posted", [note("alice@home.example", ["zed@dest.example"]),
                                note("alias@elsewhere.example", ["zed@dest.example",
                                                                 "yan@dest.example"],
                                     ["xu@other.example"])]),
                    # A folder named Sent without the role: not sent mail.
                    ("Sent", [note("alice@home.example", ["decoy@dest.example"])]),
                    ("INBOX", [note("bob@dest.example", ["alice@home.example"])])):
                if box != "INBOX":
                    typ, _ = conn.create(box)
                    assert typ == "OK", box
                for m in msgs:
                    typ, _ = conn.append(box, None, None, m)
                    assert typ == "OK", box
        finally:
            conn.logout()
        cls.pw = tools.write_secret(workdir, cls.srv.password("alice"))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    want = {"zed@dest.example": 2, "yan@dest.example": 1, "xu@other.example": 1}

    def recipients(self, text):
        s = json.loads(text)["stats"]
        total = {r["key"]: r["value"] for r in s["total"]}
        return total["sent"], {r["key"]: r["value"] for r in s.get("recipient", [])}

    def test_sent_role_during_download_and_after(self):
        for fmt in ("eml", "maildir"):
            with self.subTest(fmt=fmt):
                out = os.path.join(tempfile.mkdtemp(dir=workdir), "mail")
                during = os.path.join(workdir, f"roles-{fmt}.json")
                argv = tools.mailgrab_argv(self.srv, password_file=self.pw, output=out,
                                           extra=["--all-mailboxes", "--format", fmt,
                                                  "--json", during, "--tz", "UTC"])
                res = tools.run(argv, timeout=120)
                self.assertEqual(res.returncode, 0, res.describe())
                with open(during, encoding="utf-8") as f:
                    self.assertEqual(self.recipients(f.read()), (2, self.want))
                with open(os.path.join(out, ".mailgrab-roles"), encoding="utf-8") as f:
                    self.assertEqual(f.read(), "\\Sent\tPosted\n")
                after = subprocess.run([tools.binary("MAILGRAB"), "stats", out, "--tz", "UTC",
                                        "--json", "-"], capture_output=True, text=True,
                                       timeout=120)
                self.assertEqual(after.returncode, 0, after.stderr)
                self.assertEqual(self.recipients(after.stdout), (2, self.want))


if __name__ == "__main__":
    unittest.main(verbosity=2)
