#!/usr/bin/env python3
"""mailgrab as a cron job against a real Dovecot: incremental runs, kill -9 at
any moment, UIDVALIDITY resets, expunged messages, every mailbox with hostile
names, the connection limit, the output lock, Maildir output read by notmuch,
the config file, --summary-json and the example cron/systemd files.

One Dovecot serves the module; every test class has its own users, so the
tests do not see each other's mail.  Classes that need other server settings
(a connection limit, a "/"-separated folder layout) start their own.
"""

import base64
import json
import os
import random
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import unittest

from mgtest import corpus, reference, tools
from mgtest.server import (Dovecot, bodies_sent, start_for_module, stop_for_module,
                           wait_sessions)

EXIT_OK, EXIT_USAGE, EXIT_AUTH, EXIT_MAILBOX, EXIT_LOCKED = 0, 2, 5, 6, 9
TMP_PREFIX = ".mg-tmp-"
STATE_FILE = ".mailgrab-state"
LOCK_FILE = ".mailgrab.lock"
OWNER_FILE = ".mailgrab-account"

# Users of the shared server, one (or two) per test class.
EXTRA_USERS = {
    "incr": "incr-pw", "killer": "killer-pw", "renum": "renum-pw",
    "expunge": "expunge-pw", "locker": "locker-pw", "nm": "nm-pw",
    "summ": "summ-pw", "pool": "pool-pw", "names": "names-pw",
    "env1": "shared pw", "env2": "shared pw", "cron": "cron-pw", "twins": "twins-pw",
}

server = None
workdir = None
config_home = None  # an empty XDG_CONFIG_HOME: no stray user config is read


def setUpModule():
    global server, workdir, config_home
    tools.binary("MAILGRAB")
    server, workdir, config_home = start_for_module("mgtest-bk-", EXTRA_USERS)


def tearDownModule():
    stop_for_module(server, workdir)


# -- IMAP helpers ------------------------------------------------------------

def mutf7(name):
    """name (str) in IMAP modified UTF-7 (RFC 3501 5.1.3)."""
    out, pending = [], ""

    def flush():
        nonlocal pending
        if pending:
            b64 = base64.b64encode(pending.encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            pending = ""

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending += ch
    flush()
    return "".join(out)


def quoted(name):
    """A mailbox name (str) as an IMAP quoted string, for imaplib."""
    m = mutf7(name)
    return '"' + m.replace("\\", "\\\\").replace('"', '\\"') + '"'


imap = reference.login
ok = reference.ok


def append(srv, user, mailbox, seed, count, start=0, create=True):
    """Appends corpus messages (seed, start..start+count-1) to mailbox."""
    conn = imap(srv, user)
    try:
        if create and mailbox != "INBOX":
            ok(conn.create(quoted(mailbox)), f"CREATE {mailbox}")
        for i in range(start, start + count):
            msg, mtime, _ = corpus.build_message(seed, i)
            ok(conn.append(quoted(mailbox), None, mtime, msg), f"APPEND {mailbox}")
    finally:
        conn.logout()


def uidvalidity(srv, user, mailbox):
    conn = imap(srv, user)
    try:
        data = ok(conn.status(quoted(mailbox), "(UIDVALIDITY)"), "STATUS")
        return int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))
    finally:
        conn.logout()


def server_mail(srv, user, mailbox="INBOX"):
    return reference.fetch_all(srv, user=user, mailbox=quoted(mailbox))


def fnv1a(data):
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def dir_name(name):
    """The directory name mailgrab's documented mapping gives mailbox name."""
    out, cut = "", False
    for ch in name:
        raw = ch.encode("utf-8")
        plain = len(raw) > 1 or (0x20 <= ord(ch) < 0x7f and ch not in "/\\%"
                                 and not (out == "" and ch == "."))
        piece = ch if plain else "".join(f"%{b:02X}" for b in raw)
        if len(out.encode()) + len(piece.encode()) > 200 - 9:
            cut = True
            break
        out += piece
    if out == "":
        out = "%00"
    if cut:
        out += "~%08x" % fnv1a(name.encode("utf-8"))
    return out


def dir_names(names):
    """{mailbox name: directory name}, with the case-collision suffixes."""
    result, taken = {}, []
    for name in sorted(names, key=lambda n: n.encode("utf-8")):
        d = dir_name(name)
        if any(t.lower() == d.lower() for t in taken):
            d += "~%08x" % fnv1a(name.encode("utf-8"))
        taken.append(d)
        result[name] = d
    return result


# -- reading a backup --------------------------------------------------------

MAILDIR_NAME = re.compile(r"^(\d+)\.U(\d+)V(\d+)\.mailgrab,U=(\d+):2,([A-Za-z]*)$")


def read_box(box, fmt="eml"):
    """({uid: bytes}, [duplicate uids], {uid: file name}) of one mailbox directory."""
    got, dups, names = {}, [], {}
    if fmt == "eml":
        files = [(box, n) for n in os.listdir(box)]
    else:
        files = [(os.path.join(box, sub), n) for sub in ("cur", "new")
                 for n in os.listdir(os.path.join(box, sub))]
    for d, n in files:
        if n.startswith("."):
            continue
        if fmt == "eml":
            if not n.endswith(".eml"):
                continue
            uid = int(n[:-4])
        else:
            m = MAILDIR_NAME.match(n)
            if not m:
                raise AssertionError(f"unexpected Maildir file name {d}/{n}")
            uid = int(m.group(2))
            if m.group(4) != m.group(2):
                raise AssertionError(f"U= and the uid differ in {n}")
        if uid in got:
            dups.append(uid)
        with open(os.path.join(d, n), "rb") as f:
            got[uid] = f.read()
        names[uid] = n
    return got, dups, names


def walk_files(top):
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            yield os.path.join(dirpath, n)


class Base(unittest.TestCase):
    maxDiff = 4000
    srv = None  # the class's server; the module's unless a class sets one

    @property
    def dc(self):
        return self.srv or server

    def out_dir(self):
        return tempfile.mkdtemp(prefix="out-", dir=workdir) + "/backup"

    def secret(self, user):
        return tools.write_secret(workdir, self.dc.password(user))

    def argv(self, user, *extra, output=None, password_file=None, port=None):
        return tools.mailgrab_argv(self.dc, user=user, port=port,
                                   password_file=password_file or self.secret(user),
                                   output=output, extra=extra)

    def mailgrab(self, user, *extra, output=None, env=None, timeout=90, port=None,
                 watch=None):
        env = dict({"XDG_CONFIG_HOME": config_home}, **(env or {}))
        return tools.run(self.argv(user, *extra, output=output, port=port),
                         env_extra=env, timeout=timeout, watch=watch)

    def assertExit(self, res, code):
        self.assertEqual(res.returncode, code,
                         f"expected exit {code}, got {res.returncode}" + res.describe())

    def assertSilent(self, res):
        self.assertEqual((res.stdout, res.stderr), ("", ""),
                         "a successful run without --verbose printed something"
                         + res.describe())

    def assertBox(self, box, want, res, fmt="eml"):
        """box holds exactly want ({uid: bytes}), once each."""
        self.assertTrue(os.path.isdir(box), f"no directory {box}" + res.describe())
        got, dups, _ = read_box(box, fmt)
        self.assertEqual(dups, [], f"duplicate messages in {box}" + res.describe())
        self.assertEqual(sorted(got), sorted(want),
                         f"{box}: missing {sorted(set(want) - set(got))[:20]}, "
                         f"extra {sorted(set(got) - set(want))[:20]}" + res.describe())
        bad = [u for u in want if got[u] != want[u]]
        self.assertEqual(bad, [], f"{box}: messages differ from the server's BODY[]"
                         + res.describe())

    def assertNoTemp(self, out, res):
        left = [p for p in walk_files(out) if os.path.basename(p).startswith(TMP_PREFIX)]
        self.assertEqual(left, [], "temporary files left behind" + res.describe())


class TestIncremental(Base):
    USER = "incr"

    def test_second_run_fetches_nothing_third_only_new(self):
        u = self.USER
        exp = os.path.join(workdir, "incr.json")
        corpus.generate(self.dc.maildir(u), 60, exp, seed=11, big=0, server=self.dc)
        out = self.out_dir()
        first = self.dc.log_size()
        res = self.mailgrab(u, "--chunks", "4", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        self.assertBox(os.path.join(out, "INBOX"), server_mail(self.dc, u), res)
        inodes = {p: os.stat(p).st_ino for p in walk_files(out) if p.endswith(".eml")}

        # Dovecot logs a logout when it gets to it: the first run's sessions
        # and the reference fetch must not be counted as the second run's.
        wait_sessions(self.dc, first, u)
        mark = self.dc.log_size()
        res = self.mailgrab(u, "--chunks", "4", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        self.assertLess(res.seconds, 10, "a run with nothing new was slow" + res.describe())
        log, logins = wait_sessions(self.dc, mark, u)
        self.assertGreater(logins, 0, "the second run never logged in\n" + log)
        self.assertEqual(bodies_sent(log, u), 0, "the second run fetched bodies again; "
                         "Dovecot log:\n" + log + res.describe())

        corpus.add_messages(self.dc.maildir(u), 7, exp, seed=11, server=self.dc)
        mark = self.dc.log_size()
        res = self.mailgrab(u, "--chunks", "4", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        log, _ = wait_sessions(self.dc, mark, u)
        self.assertEqual(bodies_sent(log, u), 7, "the third run fetched other than the "
                         "7 new bodies; Dovecot log:\n" + log + res.describe())
        want = server_mail(self.dc, u)
        self.assertEqual(len(want), 67)
        self.assertBox(os.path.join(out, "INBOX"), want, res)
        again = {p: os.stat(p).st_ino for p in inodes}
        self.assertEqual(again, inodes, "stored messages were rewritten" + res.describe())

    def test_case_twin_appearing_later_keeps_the_old_directory(self):
        """A mailbox "WORK" created after "Work" was backed up gets a directory
        of its own; "Work" keeps its directory and is not fetched again."""
        u = "twins"
        append(self.dc, u, "Work", seed=71, count=5)
        out = self.out_dir()
        res = self.mailgrab(u, "--all-mailboxes", output=out)
        self.assertExit(res, EXIT_OK)
        work = os.path.join(out, "Work")
        self.assertBox(work, server_mail(self.dc, u, "Work"), res)
        inodes = {p: os.stat(p).st_ino for p in walk_files(work)}

        append(self.dc, u, "WORK", seed=72, count=3)
        wait_sessions(self.dc, 0, u)
        mark = self.dc.log_size()
        res = self.mailgrab(u, "--all-mailboxes", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        log, _ = wait_sessions(self.dc, mark, u)
        self.assertEqual(bodies_sent(log, u), 3, "more than WORK's 3 new messages were "
                         "fetched; Dovecot log:\n" + log + res.describe())
        self.assertEqual({p: os.stat(p).st_ino for p in inodes}, inodes,
                         "Work's directory changed" + res.describe())
        twins = [d for d in os.listdir(out) if d.startswith("WORK~")]
        self.assertEqual(len(twins), 1, f"{os.listdir(out)}" + res.describe())
        self.assertBox(os.path.join(out, twins[0]), server_mail(self.dc, u, "WORK"), res)

    def test_verbose_speaks(self):
        """The silence above is not a mute binary: --verbose says what happens."""
        out = self.out_dir()
        res = self.mailgrab(self.USER, "--verbose", "--limit", "2", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertNotEqual(res.stdout + res.stderr, "", "--verbose printed nothing"
                            + res.describe())


class TestKill9(Base):
    """SIGKILL at >= 5 points of a download slowed by mgproxy, then a final run."""

    USER = "killer"
    N = 240
    KILLS = 6

    @classmethod
    def setUpClass(cls):
        corpus.generate(server.maildir(cls.USER), cls.N, os.path.join(workdir, "kill.json"),
                        seed=21, big=2, big_size=1 << 20, server=server)
        cls.ref = server_mail(server, cls.USER)

    @staticmethod
    def _writing_unnamed(pid, out):
        """Has pid an unnamed (O_TMPFILE) message file open under out?"""
        return tools.unnamed_file_open(pid, out)

    def _count(self, box, fmt):
        try:
            if fmt == "eml":
                names = os.listdir(box)
            else:
                names = os.listdir(os.path.join(box, "cur")) + os.listdir(os.path.join(box, "new"))
        except FileNotFoundError:
            return 0, False
        tmp = any(n.startswith(TMP_PREFIX) for n in names)
        if fmt == "maildir":
            try:
                tmp = tmp or any(n.startswith(TMP_PREFIX) or not n.startswith(".")
                                 for n in os.listdir(os.path.join(box, "tmp")))
            except FileNotFoundError:
                pass
        return sum(1 for n in names if not n.startswith(".")), tmp

    def _killed_runs(self, fmt, seed):
        rng = random.Random(seed)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        # Kill points: one before anything is stored, one while a message file
        # is being written (a named temp file, or an unnamed O_TMPFILE one seen
        # in /proc/PID/fd), the rest a random moment after the run's first commit
        # (a batch of renames), so each lands in a different phase.
        # A "commit" point kills once this run has stored a random share of
        # what was left, so each killed run lands between two commits.
        points = [("start", 0.1), ("tmp", 0)] + [
            ("commit", round(rng.uniform(0.05, 0.5), 3)) for _ in range(self.KILLS - 2)]
        kills, log = 0, []
        with tools.Proxy(self.dc.host, self.dc.imaps_port, "--delay-ms", "20") as proxy:
            for kind, arg in points:
                argv = self.argv(self.USER, "--chunks", "4", "--format", fmt, output=out,
                                 port=proxy.port)
                env = dict(os.environ, XDG_CONFIG_HOME=config_home)
                env.pop("MAILGRAB_PASSWORD", None)
                at_start, _ = self._count(box, fmt)
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True)
                t0 = time.monotonic()
                committed = None
                try:
                    while p.poll() is None and time.monotonic() - t0 < 60:
                        n, tmp = self._count(box, fmt)
                        if kind == "tmp" and not tmp:
                            tmp = self._writing_unnamed(p.pid, out)
                        now = time.monotonic()
                        if committed is None and n > at_start:
                            committed = now
                        if ((kind == "start" and now - t0 >= arg)
                                or (kind == "tmp" and tmp)
                                or (kind == "commit" and committed is not None
                                    and n - at_start >= max(1, arg * (self.N - at_start)))):
                            os.killpg(p.pid, signal.SIGKILL)
                            break
                        time.sleep(0.003)
                finally:
                    if p.poll() is None and time.monotonic() - t0 >= 60:
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                n, _ = self._count(box, fmt)
                log.append(f"{kind} {arg}: exit {p.returncode}, stored {at_start} -> {n}")
                kills += p.returncode == -signal.SIGKILL
        if os.environ.get("MG_TEST_VERBOSE"):
            print(f"\n{fmt} kill points (seed {seed}):\n" + "\n".join(log))
        self.assertGreaterEqual(kills, 5, f"only {kills} runs were killed mid-download "
                                f"(seed {seed}):\n" + "\n".join(log))
        res = self.mailgrab(self.USER, "--chunks", "4", "--format", fmt, output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        res.stderr += "\nkill points:\n" + "\n".join(log)
        self.assertBox(box, self.ref, res, fmt)
        self.assertNoTemp(out, res)
        if fmt == "maildir":
            self.assertEqual(os.listdir(os.path.join(box, "tmp")), [],
                             "Maildir tmp/ not empty" + res.describe())

    def test_kill9_eml(self):
        self._killed_runs("eml", seed=int(os.environ.get("MG_TEST_SEED", "4242")))

    def test_kill9_maildir(self):
        self._killed_runs("maildir", seed=int(os.environ.get("MG_TEST_SEED", "4242")) + 1)


class TestServerChanges(Base):
    def test_uidvalidity_reset_starts_new_generation(self):
        u, box = "renum", "Projects"
        append(self.dc, u, box, seed=31, count=6)
        old_uv = uidvalidity(self.dc, u, box)
        out = self.out_dir()
        res = self.mailgrab(u, "--mailbox", box, output=out)
        self.assertExit(res, EXIT_OK)
        old_dir = os.path.join(out, box)
        old = server_mail(self.dc, u, box)
        self.assertBox(old_dir, old, res)
        before = {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in walk_files(old_dir)}

        conn = imap(self.dc, u)
        try:
            ok(conn.delete(quoted(box)), "DELETE")
        finally:
            conn.logout()
        time.sleep(1.1)  # Dovecot's UIDVALIDITY is a time stamp
        append(self.dc, u, box, seed=32, count=4)
        new_uv = uidvalidity(self.dc, u, box)
        self.assertNotEqual(new_uv, old_uv, "harness: DELETE+CREATE kept the UIDVALIDITY")

        res = self.mailgrab(u, "--mailbox", box, output=out)
        self.assertExit(res, EXIT_OK)
        gen = f"{box}%uidvalidity={new_uv}"
        lines = res.stderr.splitlines()
        self.assertEqual(len(lines), 1, "expected one warning line" + res.describe())
        self.assertIn(gen, lines[0], "the warning does not name the new directory"
                      + res.describe())
        self.assertEqual(res.stdout, "", res.describe())
        after = {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in walk_files(old_dir)}
        self.assertEqual(after, before, "the old generation was touched" + res.describe())
        self.assertBox(old_dir, old, res)
        self.assertBox(os.path.join(out, gen), server_mail(self.dc, u, box), res)
        with open(os.path.join(out, gen, STATE_FILE)) as f:
            self.assertIn(f"uidvalidity={new_uv}", f.read())
        with open(os.path.join(old_dir, STATE_FILE)) as f:
            self.assertIn(f"uidvalidity={old_uv}", f.read())

        res = self.mailgrab(u, "--mailbox", box, output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        self.assertEqual(sorted(set(os.listdir(out)) - {LOCK_FILE, OWNER_FILE}),
                         sorted([box, gen]))

    def test_expunged_messages_stay(self):
        u = "expunge"
        exp = os.path.join(workdir, "expunge.json")
        corpus.generate(self.dc.maildir(u), 20, exp, seed=41, big=0, server=self.dc)
        first = server_mail(self.dc, u)
        out = self.out_dir()
        res = self.mailgrab(u, output=out)
        self.assertExit(res, EXIT_OK)
        conn = imap(self.dc, u)
        try:
            ok(conn.select("INBOX"), "SELECT")
            ok(conn.uid("STORE", "3,5,7", "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
            ok(conn.expunge(), "EXPUNGE")
        finally:
            conn.logout()
        corpus.add_messages(self.dc.maildir(u), 2, exp, seed=41, server=self.dc)
        now = server_mail(self.dc, u)
        self.assertEqual(len(now), 19, "harness: expunge or delivery did not happen")
        res = self.mailgrab(u, output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        self.assertBox(os.path.join(out, "INBOX"), {**first, **now}, res)


class NamesBase(Base):
    """--all-mailboxes over hostile mailbox names."""

    USER = "names"
    NAMES = []

    def _check_all(self, fmt="eml"):
        u = self.USER
        for i, name in enumerate(self.NAMES):
            append(self.dc, u, name, seed=100 + i, count=2 + i % 3)
        conn = imap(self.dc, u)
        try:
            listing = ok(conn.list(), "LIST")
        finally:
            conn.logout()
        selectable = ["INBOX"] + list(self.NAMES)
        out = self.out_dir()
        res = self.mailgrab(u, "--all-mailboxes", "--chunks", "4", "--format", fmt,
                            output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        res.stderr += "\nserver LIST:\n" + "\n".join(map(repr, listing))
        top = os.path.realpath(out)
        for p in walk_files(out):
            self.assertFalse(os.path.islink(p), f"symlink {p}" + res.describe())
            self.assertTrue(os.path.realpath(p).startswith(top + os.sep),
                            f"{p} is outside the output" + res.describe())
        dirs = dir_names(selectable)
        self.assertEqual(sorted(set(os.listdir(out)) - {LOCK_FILE, OWNER_FILE}),
                         sorted(dirs.values()),
                         "directory names do not follow the mapping" + res.describe())
        for name, d in dirs.items():
            with self.subTest(mailbox=name):
                want = server_mail(self.dc, u, name)
                if name != "INBOX":
                    self.assertTrue(want, "harness: mailbox is empty")
                self.assertBox(os.path.join(out, d), want, res, fmt)
        return out


class TestNamesMaildirPlusPlus(NamesBase):
    """Dovecot's default layout: "." separates levels; "/" and a leading "."
    are refused by the server, "%", "\\" and long names are not."""

    NAMES = ["Archive", "Archive.2024", "Archive.2024.Q1", "100%", "back\\slash",
             "Work", "work", "WORK.sub", "Été", "日本語.Ünïcødé 😀", "sp ace",
             "a&b", "INBOX.sub", "INBOX%uidvalidity=1", "L" * 230, "日" * 70]

    def test_all_mailboxes(self):
        self._check_all()


class TestNamesFsLayout(NamesBase):
    """LAYOUT=fs: "/" separates levels and a leading "." is allowed."""

    USER = "alice"
    NAMES = ["a/b/c", "a/.hid", ".hidden", "100%", "back\\slash", "Work", "work",
             "dot.name", "a/~b", "Ünï/cødé", "INBOX/sub", "..x", "x" * 199, "y" * 240]

    @classmethod
    def setUpClass(cls):
        cls.srv = Dovecot(layout="fs")
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_all_mailboxes_maildir(self):
        self._check_all("maildir")


class TestConnectionLimit(Base):
    @classmethod
    def setUpClass(cls):
        cls.srv = Dovecot(max_connections=3)
        cls.srv.start()
        corpus.generate(cls.srv.maildir("alice"), 120, os.path.join(workdir, "lim.json"),
                        seed=51, big=1, big_size=1 << 20, server=cls.srv)
        for i, box in enumerate(["One", "Two", "Three", "Four", "Five.Deep"]):
            append(cls.srv, "alice", box, seed=52 + i, count=25)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_never_more_than_chunks(self):
        mark = self.dc.log_size()
        out = self.out_dir()
        res = self.mailgrab("alice", "--all-mailboxes", "--chunks", "3", output=out)
        log, logins = wait_sessions(self.dc, mark, "alice")
        self.assertExit(res, EXIT_OK)
        self.assertNotIn("Maximum number of connections", log, res.describe())
        self.assertGreater(logins, 0)
        self.assertLessEqual(logins, 3 * 6, "sessions were not reused across mailboxes: "
                             f"{logins} logins for 6 mailboxes" + res.describe())
        for box in ["INBOX", "One", "Two", "Three", "Four", "Five.Deep"]:
            self.assertBox(os.path.join(out, box), server_mail(self.dc, "alice", box), res)
        # Dovecot has no Gmail extensions: no Gmail backup, no labels file.
        self.assertFalse(os.path.exists(os.path.join(out, "labels.jsonl")), res.describe())


class TestLock(Base):
    def test_second_run_exits_9(self):
        u = "locker"
        corpus.generate(self.dc.maildir(u), 150, os.path.join(workdir, "lock.json"),
                        seed=61, big=1, big_size=1 << 20, server=self.dc)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        with tools.Proxy(self.dc.host, self.dc.imaps_port, "--delay-ms", "40") as proxy:
            argv = self.argv(u, "--chunks", "2", output=out, port=proxy.port)
            env = dict(os.environ, XDG_CONFIG_HOME=config_home)
            with tempfile.TemporaryFile() as err:
                first = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         start_new_session=True)
                try:
                    deadline = time.monotonic() + 30
                    while not (os.path.isdir(box) and any(n.endswith(".eml")
                                                          for n in os.listdir(box))):
                        self.assertIsNone(first.poll(), "first run ended too early")
                        self.assertLess(time.monotonic(), deadline, "first run stored nothing")
                        time.sleep(0.01)
                    before = sorted(os.listdir(box))
                    second = self.mailgrab(u, output=out)
                    still_running = first.poll() is None
                    rc = first.wait(timeout=90)
                finally:
                    if first.poll() is None:
                        os.killpg(first.pid, signal.SIGKILL)
                        first.wait()
                err.seek(0)
                first_err = err.read().decode(errors="replace")
        self.assertTrue(still_running, "the first run ended before the second was "
                        "refused: the test proves nothing" + second.describe())
        self.assertExit(second, EXIT_LOCKED)
        self.assertLess(second.seconds, 5, "the locked run did not exit at once"
                        + second.describe())
        self.assertEqual(len(second.stderr.splitlines()), 1, "expected one line"
                         + second.describe())
        self.assertEqual(second.stdout, "")
        self.assertGreater(len(before), 0)
        self.assertEqual(rc, EXIT_OK, "first run: " + first_err)
        self.assertEqual(first_err, "")
        self.assertBox(box, server_mail(self.dc, u), second)
        self.assertNoTemp(out, second)


class TestNotmuch(Base):
    def test_maildir_indexed_by_notmuch(self):
        nm = shutil.which("notmuch")
        if nm is None:
            self.skipTest("notmuch is not installed (scripts/install-deps installs it)")
        u = "nm"
        corpus.generate(self.dc.maildir(u), 40, os.path.join(workdir, "nm.json"),
                        seed=71, big=0, server=self.dc)
        append(self.dc, u, "Lists", seed=72, count=10)
        conn = imap(self.dc, u)
        try:
            ok(conn.select("INBOX"), "SELECT")
            ok(conn.uid("STORE", "1", "+FLAGS.SILENT", "(\\Seen \\Flagged)"), "STORE")
        finally:
            conn.logout()
        out = self.out_dir()
        res = self.mailgrab(u, "--all-mailboxes", "--format", "maildir", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        _, _, names = read_box(os.path.join(out, "INBOX"), "maildir")
        uv = uidvalidity(self.dc, u, "INBOX")
        for uid, n in names.items():
            self.assertIn(f".U{uid}V{uv}.mailgrab,U={uid}:2,", n)

        home = tempfile.mkdtemp(prefix="nm-home-", dir=workdir)
        cfg = os.path.join(home, "notmuch-config")
        with open(cfg, "w") as f:
            f.write(f"[database]\npath={out}\n[user]\nname=mailgrab test\n"
                    "primary_email=nm@example.org\n[new]\ntags=unread;inbox;\n"
                    "ignore=.mailgrab-state;.mailgrab.lock;.mailgrab-account\n")
        env = dict(os.environ, HOME=home, NOTMUCH_CONFIG=cfg, XDG_CONFIG_HOME=home,
                   XDG_DATA_HOME=home)
        r = subprocess.run([nm, "new", "--quiet"], env=env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = subprocess.run([nm, "count", "--output=files", "*"], env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(int(r.stdout), 50, "notmuch saw another number of messages")

    # Regression: the FETCH once left out FLAGS, so every Maildir name ended
    # in a bare ":2,".
    def test_maildir_names_carry_server_flags(self):
        u = "nm"
        append(self.dc, u, "Flags", seed=73, count=3)
        conn = imap(self.dc, u)
        try:
            ok(conn.select(quoted("Flags")), "SELECT")
            ok(conn.uid("STORE", "1", "+FLAGS.SILENT", "(\\Seen \\Flagged)"), "STORE")
            ok(conn.uid("STORE", "2", "+FLAGS.SILENT", "(\\Answered \\Draft)"), "STORE")
        finally:
            conn.logout()
        out = self.out_dir()
        res = self.mailgrab(u, "--mailbox", "Flags", "--format", "maildir", output=out)
        self.assertExit(res, EXIT_OK)
        _, _, names = read_box(os.path.join(out, "Flags"), "maildir")
        flags = {uid: n.rsplit(":2,", 1)[1] for uid, n in names.items()}
        self.assertEqual(flags, {1: "FS", 2: "DR", 3: ""},
                         "Maildir info flags do not match the server's" + res.describe())


class TestSummaryJson(Base):
    def test_missing_mailbox_among_others(self):
        u = "summ"
        corpus.generate(self.dc.maildir(u), 12, os.path.join(workdir, "summ.json"),
                        seed=81, big=0, server=self.dc)
        append(self.dc, u, "Sent", seed=82, count=5)
        out = self.out_dir()
        summary = os.path.join(os.path.dirname(out), "summary.json")
        res = self.mailgrab(u, "--mailbox", "INBOX", "--mailbox", "Nope", "--mailbox", "Sent",
                            "--summary-json", summary, output=out)
        self.assertExit(res, EXIT_MAILBOX)
        self.assertIn("Nope", res.stderr)
        inbox, sent = server_mail(self.dc, u), server_mail(self.dc, u, "Sent")
        self.assertBox(os.path.join(out, "INBOX"), inbox, res)
        self.assertBox(os.path.join(out, "Sent"), sent, res)
        with open(summary) as f:
            s = json.load(f)
        res.stderr += "\nsummary: " + json.dumps(s, indent=1)
        self.assertEqual((s["exit_code"], s["status"]), (6, "mailbox"), res.describe())
        self.assertEqual(len(s["accounts"]), 1, res.describe())
        acct = s["accounts"][0]
        self.assertEqual((acct["user"], acct["exit_code"], acct["status"]),
                         (u, 6, "mailbox"), res.describe())
        self.assertIn("127.0.0.1", acct["server"])
        boxes = {b["name"]: b for b in acct["mailboxes"]}
        self.assertEqual(sorted(boxes), ["INBOX", "Nope", "Sent"], res.describe())
        for name, want in (("INBOX", inbox), ("Sent", sent)):
            b = boxes[name]
            self.assertEqual((b["status"], b["error"], b["listed"], b["new"], b["skipped"],
                              b["failed"], b["vanished"]),
                             ("ok", None, len(want), len(want), 0, 0, 0), res.describe())
            self.assertEqual(b["bytes"], sum(map(len, want.values())), res.describe())
            self.assertEqual(b["uidvalidity"], uidvalidity(self.dc, u, name))
            self.assertTrue(os.path.samefile(b["path"], os.path.join(out, name))
                            if os.path.isabs(b["path"]) else b["path"] == name, res.describe())
            self.assertGreaterEqual(b["seconds"], 0)
        nope = boxes["Nope"]
        self.assertEqual((nope["status"], nope["new"]), ("mailbox", 0), res.describe())
        self.assertTrue(nope["error"], res.describe())

        # Again: nothing new, everything skipped, still 6.
        res = self.mailgrab(u, "--mailbox", "INBOX", "--mailbox", "Nope", "--mailbox", "Sent",
                            "--summary-json", summary, output=out)
        self.assertExit(res, EXIT_MAILBOX)
        with open(summary) as f:
            s = json.load(f)
        boxes = {b["name"]: b for b in s["accounts"][0]["mailboxes"]}
        self.assertEqual((boxes["INBOX"]["new"], boxes["INBOX"]["skipped"],
                          boxes["INBOX"]["bytes"]), (0, len(inbox), 0),
                         json.dumps(s, indent=1) + res.describe())


class TestPoolRuns(Base):
    """Several pool runs in one process (one per mailbox), small enough for
    the ThreadSanitizer build (suite concurrency)."""

    BOXES = ["INBOX", "P1", "P2", "P3.Sub", "P4"]

    @classmethod
    def setUpClass(cls):
        corpus.generate(server.maildir("pool"), 60, os.path.join(workdir, "pool.json"),
                        seed=91, big=0, server=server)
        for i, box in enumerate(cls.BOXES[1:]):
            append(server, "pool", box, seed=92 + i, count=15 + 5 * i)

    def test_many_mailboxes_parallel(self):
        for chunks, fmt in ((4, "eml"), (3, "maildir")):
            with self.subTest(chunks=chunks, format=fmt):
                out = self.out_dir()
                res = self.mailgrab("pool", "--all-mailboxes", "--chunks", str(chunks),
                                    "--format", fmt, output=out)
                self.assertExit(res, EXIT_OK)
                for box in self.BOXES:
                    self.assertBox(os.path.join(out, box), server_mail(server, "pool", box),
                                   res, fmt)
                self.assertNoTemp(out, res)


class TestConfig(Base):
    """Accounts from a config file: [defaults], precedence, MAILGRAB_PASSWORD,
    one failing account, permission and syntax errors."""

    @classmethod
    def setUpClass(cls):
        for user, n, seed in (("alice", 15, 201), ("bob", 10, 202), ("env1", 4, 203),
                              ("env2", 6, 204)):
            corpus.generate(server.maildir(user), n, os.path.join(workdir, f"cfg-{user}.json"),
                            seed=seed, big=0, server=server)

    def write_config(self, body, mode=0o600):
        d = tempfile.mkdtemp(prefix="cfg-", dir=workdir)
        path = os.path.join(d, "config")
        head = ("# mailgrab test accounts\n[defaults]\nserver = 127.0.0.1\n"
                f"port = {server.imaps_port}\ncafile = {server.ca_file}\n"
                "chunks = 3\ntimeout = 30\n\n")
        with open(path, "w") as f:
            f.write(head + body)
        os.chmod(path, mode)
        return path, head.count("\n")

    def run_config(self, *args, env=None):
        argv = [tools.binary("MAILGRAB"), *args]
        env = dict({"XDG_CONFIG_HOME": config_home}, **(env or {}))
        return tools.run(argv, env_extra=env, timeout=90)

    def two_accounts(self, first_password_file=None):
        out_a, out_b = self.out_dir(), self.out_dir()
        pw_line = f"password_file = {first_password_file}\n" if first_password_file else ""
        body = (f"[account home]\nuser = alice\n{pw_line}output = {out_a}\n\n"
                f"[account work]\nuser = bob\npassword_file = {self.secret('bob')}\n"
                f"output = {out_b}\nformat = maildir\n")
        path, _ = self.write_config(body)
        return path, out_a, out_b

    def test_all_accounts_in_turn(self):
        path, out_a, out_b = self.two_accounts()
        res = self.run_config("--config", path, env={"MAILGRAB_PASSWORD": "secret"})
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        self.assertBox(os.path.join(out_a, "INBOX"), server_mail(server, "alice"), res)
        self.assertBox(os.path.join(out_b, "INBOX"), server_mail(server, "bob"), res, "maildir")

    def test_env_password_serves_every_account(self):
        """Regression: MAILGRAB_PASSWORD used to reach only the first account."""
        out_1, out_2 = self.out_dir(), self.out_dir()
        path, _ = self.write_config(f"[account one]\nuser = env1\noutput = {out_1}\n\n"
                                    f"[account two]\nuser = env2\noutput = {out_2}\n")
        res = self.run_config("--config", path, env={"MAILGRAB_PASSWORD": "shared pw"})
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        self.assertBox(os.path.join(out_1, "INBOX"), server_mail(server, "env1"), res)
        self.assertBox(os.path.join(out_2, "INBOX"), server_mail(server, "env2"), res)

    def test_command_line_wins_and_account_selects(self):
        path, out_a, out_b = self.two_accounts()
        cli_out = self.out_dir()
        mark = server.log_size()
        res = self.run_config("--config", path, "--account", "home", "--output", cli_out,
                              "--chunks", "1", "--format", "maildir",
                              env={"MAILGRAB_PASSWORD": "secret"})
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        log, logins = wait_sessions(server, mark, "alice")
        self.assertEqual(logins, 1, "--chunks 1 did not override chunks = 3\n" + log
                         + res.describe())
        self.assertNotIn("user=<bob>", log, "--account home also ran bob's account")
        self.assertBox(os.path.join(cli_out, "INBOX"), server_mail(server, "alice"), res,
                       "maildir")
        self.assertFalse(os.path.exists(out_a), "the config's output was used" + res.describe())
        self.assertFalse(os.path.exists(out_b), "another account ran" + res.describe())

        res = self.run_config("--config", path, "--account", "work")
        self.assertExit(res, EXIT_OK)
        self.assertBox(os.path.join(out_b, "INBOX"), server_mail(server, "bob"), res, "maildir")
        self.assertFalse(os.path.exists(out_a), "--account work also ran home" + res.describe())

    def test_failing_account_does_not_stop_the_others(self):
        bad = tools.write_secret(workdir, "not-the-password")
        path, out_a, out_b = self.two_accounts(first_password_file=bad)
        summary = os.path.join(workdir, f"summary-{os.getpid()}-fail.json")
        res = self.run_config("--config", path, "--summary-json", summary)
        self.assertExit(res, EXIT_AUTH)
        self.assertIn("alice", res.stderr, "the error does not say which user failed"
                      + res.describe())
        self.assertIn("[home]", res.stderr, "the error does not name the account"
                      + res.describe())
        self.assertBox(os.path.join(out_b, "INBOX"), server_mail(server, "bob"), res, "maildir")
        with open(summary) as f:
            s = json.load(f)
        got = [(a["account"], a["exit_code"], a["status"]) for a in s["accounts"]]
        self.assertEqual(got, [("home", 5, "auth"), ("work", 0, "ok")],
                         json.dumps(s, indent=1) + res.describe())
        self.assertEqual(s["exit_code"], 5)

    def test_group_readable_config_refused(self):
        out = self.out_dir()
        path, _ = self.write_config(f"[account home]\nuser = alice\noutput = {out}\n",
                                    mode=0o640)
        res = self.run_config("--config", path, env={"MAILGRAB_PASSWORD": "secret"})
        self.assertExit(res, EXIT_USAGE)
        self.assertIn("chmod 600", res.stderr, res.describe())
        self.assertFalse(os.path.exists(out), "ran anyway" + res.describe())

    def test_errors_name_file_and_line(self):
        out = self.out_dir()
        for bad, why in (("colour = blue", "unknown key"),
                         ("this line has no equals sign", "malformed line"),
                         ("chunks = many", "bad value")):
            with self.subTest(why):
                path, n = self.write_config(
                    f"[account home]\nuser = alice\noutput = {out}\n{bad}\nmailbox = INBOX\n")
                line = n + 4
                res = self.run_config("--config", path, env={"MAILGRAB_PASSWORD": "secret"})
                self.assertExit(res, EXIT_USAGE)
                self.assertIn(f"{path}:{line}", res.stderr,
                              f"{why} not reported as file:line" + res.describe())
                self.assertFalse(os.path.exists(out), "ran anyway" + res.describe())


class TestExampleFiles(Base):
    """config/mailgrab.cron runs as written; the systemd units verify."""

    SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        "..", "..", "config"))

    def test_cron_line(self):
        self._cron_line(make_cache=True)

    # Regression: --summary-json did not create the directory it writes
    # into, so the documented cron line failed (exit 7) on an account
    # without ~/.cache.
    def test_cron_line_fresh_home(self):
        self._cron_line(make_cache=False)

    def _cron_line(self, make_cache):
        with open(os.path.join(self.SRC, "mailgrab.cron")) as f:
            lines = [l for l in f.read().splitlines() if l.strip() and not l.startswith("#")]
        self.assertEqual(len(lines), 1, lines)
        fields = lines[0].split(None, 5)
        self.assertEqual(len(fields), 6, lines[0])
        for field, (lo, hi) in zip(fields[:5], [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]):
            if field != "*":
                self.assertTrue(field.isdigit() and lo <= int(field) <= hi,
                                f"bad cron field {field!r}")
        command = fields[5]
        self.assertTrue(command.startswith("mailgrab "), command)

        # Run the command as cron would: /bin/sh, a bare environment, the
        # user's ~/.config/mailgrab/config, nothing else prepared.
        if not os.listdir(os.path.join(server.maildir("cron"), "cur")):
            corpus.generate(server.maildir("cron"), 8, os.path.join(workdir, "cron.json"),
                            seed=301, big=0, server=server)
        home = tempfile.mkdtemp(prefix="home-", dir=workdir)
        os.makedirs(os.path.join(home, ".config", "mailgrab"))
        if make_cache:
            os.makedirs(os.path.join(home, ".cache"))
        pw = os.path.join(home, ".config", "mailgrab", "pw")
        with open(pw, "w") as f:
            f.write(server.password("cron") + "\n")
        os.chmod(pw, 0o600)
        cfg = os.path.join(home, ".config", "mailgrab", "config")
        with open(cfg, "w") as f:
            f.write(f"[defaults]\noutput = ~/mail-backup\nformat = maildir\n\n[account test]\n"
                    f"server = 127.0.0.1\nport = {server.imaps_port}\nuser = cron\n"
                    f"password_file = ~/.config/mailgrab/pw\ncafile = {server.ca_file}\n"
                    "all_mailboxes = yes\n")
        os.chmod(cfg, 0o600)
        bindir = os.path.dirname(tools.binary("MAILGRAB"))
        env = {"HOME": home, "PATH": f"{bindir}:/usr/bin:/bin", "SHELL": "/bin/sh",
               "LOGNAME": "root"}
        r = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True,
                           text=True, timeout=90, stdin=subprocess.DEVNULL)
        res = tools.Run(["/bin/sh", "-c", command], r.returncode, r.stdout, r.stderr, 0)
        self.assertExit(res, EXIT_OK)
        self.assertSilent(res)
        self.assertBox(os.path.join(home, "mail-backup", "INBOX"), server_mail(server, "cron"),
                       res, "maildir")
        with open(os.path.join(home, ".cache", "mailgrab-last.json")) as f:
            self.assertEqual(json.load(f)["exit_code"], 0)

    def test_systemd_units(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed")
        d = tempfile.mkdtemp(prefix="units-", dir=workdir)
        for name in ("mailgrab.service", "mailgrab.timer"):
            with open(os.path.join(self.SRC, name)) as f:
                text = f.read()
            # verify checks that ExecStart exists: point it at the built binary.
            text = text.replace("/usr/local/bin/mailgrab", tools.binary("MAILGRAB"))
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        r = subprocess.run([analyze, "verify", "--man=no", "mailgrab.service",
                            "mailgrab.timer"], cwd=d, capture_output=True, text=True,
                           timeout=60)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        noise = [l for l in out.splitlines() if "mailgrab" in l]
        self.assertEqual(noise, [], "systemd-analyze complains:\n" + out)



if __name__ == "__main__":
    unittest.main(verbosity=2)
