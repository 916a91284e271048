#!/usr/bin/env python3
"""Statistics during a download, against a real Dovecot.

The corpus generator knows, by construction, each message's sender and the
UTC hour and weekday of its Date (or of its INTERNALDATE when the Date is
missing or unusable). This test downloads the corpus with --csv, checks that
CSV field by field against that truth, and checks that `mailgrab stats` on the
same directory afterwards produces exactly the same CSV.
"""

import csv
import io
import os
import shutil
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
