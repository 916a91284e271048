#!/usr/bin/env python3
"""Incremental runs that cost what changed, on a real Dovecot.

A backup records, beside each mailbox's UIDVALIDITY, the mark of its last
complete run: every message below UIDNEXT stored, so many files. Then:

- a run with nothing new asks STATUS and nothing else: on a 10,000-message
  mailbox it receives at most 8 KB from the server (the full listing cost
  518 KB), and with --all-mailboxes no unchanged mailbox is opened;
- 10 new messages cost at most 1.1 x their bytes + 8 KB (UID FETCH from the
  mark on);
- a state file from an older mailgrab (no mark), a damaged mark, and files
  removed from the backup by hand each fall back to a full listing, and
  nothing is lost;
- flags changed on the server from another session reach a Maildir
  backup (CONDSTORE CHANGEDSINCE): exactly those files are renamed, no
  body is fetched; without CONDSTORE (the Gmail-like test server without
  it), every flag is asked for at most once a day.
"""

import json
import os
import re
import tempfile
import unittest

import imaplib
import ssl

from mgtest import corpus, reference, tools
from mgtest.hoodiecrow import Hoodiecrow
from mgtest.server import start_for_module, stop_for_module

server = workdir = config_home = None
N = 10000


def setUpModule():
    global server, workdir, config_home
    tools.binary("MAILGRAB")
    server, workdir, config_home = start_for_module(
        "mgtest-incr-", {"big": "big-pw", "many": "many-pw", "old": "old-pw",
                         "flags": "flags-pw"})


def tearDownModule():
    stop_for_module(server, workdir)


def message(i, tag="m"):
    return (f"From: sender{i % 37}@example.org\r\nTo: me@example.org\r\n"
            f"Subject: {tag} {i}\r\nDate: Mon, 1 Dec 2025 10:{i % 60:02d}:00 +0000\r\n"
            f"Message-ID: <{tag}{i}@example.org>\r\n\r\nbody {i} " + "x" * (i % 200) +
            "\r\n").encode()


def deliver(user, start, count, box=None, tag="m"):
    """count small messages straight into the user's Maildir (box: a
    Maildir++ folder), as new mail; returns their bytes."""
    root = server.maildir(user)
    if box:
        root = os.path.join(root, "." + box)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    total = 0
    for i in range(start, start + count):
        data = message(i, tag)
        total += len(data)
        path = os.path.join(root, "new", f"{1700000000 + i}.M{i}P1.{tag}")
        with open(path, "wb") as f:
            f.write(data)
        if os.geteuid() == 0:
            os.lchown(path, server.uid, server.gid)
    if os.geteuid() == 0:
        for dp, dirs, files in os.walk(server.maildir(user)):
            os.lchown(dp, server.uid, server.gid)
    return total


class Base(unittest.TestCase):
    user = None

    def setUp(self):
        self.out = tempfile.mkdtemp(prefix="out-", dir=workdir)
        self.pw = tools.write_secret(workdir, server.users[self.user])

    def run_mg(self, *args, proxy=True):
        """mailgrab through a byte-counting proxy: (result, bytes received)."""
        stats = os.path.join(workdir, "wire.json")
        if os.path.exists(stats):
            os.unlink(stats)
        argv = lambda port: tools.mailgrab_argv(server, user=self.user, port=port,
                                                password_file=self.pw, output=self.out,
                                                extra=("-v",) + args)
        if not proxy:
            return tools.run(argv(None), env_extra={"XDG_CONFIG_HOME": config_home}), None
        with tools.Proxy(server.host, server.imaps_port, "--stats-file", stats) as p:
            res = tools.run(argv(p.port), env_extra={"XDG_CONFIG_HOME": config_home})
        with open(stats) as f:
            return res, json.load(f)["down_bytes"]

    def stored(self, box="INBOX"):
        d = os.path.join(self.out, box)
        return sorted(n for n in os.listdir(d) if re.fullmatch(r"\d+\.eml", n))

    def assertExit(self, res, code=0):
        self.assertEqual(res.returncode, code, res.describe())


class TestBigMailbox(Base):
    user = "big"

    def test_no_change_and_new_mail(self):
        deliver(self.user, 0, N)
        res, _ = self.run_mg(proxy=False)
        self.assertExit(res)
        self.assertEqual(len(self.stored()), N)
        # Nothing new: STATUS only.
        res, down = self.run_mg()
        self.assertExit(res)
        self.assertLessEqual(down, 8192, res.describe())
        self.assertIn("nothing new since the last complete run (UIDNEXT", res.stderr)
        self.assertEqual(len(self.stored()), N)
        # Ten new messages: about their bytes.
        new_bytes = deliver(self.user, N, 10)
        res, down = self.run_mg()
        self.assertExit(res)
        self.assertLessEqual(down, 1.1 * new_bytes + 8192, res.describe())
        self.assertEqual(len(self.stored()), N + 10)
        # Files removed by hand: a full listing fetches exactly those again.
        gone = self.stored()[5:8]
        for name in gone:
            os.unlink(os.path.join(self.out, "INBOX", name))
        res, _ = self.run_mg()
        self.assertExit(res)
        self.assertEqual(len(self.stored()), N + 10)
        self.assertIn("INBOX: 3 new", res.stderr, res.describe())


class TestOldAndDamagedState(Base):
    user = "old"

    def state(self):
        return os.path.join(self.out, "INBOX", ".mailgrab-state")

    def test_fall_back_to_full_listing(self):
        deliver(self.user, 0, 300)
        res, _ = self.run_mg(proxy=False)
        self.assertExit(res)
        with open(self.state()) as f:
            text = f.read()
        self.assertRegex(text, r"^uidvalidity=\d+\nuidnext=301\nstored=300\nmodseq=\d+\nflags_at=\d+\n$")
        uv = text.splitlines()[0]
        for old in (uv + "\n", uv + "\nuidnext=zz\nstored=300\n", uv + "\nuidnext=301\n"):
            with open(self.state(), "w") as f:
                f.write(old)
            deliver(self.user, 1000 + len(self.stored()), 2, tag=f"o{len(old)}")
            res, down = self.run_mg()
            self.assertExit(res)
            self.assertGreater(down, 300 * 20, "not a full listing: " + res.describe())
            self.assertIn("INBOX: 2 new", res.stderr, res.describe())
            with open(self.state()) as f:
                self.assertIn("\nuidnext=", f.read())


class TestAllMailboxes(Base):
    user = "many"

    def test_unchanged_mailboxes_are_not_opened(self):
        deliver(self.user, 0, 50)
        for box in ("One", "Two", "Three"):
            deliver(self.user, 0, 20, box=box, tag=box)
        res, _ = self.run_mg("--all-mailboxes", proxy=False)
        self.assertExit(res)
        res, down = self.run_mg("--all-mailboxes")
        self.assertExit(res)
        self.assertLessEqual(down, 8192, res.describe())
        self.assertEqual(res.stderr.count("nothing new since the last complete run (UIDNEXT"), 4,
                         res.describe())
        deliver(self.user, 100, 3, box="Two", tag="Two")
        res, down = self.run_mg("--all-mailboxes")
        self.assertExit(res)
        self.assertEqual(res.stderr.count("nothing new since the last complete run (UIDNEXT"), 3,
                         res.describe())
        self.assertIn("Two: 3 new", res.stderr, res.describe())


class TestFlags(Base):
    user = "flags"

    def names(self):
        d = os.path.join(self.out, "INBOX", "cur")
        return {int(re.search(r",U=(\d+)", n).group(1)): n for n in os.listdir(d)}

    def test_flags_follow_the_server(self):
        deliver(self.user, 0, 300)
        res, _ = self.run_mg("--format", "maildir", proxy=False)
        self.assertExit(res)
        before = self.names()
        self.assertEqual(len(before), 300)
        conn = reference.login(server, self.user)
        try:
            conn.select("INBOX")
            conn.uid("STORE", "101:150", "+FLAGS", "(\\Flagged \\Seen)")
        finally:
            conn.logout()
        summary = os.path.join(workdir, "flags-summary.json")
        res, down = self.run_mg("--format", "maildir", "--summary-json", summary)
        self.assertExit(res)
        after = self.names()
        changed = {uid for uid in before if before[uid] != after[uid]}
        self.assertEqual(changed, set(range(101, 151)), res.describe())
        for uid in changed:
            self.assertTrue(after[uid].endswith(":2,FS"), after[uid])
            self.assertEqual(before[uid].split(":2,")[0], after[uid].split(":2,")[0])
        with open(summary) as f:
            box = json.load(f)["accounts"][0]["mailboxes"][0]
        self.assertEqual((box["reflagged"], box["new"], box["bytes"]), (50, 0, 0), box)
        self.assertLessEqual(down, 8192 + 50 * 80, res.describe())
        # Nothing changed since: nothing renamed, the mailbox not opened.
        res, _ = self.run_mg("--format", "maildir")
        self.assertExit(res)
        self.assertEqual(self.names(), after)
        self.assertIn("nothing new since the last complete run (UIDNEXT", res.stderr)


class TestFlagsWithoutCondstore(unittest.TestCase):
    def test_once_a_day(self):
        mail = [corpus.build_message(31, i)[0] for i in range(20)]
        with Hoodiecrow(folders={"INBOX": {"messages": mail}},
                        plugins=["ID", "ENABLE", "UIDPLUS"],
                        root=tempfile.mkdtemp(dir=workdir)) as srv:
            out = tempfile.mkdtemp(prefix="out-", dir=workdir)
            pw = tools.write_secret(workdir, srv.password)
            argv = [tools.binary("MAILGRAB"), "--server", srv.host, "--port", str(srv.port),
                    "--user", srv.user, "--cafile", srv.ca_file, "--password-file", pw,
                    "--output", out, "--format", "maildir", "-v"]
            res = tools.run(argv)
            self.assertEqual(res.returncode, 0, res.describe())
            cur = os.path.join(out, "INBOX", "cur")
            before = sorted(os.listdir(cur))
            conn = imaplib.IMAP4_SSL(srv.host, srv.port,
                                     ssl_context=ssl.create_default_context(cafile=srv.ca_file))
            conn.login(srv.user, srv.password)
            conn.select("INBOX")
            conn.uid("STORE", "3:5", "+FLAGS", "(\\Flagged)")
            conn.logout()
            res = tools.run(argv)  # asked less than a day ago: not yet
            self.assertEqual(res.returncode, 0, res.describe())
            self.assertEqual(sorted(os.listdir(cur)), before, res.describe())
            state = os.path.join(out, "INBOX", ".mailgrab-state")
            with open(state) as f:
                text = f.read()
            self.assertRegex(text, r"\nflags_at=[1-9]\d*\n")
            with open(state, "w") as f:
                f.write(re.sub(r"flags_at=\d+", "flags_at=1", text))
            res = tools.run(argv)  # a day later
            self.assertEqual(res.returncode, 0, res.describe())
            after = sorted(os.listdir(cur))
            changed = set(after) - set(before)
            self.assertEqual(len(changed), 3, res.describe())
            self.assertTrue(all(":2,F" in n for n in changed), changed)


if __name__ == "__main__":
    unittest.main()
