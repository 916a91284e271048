#!/usr/bin/env python3
"""Gmail-native backups on a server with Gmail's extensions.

The Gmail-like server (hoodiecrow-imap with X-GM-EXT-1 and SPECIAL-USE,
mgtest.hoodiecrow) serves a Gmail-shaped account (mgtest.gmailacct): each
message in "[Gmail]/All Mail" and once more in each folder of its labels,
the same X-GM-MSGID everywhere; Spam and Trash hold other messages. With
--all-mailboxes:

- every message is downloaded once (from All Mail) and stored once: every
  listed folder is a directory holding exactly its messages, as hard links
  to that one file (one inode per message, eml and Maildir);
- labels.jsonl has one exact line per message (ids, labels decoded to
  UTF-8, path, size, INTERNALDATE, flags);
- the bytes from the server stay within 1.15 x the unique bytes (measured
  by mgproxy), where folder-by-folder downloads took 2.75 x;
- Spam and Trash are left out unless --spam-trash;
- new mail (in INBOX and All Mail, one msgid) is downloaded once;
- a label added or taken off elsewhere reaches labels.jsonl and the folder
  links with no body fetched;
- `mailgrab estimate --json` says what the next backup downloads: the same
  messages and bytes, Gmail or not;
- `mailgrab restore` of a Gmail backup into another Gmail-like account
  appends each message once, into All Mail, with its labels from
  labels.jsonl; nothing goes into the label folders a second time.
"""

import email
import email.policy
import email.utils
import json
import os
import re
import shutil
import tempfile
import unittest

from mgtest import tools
from mgtest.gmailacct import ALL_MAIL, SPAM, TRASH, GmailAccount
from mgtest.hoodiecrow import Hoodiecrow

workdir = None


def setUpModule():
    global workdir
    tools.binary("MAILGRAB")
    workdir = tempfile.mkdtemp(prefix="mgtest-gmail-")


def tearDownModule():
    if workdir and not os.environ.get("MG_KEEP_TMP"):
        shutil.rmtree(workdir, ignore_errors=True)


def dir_of(folder):
    return folder.replace("/", "%2F")


def stored_files(out, folder, fmt):
    """{uid: path} of the messages stored for folder."""
    d = os.path.join(out, dir_of(folder))
    got = {}
    if fmt == "eml":
        for name in os.listdir(d):
            m = re.fullmatch(r"(\d+)\.eml", name)
            if m:
                got[int(m.group(1))] = os.path.join(d, name)
    else:
        for sub in ("cur", "new"):
            for name in os.listdir(os.path.join(d, sub)):
                m = re.search(r",U=(\d+)", name)
                if m:
                    got[int(m.group(1))] = os.path.join(d, sub, name)
    return got


def labels_file(out):
    with open(os.path.join(out, "labels.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


class Base(unittest.TestCase):
    n = 40

    def account(self):
        return GmailAccount(n=self.n)

    def setUp(self):
        self.acct = self.account()
        self.srv = Hoodiecrow(folders=self.acct.folders(), root=tempfile.mkdtemp(dir=workdir))
        self.srv.start()
        self.out = tempfile.mkdtemp(prefix="out-", dir=workdir)
        self.pw = tools.write_secret(workdir, self.srv.password)

    def tearDown(self):
        self.srv.stop()

    def restart(self):
        """The server again, serving the account as it is now."""
        self.srv.folders = self.acct.folders()
        self.srv.restart()

    def estimate(self, *args):
        argv = [tools.binary("MAILGRAB"), "estimate", "--server", self.srv.host, "--port",
                str(self.srv.port), "--user", self.srv.user, "--cafile", self.srv.ca_file,
                "--password-file", self.pw, "--output", self.out, "--all-mailboxes", "--json",
                *args]
        res = tools.run(argv, timeout=60)
        self.assertEqual(res.returncode, 0, res.describe())
        return json.loads(res.stdout)

    def assertEstimated(self, est, res):
        """The estimate est equals what run res downloaded."""
        boxes = self.boxes(res)
        self.assertEqual(est["messages"], sum(b["new"] for b in boxes.values()), res.describe())
        got = sum(b["bytes"] for b in boxes.values())
        self.assertLessEqual(abs(est["bytes"] - got), 0.02 * max(got, 1), f"{est} {got}")

    def mailgrab(self, *args, port=None):
        summary = os.path.join(workdir, "summary.json")
        argv = [tools.binary("MAILGRAB"), "--server", self.srv.host, "--port",
                str(port or self.srv.port), "--user", self.srv.user, "--cafile",
                self.srv.ca_file, "--password-file", self.pw, "--output", self.out,
                "--all-mailboxes", "--summary-json", summary, *args]
        res = tools.run(argv, timeout=120)
        res.summary = None
        if os.path.exists(summary):
            with open(summary) as f:
                res.summary = json.load(f)
            os.unlink(summary)
        return res

    def boxes(self, res):
        """{mailbox name: its summary entry}"""
        return {b["name"]: b for a in res.summary["accounts"] for b in a["mailboxes"]}

    def assertBackup(self, res, fmt="eml", spam_trash=False):
        """Every folder holds exactly its messages, one inode per message,
        labels.jsonl exact."""
        self.assertEqual(res.returncode, 0, res.describe())
        inode_of = {}
        folders = [f for f in self.acct.folder_names() if f not in (SPAM, TRASH)]
        for folder in folders:
            files = stored_files(self.out, folder, fmt)
            want = dict(self.acct.listing(folder))
            self.assertEqual(sorted(files), sorted(want), f"{folder}: UIDs" + res.describe())
            for uid, m in want.items():
                with open(files[uid], "rb") as f:
                    self.assertEqual(f.read(), m.raw, f"{folder} UID {uid}" + res.describe())
                ino = os.stat(files[uid]).st_ino
                self.assertEqual(inode_of.setdefault(m.msgid, ino), ino,
                                 f"{folder} UID {uid} is a second copy" + res.describe())
        self.assertEqual(len(set(inode_of.values())), len(self.acct.messages))
        for folder in (SPAM, TRASH):
            present = os.path.isdir(os.path.join(self.out, dir_of(folder)))
            self.assertEqual(present, spam_trash, folder + res.describe())
            if spam_trash:
                got = stored_files(self.out, folder, fmt)
                self.assertEqual(len(got), len(self.acct.outside[folder]))
        lines = [x for x in labels_file(self.out) if int(x["msgid"]) in self.acct.messages]
        self.assertEqual(len(lines), len(self.acct.messages), res.describe())
        for x in lines:
            m = self.acct.messages[int(x["msgid"])]
            self.assertEqual(x["thrid"], str(m.thrid))
            self.assertEqual(sorted(x["labels"]), sorted(m.labels), x)
            self.assertEqual(x["size"], len(m.raw))
            self.assertEqual(x["internaldate"], m.internaldate.strftime("%Y-%m-%dT%H:%M:%SZ"))
            self.assertEqual(sorted(x["flags"]), sorted(m.flags), x)
            self.assertTrue(x["path"].startswith(dir_of(ALL_MAIL) + "/"), x)
            with open(os.path.join(self.out, x["path"]), "rb") as f:
                self.assertEqual(f.read(), m.raw, x)


class TestOnce(Base):
    def test_each_message_downloaded_and_stored_once(self):
        stats = os.path.join(workdir, "wire.json")
        with tools.Proxy(self.srv.host, self.srv.port, "--stats-file", stats) as proxy:
            res = self.mailgrab(port=proxy.port)
        self.assertBackup(res)
        with open(stats) as f:
            wire = json.load(f)
        unique = self.acct.unique_bytes()
        self.assertLessEqual(wire["down_bytes"], 1.15 * unique,
                             f"{wire} for {unique} unique bytes" + res.describe())
        fetched = sum(b["new"] for b in self.boxes(res).values())
        self.assertEqual(fetched, len(self.acct.messages), res.describe())
        # A second run fetches nothing and changes nothing.
        again = self.mailgrab()
        self.assertBackup(again)
        self.assertEqual(sum(b["new"] + b["linked"] for b in self.boxes(again).values()), 0,
                         again.describe())

    def test_maildir_and_spam_trash(self):
        res = self.mailgrab("--format", "maildir", "--spam-trash")
        self.assertBackup(res, fmt="maildir", spam_trash=True)
        # Maildir names carry each folder's own UID and the message's flags.
        for uid, path in stored_files(self.out, "INBOX", "maildir").items():
            m = dict(self.acct.listing("INBOX"))[uid]
            want = "".join(sorted({"\\Seen": "S", "\\Flagged": "F"}[f] for f in m.flags))
            self.assertTrue(path.endswith(":2," + want), path)


class TestChanges(Base):
    n = 24

    def test_new_mail_downloaded_once(self):
        self.assertBackup(self.mailgrab())
        m = self.acct.add(100, labels=["\\Inbox", "Work"])
        self.restart()
        res = self.mailgrab()
        self.assertBackup(res)
        boxes = self.boxes(res)
        self.assertEqual(sum(b["new"] for b in boxes.values()), 1, res.describe())
        self.assertEqual(boxes[ALL_MAIL]["new"], 1)
        self.assertEqual(boxes["INBOX"]["linked"], 1)
        self.assertEqual(boxes["Work"]["linked"], 1)
        self.assertEqual(boxes[ALL_MAIL]["bytes"], len(m.raw))

    def test_label_changes_fetch_no_body(self):
        self.assertBackup(self.mailgrab())
        moved = self.acct.messages[min(self.acct.messages) + 2]  # in INBOX, not in Work
        self.assertIn("\\Inbox", moved.labels)
        self.assertNotIn("Work", moved.labels)
        inbox_uid = moved.uids["INBOX"]
        self.acct.relabel(moved.msgid, add=["Work"], remove=["\\Inbox"])
        self.restart()
        res = self.mailgrab()
        self.assertBackup(res)
        boxes = self.boxes(res)
        self.assertEqual(sum(b["new"] for b in boxes.values()), 0, res.describe())
        self.assertEqual(sum(b["bytes"] for b in boxes.values()), 0, res.describe())
        self.assertEqual(boxes["Work"]["linked"], 1)
        self.assertEqual(boxes["INBOX"]["unlinked"], 1)
        self.assertNotIn(inbox_uid, stored_files(self.out, "INBOX", "eml"))
        # verify finds the backup whole: the removed link left the manifest too.
        res = tools.run([tools.binary("MAILGRAB"), "verify", "--offline", "--output", self.out],
                        timeout=60)
        self.assertEqual(res.returncode, 0, res.describe())


class TestEstimate(Base):
    n = 24

    def test_estimate_is_what_the_backup_downloads(self):
        est = self.estimate()
        self.assertEqual(est["messages"], len(self.acct.messages))
        self.assertEqual(est["bytes"], self.acct.unique_bytes())
        self.assertTrue(est["accounts"][0]["gmail"])
        # Gmail by its capabilities (the host is 127.0.0.1): Gmail's default
        # daily limit; days at a given one.
        self.assertEqual(est["accounts"][0]["daily_limit"], 2000 * 1000 * 1000)
        self.assertEqual(est["days"], 1)
        small = self.estimate("--daily-limit", "100K")
        self.assertEqual(small["days"], -(-est["bytes"] // 100000))
        res = self.mailgrab("-v")
        self.assertIn("Gmail (X-GM-EXT-1): daily limit", res.stderr, res.describe())
        self.assertBackup(res)
        self.assertEstimated(est, res)
        self.assertEqual(self.estimate()["messages"], 0)
        # New mail and a label change: one message to download.
        m = self.acct.add(200, labels=["\\Inbox", "\\Important"])
        self.acct.relabel(min(self.acct.messages), add=["Work"])
        self.restart()
        est = self.estimate()
        self.assertEqual((est["messages"], est["bytes"]), (1, len(m.raw)), est)
        res = self.mailgrab()
        self.assertBackup(res)
        self.assertEstimated(est, res)


class TestRestore(Base):
    n = 16

    def account(self):
        # IMAP cannot APPEND a message with a NUL byte in it (the corpus has
        # some): those are refused by any server, and named by restore.
        acct = GmailAccount(n=self.n)
        for msgid in [k for k, m in acct.messages.items() if b"\0" in m.raw]:
            del acct.messages[msgid]
        return acct

    def test_restore_gives_labels_not_copies(self):
        self.assertBackup(self.mailgrab())
        # An empty Gmail-like account: the same folders, no messages.
        empty = GmailAccount(n=0, spam=0, trash=0)
        dst = Hoodiecrow(folders=empty.folders(), root=tempfile.mkdtemp(dir=workdir))
        dst.start()
        try:
            argv = [tools.binary("MAILGRAB"), "restore", "--server", dst.host, "--port",
                    str(dst.port), "--user", dst.user, "--cafile", dst.ca_file,
                    "--password-file", self.pw, "-v", self.out]
            res = tools.run(argv, timeout=120)
            self.assertEqual(res.returncode, 0, res.describe())
            self.assertIn("each message once with its labels", res.stderr, res.describe())
            again = tools.run(argv, timeout=120)  # nothing twice
            self.assertEqual(again.returncode, 0, again.describe())
            # Back up the restored account: All Mail holds each message once,
            # with its labels; no folder got a copy.
            out2 = tempfile.mkdtemp(prefix="out2-", dir=workdir)
            res = tools.run([tools.binary("MAILGRAB"), "--server", dst.host, "--port",
                             str(dst.port), "--user", dst.user, "--cafile", dst.ca_file,
                             "--password-file", self.pw, "--output", out2, "--all-mailboxes"],
                            timeout=120)
            self.assertEqual(res.returncode, 0, res.describe())
        finally:
            dst.stop()
        got = {}
        for x in labels_file(out2):
            with open(os.path.join(out2, x["path"]), "rb") as f:
                body = f.read()
            # The test server labels an APPEND to All Mail with "\\All"
            # (Gmail lists no such label): left out.
            got[body] = sorted(l for l in x["labels"] if l != "\\All")
        want = {m.raw: sorted(m.labels) for m in self.acct.messages.values()}
        self.assertEqual(len(got), len(want))
        self.assertEqual(got, want)
        self.assertEqual(len(stored_files(out2, ALL_MAIL, "eml")), len(want))
        for folder in self.acct.folder_names():
            if folder not in (ALL_MAIL, SPAM, TRASH):
                self.assertEqual(stored_files(out2, folder, "eml"), {}, folder)


class TestNotGmail(Base):
    """The same folders on a server without Gmail's extensions: every folder
    is downloaded as it is, and estimate counts it so."""
    n = 12

    def setUp(self):
        self.acct = GmailAccount(n=self.n)
        self.srv = Hoodiecrow(folders=self.acct.folders(), root=tempfile.mkdtemp(dir=workdir),
                              plugins=["SPECIAL-USE", "ID", "ENABLE", "UIDPLUS"])
        self.srv.start()
        self.out = tempfile.mkdtemp(prefix="out-", dir=workdir)
        self.pw = tools.write_secret(workdir, self.srv.password)

    def test_folder_by_folder(self):
        est = self.estimate()
        copies = sum(len(self.acct.listing(f)) for f in self.acct.folder_names())
        copies += sum(len(v) for v in self.acct.outside.values())
        self.assertEqual(est["messages"], copies)
        self.assertFalse(est["accounts"][0]["gmail"])
        res = self.mailgrab()
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertEstimated(est, res)
        self.assertFalse(os.path.exists(os.path.join(self.out, "labels.jsonl")))


def sent_recipients(msgs):
    """{address: messages} of the To and Cc of msgs, each address once per
    message, as mailgrab's statistics count recipients of sent mail."""
    got = {}
    for m in msgs:
        head = email.message_from_bytes(m.raw, policy=email.policy.compat32)
        addrs = {a.lower() for _, a in email.utils.getaddresses(
            head.get_all("To", []) + head.get_all("Cc", [])) if "@" in a}
        for a in addrs:
            got[a] = got.get(a, 0) + 1
    return got


class TestSentStats(Base):
    def test_sent_mail_by_label_and_role(self):
        """Messages labelled \\Sent are sent mail, during the download (by
        their label) and in `mailgrab stats` afterwards (by the Sent Mail
        folder's role, whose links lead to the All Mail copies)."""
        during = os.path.join(workdir, "sent-during.json")
        res = self.mailgrab("--json", during, "--tz", "UTC")
        self.assertEqual(res.returncode, 0, res.describe())
        after = tools.run([tools.binary("MAILGRAB"), "stats", self.out, "--tz", "UTC",
                           "--json", "-"], timeout=60)
        self.assertEqual(after.returncode, 0, after.describe())
        sent = [m for m in self.acct.messages.values() if "\\Sent" in m.labels]
        self.assertGreater(len(sent), 0)
        want = (len(sent), sent_recipients(sent))
        with open(during, encoding="utf-8") as f:
            got_during = json.load(f)["stats"]
        got_after = json.loads(after.stdout)["stats"]
        for name, got in (("during", got_during), ("after", got_after)):
            total = {r["key"]: r["value"] for r in got["total"]}
            rcpt = {r["key"]: r["value"] for r in got.get("recipient", [])}
            self.assertEqual((total["sent"], rcpt), want, name)


if __name__ == "__main__":
    unittest.main()
