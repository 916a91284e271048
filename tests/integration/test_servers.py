#!/usr/bin/env python3
"""mailgrab against IMAP servers that are not Dovecot.

hoodiecrow (an in-memory server in node) lists mailbox names in raw UTF-8
inside quoted strings and answers BAD when such a name comes back quoted
(8-bit bytes are not allowed there); GNU imap4d lists them unquoted, and
hands out a new UIDVALIDITY in every session for an empty mbox. Each test
shows one of these on the server that has it:

- a raw UTF-8 name is sent back as a literal: that mailbox and the eight
  after it are backed up whole (the quoted name was answered BAD, and the
  BAD was taken for a broken connection that stopped the whole account);
- a mailbox the server refuses (NO or BAD to EXAMINE, or a reply that is
  not IMAP) costs that mailbox: one warning line each, the others whole,
  exit 1, the summary says why;
- when not one mailbox can be opened that way, the account failed (exit 8);
- a login refused with Gmail's "NO [ALERT] Too many simultaneous
  connections" once the credentials have logged in is a connection limit,
  not a bad password; the same refusal at the first login is exit 5;
- an empty mailbox whose UIDVALIDITY changes every session keeps one
  directory and gives no warning.
"""

import json
import os
import re
import shutil
import tempfile
import time
import unittest

from mgtest import corpus, tools
from mgtest.hoodiecrow import Hoodiecrow
from mgtest.imap4d import Imap4d

EXIT_OK, EXIT_PARTIAL, EXIT_AUTH, EXIT_MAILBOX, EXIT_PROTOCOL = 0, 1, 5, 6, 8

workdir = None


def setUpModule():
    global workdir
    tools.binary("MAILGRAB")
    workdir = tempfile.mkdtemp(prefix="mgtest-srv-")


def tearDownModule():
    if workdir and not os.environ.get("MG_KEEP_TMP"):
        shutil.rmtree(workdir, ignore_errors=True)


def messages(seed, count):
    return [corpus.build_message(seed, i)[0] for i in range(count)]


def stored(out, box):
    """{uid: bytes} of OUTPUT/box (eml layout)."""
    d = os.path.join(out, box)
    got = {}
    for name in os.listdir(d):
        m = re.fullmatch(r"(\d+)\.eml", name)
        if m:
            with open(os.path.join(d, name), "rb") as f:
                got[int(m.group(1))] = f.read()
    return got


def warnings(res):
    return [ln for ln in res.stderr.splitlines() if "warning:" in ln]


class Base(unittest.TestCase):
    def out_dir(self):
        return tempfile.mkdtemp(prefix="out-", dir=workdir)

    def mailgrab(self, srv, *args, output, password=None, summary=None):
        pw = tools.write_secret(workdir, password or srv.password)
        argv = [tools.binary("MAILGRAB"), "--server", srv.host, "--port", str(srv.port),
                "--user", srv.user, "--cafile", srv.ca_file, "--password-file", pw,
                "--output", output, *args]
        if summary:
            argv += ["--summary-json", summary]
        return tools.run(argv, timeout=120)

    def assertExit(self, res, code):
        self.assertEqual(res.returncode, code, res.describe())

    def assertWhole(self, out, box, msgs, res):
        """msgs: the server's BODY[] of UIDs 1, 2, ..."""
        want = {uid: m for uid, m in enumerate(msgs, 1)}
        got = stored(out, box)
        self.assertEqual(sorted(got), sorted(want), f"{box}: UIDs differ" + res.describe())
        for uid in want:
            self.assertEqual(got[uid], want[uid], f"{box}: UID {uid} differs" + res.describe())


class TestHoodiecrow(Base):
    """Raw UTF-8 names, quoted by the server; refused mailboxes."""

    AFTER = [f"Zeta {i}" for i in range(1, 9)]  # sorted after the UTF-8 names

    @classmethod
    def setUpClass(cls):
        cls.mail = {
            "INBOX": messages(91, 6),
            "Työ": messages(92, 4),
            "Entwürfe": messages(93, 3),
            "Entwürfe/Kuitit": messages(94, 2),
        }
        for i, name in enumerate(cls.AFTER):
            cls.mail[name] = messages(100 + i, 2)
        folders = {name: {"messages": msgs} for name, msgs in cls.mail.items()}
        # A folder whose ACL denies reading (Cyrus: NO [NOPERM]), and one the
        # server answers BAD, as hoodiecrow does for a name it cannot find.
        folders["Secret"] = {"messages": messages(95, 2),
                             "refuse": "NO [NOPERM] Permission denied"}
        folders["Broken"] = {"messages": messages(96, 2),
                             "refuse": "BAD Invalid mailbox name"}
        # And one whose reply is not IMAP at all: the session is out of step,
        # so it is reconnected and asked again, then that mailbox is given up.
        folders["Garbled"] = {"messages": messages(89, 2), "refuse": "GARBAGE (( not imap"}
        cls.srv = Hoodiecrow(folders=folders)
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_utf8_names_and_refused_mailboxes(self):
        out = self.out_dir()
        summary = os.path.join(workdir, "hc-summary.json")
        res = self.mailgrab(self.srv, "--all-mailboxes", output=out, summary=summary)
        self.assertExit(res, EXIT_PARTIAL)
        for name, msgs in self.mail.items():
            self.assertWhole(out, name.replace("/", "%2F"), msgs, res)
        # One warning line for each refused mailbox, nothing else.
        warned = warnings(res)
        self.assertEqual(len(warned), 3, res.describe())
        self.assertTrue(any("'Garbled'" in w for w in warned), res.describe())
        self.assertTrue(any("'Secret'" in w and "[NOPERM]" in w for w in warned), res.describe())
        self.assertTrue(any("'Broken'" in w for w in warned), res.describe())
        self.assertNotIn("error:", res.stderr, res.describe())
        self.assertFalse(os.path.exists(os.path.join(out, "Secret")), res.describe())

        with open(summary) as f:
            s = json.load(f)
        self.assertEqual((s["exit_code"], s["status"]), (1, "partial"), json.dumps(s))
        boxes = {b["name"]: b for b in s["accounts"][0]["mailboxes"]}
        refused = ["Secret", "Broken", "Garbled"]
        self.assertEqual(sorted(boxes), sorted(list(self.mail) + refused), json.dumps(s))
        for name in refused:
            self.assertEqual(boxes[name]["status"], "mailbox" if name != "Garbled" else "protocol",
                             json.dumps(s))
            self.assertIn(f"'{name}'", boxes[name]["error"], json.dumps(s))
        self.assertIn("[NOPERM] Permission denied", boxes["Secret"]["error"])
        for name, msgs in self.mail.items():
            self.assertEqual((boxes[name]["status"], boxes[name]["new"]), ("ok", len(msgs)),
                             json.dumps(s))

        # Again: nothing new, the same three warnings, still exit 1.
        res = self.mailgrab(self.srv, "--all-mailboxes", output=out, summary=summary)
        self.assertExit(res, EXIT_PARTIAL)
        self.assertEqual(len(warnings(res)), 3, res.describe())
        with open(summary) as f:
            s = json.load(f)
        self.assertEqual(sum(b["new"] for b in s["accounts"][0]["mailboxes"]), 0,
                         json.dumps(s))

    def test_named_utf8_mailbox(self):
        """--mailbox Työ: this server knows it as raw UTF-8, not modified
        UTF-7 (Ty&APY-), which it answers BAD."""
        out = self.out_dir()
        res = self.mailgrab(self.srv, "--mailbox", "Työ", "--mailbox", "Entwürfe/Kuitit",
                            output=out)
        self.assertExit(res, EXIT_OK)
        self.assertWhole(out, "Työ", self.mail["Työ"], res)
        self.assertWhole(out, "Entwürfe%2FKuitit", self.mail["Entwürfe/Kuitit"], res)

    def test_named_mailbox_refused_is_exit_6(self):
        """A mailbox the user named and cannot have keeps its own exit code;
        the next one is still backed up."""
        out = self.out_dir()
        res = self.mailgrab(self.srv, "--mailbox", "Secret", "--mailbox", "Zeta 1", output=out)
        self.assertExit(res, EXIT_MAILBOX)
        self.assertIn("[NOPERM]", res.stderr, res.describe())
        self.assertWhole(out, "Zeta 1", self.mail["Zeta 1"], res)


class TestNothingOpens(Base):
    """Every mailbox answered with something that is not IMAP: the server
    is broken, not one mailbox; that is the account's failure (exit 8)."""

    def test_exit_8(self):
        garbage = {"messages": messages(88, 1), "refuse": "GARBAGE (( not imap"}
        with Hoodiecrow(folders={"INBOX": garbage, "Other": garbage}) as srv:
            out = self.out_dir()
            summary = os.path.join(workdir, "none-summary.json")
            res = self.mailgrab(srv, "--all-mailboxes", output=out, summary=summary)
        self.assertExit(res, EXIT_PROTOCOL)
        self.assertEqual(len(warnings(res)), 2, res.describe())
        with open(summary) as f:
            s = json.load(f)
        self.assertEqual(s["accounts"][0]["status"], "protocol", json.dumps(s))
        self.assertIn("'INBOX'", s["accounts"][0]["error"], json.dumps(s))


class TestSessionLimit(Base):
    """Gmail answers a login past its connection limit with
    "NO [ALERT] Too many simultaneous connections": no RFC 5530 code."""

    @classmethod
    def setUpClass(cls):
        cls.mail = messages(97, 60)
        cls.srv = Hoodiecrow(folders={"INBOX": {"messages": cls.mail}}, max_sessions=2)
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_limit_after_a_login_is_not_a_bad_password(self):
        out = self.out_dir()
        res = self.mailgrab(self.srv, "--chunks", "4", "-v", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertWhole(out, "INBOX", self.mail, res)
        self.assertIn("Too many simultaneous connections", res.stderr,
                      "the limit was never hit" + res.describe())

    def test_refusal_at_the_first_login_is_exit_5(self):
        out = self.out_dir()
        t0 = time.monotonic()
        res = self.mailgrab(self.srv, output=out, password="wrong")
        self.assertExit(res, EXIT_AUTH)
        self.assertLess(time.monotonic() - t0, 20, "a refused login was retried" + res.describe())
        self.assertIn("check the user and password", res.stderr, res.describe())


class TestImap4d(Base):
    """Names listed as raw UTF-8 atoms; UIDVALIDITY of an empty mbox."""

    @classmethod
    def setUpClass(cls):
        cls.mail = {"INBOX": messages(98, 3), "Työ": messages(99, 2), "Zed": messages(90, 2)}
        boxes = dict(cls.mail)
        boxes["Empty"] = []
        # Mailboxes with messages carry the X-IMAPbase header imap4d writes
        # once a client opened them read-write: their UIDVALIDITY holds.
        cls.srv = Imap4d(mailboxes=boxes, uidvalidity={"INBOX": 11, "Työ": 12, "Zed": 13})
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_utf8_names_listed_unquoted(self):
        out = self.out_dir()
        res = self.mailgrab(self.srv, "--all-mailboxes", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertEqual(warnings(res), [], res.describe())
        for name in self.mail:
            self.assertWhole(out, name, self.srv.served(name), res)

    def test_empty_mailbox_with_a_new_uidvalidity_each_session(self):
        out = self.out_dir()
        summary = os.path.join(workdir, "i4-summary.json")
        seen = []
        for run in range(2):
            if run:
                time.sleep(1.1)  # imap4d's UIDVALIDITY for an empty mbox is the clock
            res = self.mailgrab(self.srv, "--mailbox", "Empty", "--mailbox", "INBOX",
                                output=out, summary=summary)
            self.assertExit(res, EXIT_OK)
            self.assertEqual(warnings(res), [], res.describe())
            with open(summary) as f:
                s = json.load(f)
            boxes = {b["name"]: b for b in s["accounts"][0]["mailboxes"]}
            seen.append(boxes["Empty"]["uidvalidity"])
            self.assertWhole(out, "INBOX", self.srv.served("INBOX"), res)
        self.assertNotEqual(seen[0], seen[1], "the server kept its UIDVALIDITY: no test")
        boxes = sorted(n for n in os.listdir(out) if not n.startswith("."))
        self.assertEqual(boxes, ["Empty", "INBOX"], res.describe())

if __name__ == "__main__":
    unittest.main(verbosity=2)
