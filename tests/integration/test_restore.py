#!/usr/bin/env python3
"""mailgrab restore against real Dovecot servers: a multi-folder backup (INBOX,
nested folders, a non-ASCII name, flags) restored into an empty second server
and backed up again is the same, bytes, flags and INTERNALDATEs, from eml and
from Maildir; a second restore appends nothing; kill -9 at random moments then
a clean run leaves every message exactly once, and SIGTERM stops a run with
130; a server refusing one message by size (Dovecot's quota_max_mail_size)
costs that message only (named, exit 1); a connection cut mid-APPEND costs
nothing; UIDVALIDITY generations are merged, shared messages restored once;
the journal marks an APPEND and is synced before the APPEND is sent.

Server A holds the source account; server B, the targets (one user per test).
"""

import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from mgtest import corpus, tools
from mgtest.checks import Checks
from mgtest.server import Dovecot, start_for_module, stop_for_module
from test_backup import append, imap, ok, quoted, read_box

EXIT_OK, EXIT_PARTIAL = 0, 1
TARGETS = {"rt-eml": "pw1", "rt-md": "pw2", "twice": "pw3", "killer": "pw4",
           "cut": "pw5", "big": "pw6", "gen": "pw7", "term": "pw8", "durable": "pw9"}
FOLDERS = ["INBOX", "Work", "Work.Projects", "Työ ünïcode"]

srv_a = srv_b = srv_q = None
workdir = config_home = None
backups = {}  # format -> backup directory of the source account


def setUpModule():
    global srv_a, srv_b, workdir, config_home
    tools.binary("MAILGRAB")
    srv_a, workdir, config_home = start_for_module("mgtest-rs-",
                                                   {"src": "src-pw", "gensrc": "gen-pw"})
    srv_b = Dovecot()
    srv_b.users.update(TARGETS)
    srv_b.start()
    fill_source()
    for fmt in ("eml", "maildir"):
        out = os.path.join(workdir, "src-" + fmt)
        res = backup(srv_a, "src", out, fmt)
        if res.returncode != 0:
            raise RuntimeError("source backup failed" + res.describe())
        backups[fmt] = out


def tearDownModule():
    stop_for_module(srv_a, workdir, srv_b, srv_q)


def fill_source():
    corpus.generate(srv_a.maildir("src"), 40, os.path.join(workdir, "src.json"), seed=91,
                    big=1, big_size=400 << 10, server=srv_a)
    for k, name in enumerate(FOLDERS[1:]):
        append(srv_a, "src", name, seed=92 + k, count=12)
    conn = imap(srv_a, "src")
    try:
        for name, sets in (("INBOX", [("1,4", "\\Seen \\Flagged"), ("2", "\\Answered \\Draft")]),
                           ("Work.Projects", [("3:5", "\\Seen"), ("6", "\\Deleted")]),
                           ("Työ ünïcode", [("1", "\\Flagged")])):
            ok(conn.select(quoted(name)), "SELECT")
            for uids, flags in sets:
                ok(conn.uid("STORE", uids, "+FLAGS.SILENT", f"({flags})"), "STORE")
    finally:
        conn.logout()


def secret(srv, user):
    return tools.write_secret(workdir, srv.password(user))


def backup(srv, user, out, fmt="maildir"):
    argv = tools.mailgrab_argv(srv, user=user, password_file=secret(srv, user), output=out,
                               extra=("--all-mailboxes", "--format", fmt))
    return tools.run(argv, env_extra={"XDG_CONFIG_HOME": config_home}, timeout=120)


def restore_argv(srv, user, src, *extra, port=None):
    argv = tools.mailgrab_argv(srv, user=user, password_file=secret(srv, user), port=port)
    return argv[:1] + ["restore"] + argv[1:] + list(extra) + [src]


def restore(srv, user, src, *extra, port=None, timeout=120):
    return tools.run(restore_argv(srv, user, src, *extra, port=port),
                     env_extra={"XDG_CONFIG_HOME": config_home}, timeout=timeout)


def contents(out, flags=True):
    """{folder dir: Counter((sha256, flags, mtime))} of a Maildir backup
    (flags "" unless flags)."""
    got = {}
    for d in sorted(os.listdir(out)):
        if d.startswith(".") or not os.path.isdir(os.path.join(out, d)):
            continue
        box = os.path.join(out, d)
        msgs, dups, names = read_box(box, "maildir")
        c = collections.Counter()
        for uid, data in msgs.items():
            n = names[uid]
            sub = "cur" if os.path.exists(os.path.join(box, "cur", n)) else "new"
            mtime = int(os.stat(os.path.join(box, sub, n)).st_mtime)
            fl = n.rsplit(":2,", 1)[1] if flags else ""
            c[(hashlib.sha256(data).hexdigest(), fl, mtime)] += 1
        got[d] = c
    return got


def server_counts(srv, user):
    """{folder: Counter(sha256)} of what the server holds."""
    out = {}
    for name in FOLDERS:
        conn = imap(srv, user)
        try:
            typ, data = conn.select(quoted(name), readonly=True)
            if typ != "OK":
                continue
            c = collections.Counter()
            if int(data[0]) > 0:
                for item in ok(conn.uid("FETCH", "1:*", "(BODY.PEEK[])"), "FETCH"):
                    if isinstance(item, tuple):
                        c[hashlib.sha256(item[1]).hexdigest()] += 1
            out[name] = c
        finally:
            conn.logout()
    return out


class Base(unittest.TestCase, Checks):
    maxDiff = 4000

    def assertSameAsSource(self, user, res, flags=True):
        """A backup of user on server B is the source's: the same bytes per
        folder with the same INTERNALDATEs, and the same flags (an eml
        backup keeps none: flags=False)."""
        out = os.path.join(tempfile.mkdtemp(dir=workdir), "again")
        b = backup(srv_b, user, out)
        self.assertExit(b, EXIT_OK)
        want = contents(backups["maildir"], flags)
        got = contents(out, flags)
        self.assertEqual(sorted(got), sorted(want), "other folders" + res.describe())
        for d in want:
            self.assertEqual(got[d], want[d],
                             f"{d}: bytes, flags or INTERNALDATEs differ" + res.describe())

    def assertOnceEach(self, user, res):
        want = server_counts(srv_a, "src")
        got = server_counts(srv_b, user)
        for name in FOLDERS:
            self.assertEqual(got.get(name), want[name],
                             f"{name}: not every message exactly once" + res.describe())


class TestRoundTrip(Base):
    def round_trip(self, fmt, user):
        summary = os.path.join(workdir, f"summary-{user}.json")
        res = restore(srv_b, user, backups[fmt], "--chunks", "3", "--summary-json", summary)
        self.assertExit(res, EXIT_OK)
        self.assertEqual((res.stdout, res.stderr), ("", ""), "not silent" + res.describe())
        self.assertSameAsSource(user, res, flags=fmt == "maildir")
        with open(summary) as f:
            s = json.load(f)
        self.assertEqual(s["exit_code"], 0, json.dumps(s))
        n = sum(len(c) for c in server_counts(srv_a, "src").values())
        self.assertEqual(sum(b["new"] for a in s["accounts"] for b in a["mailboxes"]), n,
                         json.dumps(s))
        return summary

    def test_from_eml(self):
        self.round_trip("eml", "rt-eml")

    def test_from_maildir(self):
        self.round_trip("maildir", "rt-md")


class TestTwice(Base):
    def test_second_restore_appends_nothing(self):
        res = restore(srv_b, "twice", backups["eml"])
        self.assertExit(res, EXIT_OK)
        before = server_counts(srv_b, "twice")
        summary = os.path.join(workdir, "summary-twice.json")
        res = restore(srv_b, "twice", backups["eml"], "--summary-json", summary)
        self.assertExit(res, EXIT_OK)
        self.assertEqual(server_counts(srv_b, "twice"), before, "the second run appended")
        with open(summary) as f:
            s = json.load(f)
        boxes = [b for a in s["accounts"] for b in a["mailboxes"]]
        self.assertEqual(sum(b["new"] for b in boxes), 0, json.dumps(s))
        self.assertEqual(sum(b["skipped"] for b in boxes), sum(b["listed"] for b in boxes))
        self.assertOnceEach("twice", res)


class TestKill(Base):
    def test_kill_9_then_clean_run(self):
        seed = int(os.environ.get("MG_RESTORE_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        env = dict(os.environ, XDG_CONFIG_HOME=config_home)
        env.pop("MAILGRAB_PASSWORD", None)
        killed = 0
        for i in range(8):
            p = subprocess.Popen(restore_argv(srv_b, "killer", backups["maildir"], "--chunks", "4"),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env, start_new_session=True)
            # The first kill comes before a whole restore can be over (it is
            # done in a fraction of a second here), the others anywhere.
            time.sleep(rng.uniform(0.005, 0.03) if i == 0 else rng.uniform(0.02, 0.5))
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                killed += 1
            p.wait()
        res = restore(srv_b, "killer", backups["maildir"])
        res.stderr += f"\n[{killed} runs killed; MG_RESTORE_SEED={seed} replays them]"
        self.assertExit(res, EXIT_OK)
        self.assertGreater(killed, 0, f"no run was killed (seed {seed})")
        self.assertOnceEach("killer", res)
        self.assertSameAsSource("killer", res)

    def test_sigterm_mid_restore(self):
        # 80 ms RTT so that the run is still appending when the signal
        # comes; it stops within 3 s with 130, and the next run completes.
        env = dict(os.environ, XDG_CONFIG_HOME=config_home)
        env.pop("MAILGRAB_PASSWORD", None)
        summary = os.path.join(workdir, "summary-term.json")
        with tools.Proxy(srv_b.host, srv_b.imaps_port, "--delay-ms", "40") as px:
            p = subprocess.Popen(restore_argv(srv_b, "term", backups["maildir"], "--chunks", "1",
                                              "--summary-json", summary, port=px.port),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=env, start_new_session=True)
            time.sleep(0.5)
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=30)
            took = time.monotonic() - t0
        self.assertEqual(p.returncode, 130, err.decode(errors="replace"))
        self.assertLess(took, 3.0, "SIGTERM took too long to stop the restore")
        with open(summary) as f:
            self.assertEqual(json.load(f)["exit_code"], 130)
        res = restore(srv_b, "term", backups["maildir"])
        self.assertExit(res, EXIT_OK)
        self.assertOnceEach("term", res)


class TestDurable(Base):
    @unittest.skipUnless(shutil.which("strace"), "needs strace")
    def test_marks_synced_before_the_append_goes(self):
        # kill -9 keeps what was written; a power loss keeps what was
        # synced. Every thread that marks appends in the journal syncs it
        # before its next write to the server.
        src = os.path.join(tempfile.mkdtemp(dir=workdir), "src")
        shutil.copytree(backups["eml"], src)
        trace = os.path.join(workdir, "restore.strace")
        argv = ["strace", "-f", "-qq", "-yy", "-s", "4", "-o", trace,
                "-e", "trace=write,writev,sendto,sendmsg,fsync,fdatasync"]
        # LeakSanitizer cannot work under ptrace: off for this run only.
        asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))
        res = tools.run(argv + restore_argv(srv_b, "durable", src, "--chunks", "2"),
                        env_extra={"XDG_CONFIG_HOME": config_home, "ASAN_OPTIONS": asan},
                        timeout=120)
        self.assertExit(res, EXIT_OK)
        self.assertOnceEach("durable", res)
        call = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>")
        pending, marks, unsynced = {}, 0, []
        with open(trace) as f:
            for line in f:
                m = call.match(line)
                if m is None:
                    continue
                pid, name, what = m.group(1), m.group(2), m.group(4)
                journal = ".mailgrab-restore-" in what
                if journal and name in ("write", "writev") and '"A\\t' in line:
                    pending[pid] = True
                    marks += 1
                elif journal and name in ("fsync", "fdatasync"):
                    pending.pop(pid, None)
                elif what.startswith("TCP:") and pending.get(pid):
                    # Marks ("A" lines) precede an APPEND; "done" lines
                    # need no sync.
                    unsynced.append(line.strip())
                    pending.pop(pid)
        self.assertGreater(marks, 0, "no journal write seen" + res.describe())
        self.assertEqual(unsynced, [], "sent to the server with the journal not synced")


class TestCut(Base):
    def test_connection_cut_mid_append(self):
        # The first sessions are cut once they have sent 300 kB: in the
        # middle of an APPEND's literal, with earlier APPENDs unanswered; the
        # uncertain messages are looked for before anything is sent again.
        with tools.Proxy(srv_b.host, srv_b.imaps_port, "--close-after-up", "300000",
                         "--fault-times", "3") as px:
            res = restore(srv_b, "cut", backups["eml"], "--chunks", "2", "-v", port=px.port)
            log = px.log()
        self.assertIn("fault: closing after", log)
        self.assertExit(res, EXIT_OK)
        self.assertRegex(res.stderr, r"[1-9][0-9]* uncertain messages looked for",
                         "no APPEND was cut with its reply outstanding" + res.describe())
        self.assertOnceEach("cut", res)


class TestRefused(Base):
    def test_message_too_big_is_named_and_counted(self):
        global srv_q
        srv_q = Dovecot(extra_conf="mail_plugins = $mail_plugins quota\n"
                                   "plugin {\n  quota = maildir:User quota\n"
                                   "  quota_max_mail_size = 200k\n}\n")
        srv_q.users.update({"big": "pw6"})
        srv_q.start()
        summary = os.path.join(workdir, "summary-big.json")
        res = restore(srv_q, "big", backups["eml"], "--summary-json", summary)
        self.assertExit(res, EXIT_PARTIAL)
        big = [n for n in os.listdir(os.path.join(backups["eml"], "INBOX"))
               if n.endswith(".eml") and
               os.path.getsize(os.path.join(backups["eml"], "INBOX", n)) > 200 << 10]
        self.assertEqual(len(big), 1)
        self.assertIn(f"INBOX/{big[0]}", res.stderr)
        self.assertIn("refused", res.stderr)
        with open(summary) as f:
            s = json.load(f)
        boxes = {b["name"]: b for a in s["accounts"] for b in a["mailboxes"]}
        self.assertEqual(boxes["INBOX"]["failed"], 1, json.dumps(s))
        want = server_counts(srv_a, "src")
        got = server_counts(srv_q, "big")
        self.assertEqual(sum(got["INBOX"].values()), sum(want["INBOX"].values()) - 1)
        for name in FOLDERS[1:]:
            self.assertEqual(got[name], want[name], name + res.describe())


class TestGenerations(Base):
    def test_generations_merged_into_one_mailbox(self):
        # Old: 5 messages; the server then renumbers it (DELETE, CREATE) and
        # it holds 3 of them again and 2 new: the backup has Old and
        # Old%uidvalidity=N. The restore puts 7 messages in Old, once each.
        out = os.path.join(workdir, "gen-backup")
        append(srv_a, "gensrc", "Old", seed=95, count=5)
        self.assertExit(backup(srv_a, "gensrc", out, "eml"), EXIT_OK)
        conn = imap(srv_a, "gensrc")
        try:
            ok(conn.delete(quoted("Old")), "DELETE")
        finally:
            conn.logout()
        time.sleep(1.1)  # Dovecot's UIDVALIDITY is a time stamp
        append(srv_a, "gensrc", "Old", seed=95, count=3)
        append(srv_a, "gensrc", "Old", seed=96, count=2, create=False)
        self.assertExit(backup(srv_a, "gensrc", out, "eml"), EXIT_OK)
        self.assertTrue([d for d in os.listdir(out) if d.startswith("Old%uidvalidity=")],
                        "harness: no second generation")
        res = restore(srv_b, "gen", out, "--mailbox", "Old")
        self.assertExit(res, EXIT_OK)
        want = collections.Counter()
        for seed, count in ((95, 5), (96, 2)):
            for i in range(count):
                want[hashlib.sha256(corpus.build_message(seed, i)[0]).hexdigest()] += 1
        conn = imap(srv_b, "gen")
        try:
            ok(conn.select(quoted("Old"), readonly=True), "SELECT")
            got = collections.Counter(
                hashlib.sha256(item[1]).hexdigest()
                for item in ok(conn.uid("FETCH", "1:*", "(BODY.PEEK[])"), "FETCH")
                if isinstance(item, tuple))
        finally:
            conn.logout()
        self.assertEqual(got, want, "not the 7 messages once each" + res.describe())


if __name__ == "__main__":
    unittest.main()
