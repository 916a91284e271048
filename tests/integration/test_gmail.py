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
- incremental runs (the server logs each command it is asked): with
  nothing changed no folder is opened and the run costs under 8 KB; a label
  change or new mail costs All Mail's new and changed messages (CONDSTORE
  CHANGEDSINCE) and a listing of only the folders of their labels, and the
  backup is then what a fresh full backup is; a missing or old mark, a new
  UIDVALIDITY, a damaged labels.jsonl, a file removed here, the daily
  full run and a server without CONDSTORE list every folder again, losing
  nothing; in a Maildir backup a flag changed elsewhere renames the
  message's files;
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
from mgtest.hoodiecrow import DEFAULT_PLUGINS, Hoodiecrow

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


def examined(commands):
    """The folders opened (EXAMINE or SELECT), by UTF-8 name."""
    # The test server logs its wire strings: UTF-8 bytes as latin-1.
    return {args[0].encode("latin-1").decode("utf-8") for cmd, args in commands
            if cmd in ("EXAMINE", "SELECT")}


def message_files(out):
    """{path relative to out: inode} of every stored message."""
    got = {}
    for d, _, names in os.walk(out):
        for name in names:
            if re.fullmatch(r"\d+\.eml", name) or ",U=" in name:
                path = os.path.join(d, name)
                got[os.path.relpath(path, out)] = os.stat(path).st_ino
    return got


class Base(unittest.TestCase):
    n = 40
    command_log = False
    plugins = None  # the Gmail-like server's (mgtest.hoodiecrow)

    def account(self):
        return GmailAccount(n=self.n)

    def setUp(self):
        self.acct = self.account()
        self.srv = Hoodiecrow(folders=self.acct.folders(), root=tempfile.mkdtemp(dir=workdir),
                              command_log=self.command_log, plugins=self.plugins)
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

    def mailgrab(self, *args, port=None, out=None):
        summary = os.path.join(workdir, "summary.json")
        argv = [tools.binary("MAILGRAB"), "--server", self.srv.host, "--port",
                str(port or self.srv.port), "--user", self.srv.user, "--cafile",
                self.srv.ca_file, "--password-file", self.pw, "--output", out or self.out,
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


class Incremental(Base):
    """What a run asks the server for (the server logs each command)."""
    command_log = True

    def folders(self):
        """Every folder a run without --spam-trash backs up."""
        return {f for f in self.acct.folder_names() if f not in (SPAM, TRASH)}

    def first(self, *args):
        res = self.mailgrab(*args)
        self.assertBackup(res, *(["maildir"] if "maildir" in args else []))
        self.assertEqual(examined(self.srv.commands()), self.folders())
        return res

    def assertNothingOpened(self, *args):
        stats = os.path.join(workdir, "wire.json")
        with tools.Proxy(self.srv.host, self.srv.port, "--stats-file", stats) as proxy:
            res = self.mailgrab("-v", *args, port=proxy.port)
        self.assertEqual(res.returncode, 0, res.describe())
        commands = self.srv.commands()
        self.assertEqual(examined(commands), set(), res.describe())
        with open(stats) as f:
            wire = json.load(f)
        self.assertLessEqual(wire["down_bytes"], 8 * 1024, f"{wire} {commands}")
        self.assertIn("no folder is opened", res.stderr)
        return res, commands

    def assertFull(self, why, *args):
        res = self.mailgrab("-v", *args)
        self.assertBackup(res)
        self.assertIn("every folder is listed: " + why, res.stderr, res.describe())
        self.assertEqual(examined(self.srv.commands()), self.folders(), res.describe())
        self.assertEqual(sum(b["new"] for b in self.boxes(res).values()), 0, res.describe())
        return res

    def assertSameAsFull(self):
        """The backup is what a fresh full backup of the account is."""
        fresh = tempfile.mkdtemp(prefix="fresh-", dir=workdir)
        self.assertEqual(self.mailgrab(out=fresh).returncode, 0)
        self.srv.commands()
        for folder in self.acct.folder_names():
            if folder in self.folders():
                self.assertEqual(stored_files(self.out, folder, "eml").keys(),
                                 stored_files(fresh, folder, "eml").keys(), folder)
        with open(os.path.join(self.out, "labels.jsonl"), "rb") as a, \
                open(os.path.join(fresh, "labels.jsonl"), "rb") as b:
            self.assertEqual(a.read(), b.read())


class TestIncremental(Incremental):
    """Once a complete run marked All Mail."""
    n = 24

    def test_nothing_changed_opens_no_folder(self):
        for fmt in ("eml", "maildir"):
            with self.subTest(fmt=fmt):
                self.out = tempfile.mkdtemp(prefix="out-", dir=workdir)
                self.first("--format", fmt)
                labels = os.path.join(self.out, "labels.jsonl")
                with open(labels, "rb") as f:
                    before = f.read()
                files = message_files(self.out)
                res, commands = self.assertNothingOpened("--format", fmt)
                self.assertEqual([c for c, _ in commands if c in ("FETCH", "UID FETCH")], [])
                self.assertEqual(sum(b["new"] + b["linked"] + b["unlinked"]
                                     for b in self.boxes(res).values()), 0)
                self.assertEqual(self.boxes(res)["INBOX"]["skipped"],
                                 len(self.acct.listing("INBOX")))
                with open(labels, "rb") as f:
                    self.assertEqual(f.read(), before)
                self.assertEqual(message_files(self.out), files)
        # Spam and Trash, not in All Mail: their own STATUS says they have
        # nothing new.
        self.assertEqual(self.mailgrab("--spam-trash", "--format", fmt).returncode, 0)
        self.assertEqual(examined(self.srv.commands()), {SPAM, TRASH})
        res, commands = self.assertNothingOpened("--spam-trash", "--format", fmt)
        self.assertEqual({a[0] for c, a in commands if c == "STATUS"}, {ALL_MAIL, SPAM, TRASH})

    def test_label_change_lists_only_its_folders(self):
        self.first()
        moved = self.acct.messages[min(self.acct.messages) + 6]
        was = set(moved.folders())
        self.assertIn("\\Sent", moved.labels)
        self.assertNotIn("Work/Projects", moved.labels)
        self.acct.relabel(moved.msgid, add=["Work/Projects"], remove=["\\Sent"])
        self.restart()
        res = self.mailgrab()
        self.assertBackup(res)
        commands = self.srv.commands()
        self.assertEqual(examined(commands), was | set(moved.folders()), res.describe())
        for cmd, args in commands:
            self.assertFalse(cmd == "UID FETCH" and "BODY" in " ".join(args), args)
        boxes = self.boxes(res)
        self.assertEqual(sum(b["new"] + b["bytes"] for b in boxes.values()), 0)
        self.assertEqual(boxes["Work/Projects"]["linked"], 1)
        self.assertEqual(boxes["[Gmail]/Sent Mail"]["unlinked"], 1)
        self.assertSameAsFull()
        self.assertNothingOpened()

    def test_new_mail_opens_all_mail_and_inbox(self):
        self.first()
        m = self.acct.add(300, labels=["\\Inbox"])
        self.restart()
        res = self.mailgrab()
        self.assertBackup(res)
        self.assertEqual(examined(self.srv.commands()), {ALL_MAIL, "INBOX"}, res.describe())
        boxes = self.boxes(res)
        self.assertEqual(sum(b["new"] for b in boxes.values()), 1)
        self.assertEqual(boxes[ALL_MAIL]["bytes"], len(m.raw))
        self.assertEqual(boxes["INBOX"]["linked"], 1)
        self.assertSameAsFull()
        self.assertNothingOpened()

    def test_flag_change_renames_maildir_links(self):
        self.first("--format", "maildir")
        m = self.acct.messages[min(self.acct.messages)]  # unseen, starred
        self.assertEqual(m.flags, ["\\Flagged"])
        self.acct.flag(m.msgid, add=["\\Seen"])
        self.restart()
        res = self.mailgrab("--format", "maildir")
        self.assertBackup(res, fmt="maildir")
        self.assertEqual(examined(self.srv.commands()), set(m.folders()), res.describe())
        boxes = self.boxes(res)
        self.assertEqual(sum(b["new"] + b["linked"] for b in boxes.values()), 0)
        for folder in m.folders():
            self.assertEqual(boxes[folder]["reflagged"], 1, folder)
            path = stored_files(self.out, folder, "maildir")[m.uids[folder]]
            self.assertTrue(path.endswith(":2,FS"), path)
        self.assertNothingOpened("--format", "maildir")

    def test_fallbacks_list_every_folder(self):
        self.first()
        labels = os.path.join(self.out, "labels.jsonl")
        state = os.path.join(self.out, dir_of(ALL_MAIL), ".mailgrab-state")
        with open(labels, "a") as f:
            f.write("not json\n")
        self.assertFull("labels.jsonl has lines not understood")
        self.assertNothingOpened()
        os.unlink(labels)
        self.assertFull("labels.jsonl is missing")
        self.assertNothingOpened()
        os.unlink(next(iter(stored_files(self.out, "INBOX", "eml").values())))
        self.assertFull("files were removed from a folder here")
        self.assertNothingOpened()
        alone = next(m for m in self.acct.messages.values() if not m.labels)
        os.unlink(stored_files(self.out, ALL_MAIL, "eml")[alone.uids[ALL_MAIL]])
        res = self.mailgrab("-v")  # fetched again: no other copy is left
        self.assertBackup(res)
        self.assertIn("files were removed from All Mail here", res.stderr)
        self.assertEqual(examined(self.srv.commands()), self.folders())
        self.assertNothingOpened()
        with open(state) as f:
            text = f.read()
        day = re.search(r"flags_at=(\d+)", text)
        with open(state, "w") as f:  # the last full run was 25 hours ago
            f.write(text.replace(day.group(0), "flags_at=%d" % (int(day.group(1)) - 90000)))
        self.assertFull("the daily full listing is due")
        self.assertNothingOpened()
        with open(state, "w") as f:  # as a version without the mark wrote it
            f.write(re.search(r"uidvalidity=\d+\n", text).group(0))
        self.assertFull("no complete earlier run of this version")
        self.assertNothingOpened()
        # A renumbered All Mail: its new UIDs are linked to the files stored
        # under the old ones, nothing is fetched again.
        self.acct.renumber(ALL_MAIL)
        self.restart()
        res = self.mailgrab("-v")
        self.assertEqual(res.returncode, 0, res.describe())
        self.assertIn("no earlier backup of All Mail under its UIDVALIDITY", res.stderr)
        self.assertEqual(examined(self.srv.commands()), self.folders())
        self.assertEqual(sum(b["new"] for b in self.boxes(res).values()), 0, res.describe())
        for x in labels_file(self.out):
            with open(os.path.join(self.out, x["path"]), "rb") as f:
                self.assertEqual(f.read(), self.acct.messages[int(x["msgid"])].raw, x)
        self.assertNothingOpened()


class TestWithoutCondstore(Incremental):
    """Gmail's extensions without CONDSTORE: label changes cannot be asked
    for, so every run lists every folder."""
    n = 12
    plugins = [p for p in DEFAULT_PLUGINS if p != "CONDSTORE"]

    def test_every_run_lists_every_folder(self):
        self.first()
        self.acct.relabel(min(self.acct.messages), add=["Work"])
        self.restart()
        self.assertFull("the server does not offer CONDSTORE")
        self.assertFull("the server does not offer CONDSTORE")


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
