#!/usr/bin/env python3
"""mailgrab against a real Dovecot: byte identity, limits, every error class,
network faults, file modes and password handling.

One Dovecot and one corpus serve the whole module.  MG_TEST_MESSAGES,
MG_TEST_BIG and MG_TEST_BIG_MB shrink or grow the corpus (defaults 520, 3, 3).
"""

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

from mgtest import corpus, reference, tools
from mgtest.byeproxy import ByeProxy
from mgtest.checks import Checks
from mgtest.server import Dovecot, free_port

N_MESSAGES = int(os.environ.get("MG_TEST_MESSAGES", "520"))
N_BIG = int(os.environ.get("MG_TEST_BIG", "3"))
BIG_MB = int(os.environ.get("MG_TEST_BIG_MB", "3"))

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_CONNECT, EXIT_TLS = 0, 1, 2, 3, 4
EXIT_AUTH, EXIT_MAILBOX, EXIT_IO, EXIT_LIMIT = 5, 6, 7, 11

server = None
workdir = None
expected = None
ref = None  # {uid: bytes}
password_file = None


def setUpModule():
    global server, workdir, expected, ref, password_file
    tools.binary("MAILGRAB")  # fail at once, loudly, if the binary is missing
    workdir = tempfile.mkdtemp(prefix="mgtest-dl-")
    server = Dovecot()
    server.start()
    try:
        expected = corpus.generate(server.maildir(), N_MESSAGES,
                                   os.path.join(workdir, "expected.json"),
                                   big=N_BIG, big_size=BIG_MB << 20, server=server)
        ref = reference.fetch_all(server)
        password_file = tools.write_secret(workdir, server.password("alice"))
    except BaseException:
        server.stop()
        raise


def tearDownModule():
    if server is not None:
        server.stop()
    if workdir and not os.environ.get("MG_KEEP_TMP"):
        shutil.rmtree(workdir, ignore_errors=True)


class Base(Checks, unittest.TestCase):
    maxDiff = 2000

    def out_dir(self):
        """A path that does not exist yet; mailgrab creates it."""
        return tempfile.mkdtemp(prefix="out-", dir=workdir) + "/mail"

    def mailgrab(self, *extra, output=None, password_file_=None, env=None,
                 timeout=90, watch=None, **kw):
        pw = password_file if password_file_ is None else password_file_
        argv = tools.mailgrab_argv(server, password_file=pw or None, output=output,
                                   extra=extra, **kw)
        return tools.run(argv, env_extra=env, timeout=timeout, watch=watch)

    def assertNoTempFiles(self, out, res):
        leftovers = []
        for dirpath, dirnames, filenames in os.walk(out):
            for n in dirnames + filenames:
                if "tmp" in n.lower() or n.endswith(".part"):
                    leftovers.append(os.path.join(dirpath, n))
        self.assertEqual(leftovers, [], "temporary files left behind" + res.describe())

    def assertAllIdentical(self, out, res, uids=None):
        want = ref if uids is None else {u: ref[u] for u in uids}
        Checks.assertAllIdentical(self, out, res, want)


class TestDownload(Base):
    def test_corpus_is_as_built(self):
        """Harness check: the server serves exactly the corpus expected.json describes."""
        self.assertEqual(len(ref), expected["total"]["messages"])
        self.assertEqual(sum(map(len, ref.values())), expected["total"]["bytes"])

    def test_byte_identical_with_chunks(self):
        for chunks in (1, 4, 10):
            with self.subTest(chunks=chunks):
                out = self.out_dir()
                res = self.mailgrab("--chunks", str(chunks), "--quiet", output=out)
                self.assertExit(res, EXIT_OK)
                self.assertAllIdentical(out, res)
                self.assertNoTempFiles(out, res)

    def test_few_file_descriptors(self):
        # Unnamed files stay open until their batch commits; with almost no
        # descriptors to spare, mailgrab must fall back to named temp files
        # rather than fail (it once exited 7: "Too many open files").
        out = self.out_dir()
        argv = ["prlimit", "--nofile=64:64", "--"] + tools.mailgrab_argv(
            server, password_file=password_file, output=out, extra=("--chunks", "10", "--quiet"))
        res = tools.run(argv, timeout=90)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res)
        self.assertNoTempFiles(out, res)

    def test_modes(self):
        out = self.out_dir()
        res = self.mailgrab("--chunks", "4", "--limit", "20", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertEqual(len(self.stored(out, res)), 20, res.describe())
        for dirpath, dirnames, filenames in os.walk(out):
            mode = stat.S_IMODE(os.stat(dirpath).st_mode)
            self.assertEqual(mode, 0o700, f"directory {dirpath} has mode {mode:o}" + res.describe())
            for n in filenames:
                p = os.path.join(dirpath, n)
                mode = stat.S_IMODE(os.stat(p).st_mode)
                self.assertEqual(mode, 0o600, f"file {p} has mode {mode:o}" + res.describe())

    def test_limit(self):
        out = self.out_dir()
        res = self.mailgrab("--limit", "7", "--chunks", "4", output=out)
        self.assertExit(res, EXIT_OK)
        got = self.stored(out, res)
        self.assertEqual(len(got), 7, f"stored {sorted(got)}" + res.describe())
        self.assertAllIdentical(out, res, uids=got.keys())
        self.assertNoTempFiles(out, res)

    def test_password_from_environment(self):
        out = self.out_dir()
        res = self.mailgrab("--limit", "3", output=out, password_file_="",
                            env={"MAILGRAB_PASSWORD": server.password("alice")})
        self.assertExit(res, EXIT_OK)
        self.assertEqual(len(self.stored(out, res)), 3, res.describe())

    def test_password_command(self):
        out = self.out_dir()
        res = self.mailgrab("--limit", "3", "--password-command", f"cat {password_file}",
                            output=out, password_file_="")
        self.assertExit(res, EXIT_OK)
        self.assertEqual(len(self.stored(out, res)), 3, res.describe())

    def test_password_not_in_argv(self):
        """No process of the run (mailgrab or a helper it forks) shows the password in argv."""
        seen = []

        def watch(pid):
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    if os.getpgid(int(p)) != pid:  # the run's own process group
                        continue
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        seen.append(f.read())
                except (OSError, ProcessLookupError):
                    pass

        out = self.out_dir()
        res = self.mailgrab("--chunks", "4", output=out, watch=watch)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res)
        self.assertTrue(seen, "never saw the mailgrab process")
        pw = server.password("alice").encode()
        leaks = [c for c in seen if pw in c]
        self.assertEqual(leaks, [], "password visible in a process's argv" + res.describe())
        self.assertNotIn(server.password("alice"), res.stderr + res.stdout,
                         "password printed" + res.describe())


    def test_mtime_is_internaldate(self):
        out = self.out_dir()
        res = self.mailgrab("--chunks", "4", "--limit", "50", output=out)
        self.assertExit(res, EXIT_OK)
        dates = reference.internaldates(server)
        got = self.stored(out, res)
        self.assertEqual(len(got), 50, res.describe())
        wrong = {}
        for uid in got:
            mtime = int(os.stat(os.path.join(out, "INBOX", f"{uid}.eml")).st_mtime)
            if mtime != dates[uid]:
                wrong[uid] = (mtime, dates[uid])
        self.assertEqual(wrong, {}, "file mtime != INTERNALDATE (uid: (mtime, "
                         "internaldate))" + res.describe())


class TestIncremental(Base):
    """A second run into the same directory fetches only the new messages.

    Uses user bob with his own small corpus, so the shared corpus stays as is."""

    def test_second_run_fetches_only_new(self):
        user, path = "bob", os.path.join(workdir, "bob-expected.json")
        corpus.generate(server.maildir(user), 40, path, seed=5, big=0, server=server)
        pw = tools.write_secret(workdir, server.password(user))
        out = self.out_dir()
        start = server.log_size()
        res = self.mailgrab("--chunks", "4", output=out, password_file_=pw, user=user)
        self.assertExit(res, EXIT_OK)
        first = self.stored(out, res)
        self.assertEqual(len(first), 40, res.describe())
        inodes = {u: os.stat(os.path.join(out, "INBOX", f"{u}.eml")).st_ino for u in first}

        corpus.add_messages(server.maildir(user), 6, path, seed=5, server=server)
        # Dovecot counts the bodies each session sent (body_count=N on logout);
        # its log process writes asynchronously, so wait for every logout, of
        # the first run too before the second starts.
        self._wait_logouts(start)
        mark = server.log_size()
        res = self.mailgrab("--chunks", "4", output=out, password_file_=pw, user=user)
        self.assertExit(res, EXIT_OK)
        log = self._wait_logouts(mark)
        bodies = sum(int(n) for n in re.findall(
            r"imap\(bob\).*?Disconnected.*? body_count=(\d+)", log))
        self.assertEqual(bodies, 6, "the second run fetched other than the 6 new "
                         "bodies; Dovecot log:\n" + log + res.describe())
        want = reference.fetch_all(server, user=user)
        got = self.stored(out, res)
        self.assertEqual(len(want), 46)
        self.assertEqual(got, want, "second run did not leave exactly the server's "
                         "46 messages" + res.describe())
        again = {u: os.stat(os.path.join(out, "INBOX", f"{u}.eml")).st_ino for u in first}
        self.assertEqual(again, inodes, "old messages were rewritten" + res.describe())

    @staticmethod
    def _wait_logouts(mark, user="bob", seconds=5.0):
        deadline = time.monotonic() + seconds
        while True:
            log = server.log_since(mark)
            logins = log.count(f"Login: user=<{user}>")
            ends = len(re.findall(rf"imap\({user}\).*?Disconnected", log))
            if (logins and ends >= logins) or time.monotonic() > deadline:
                return log
            time.sleep(0.05)


class TestAhead(Base):
    """Worker sessions log in while the control session is still listing,
    and only when there is something to fetch."""

    def _bytes_before_listing(self):
        """Server->client bytes of a session up to its EXAMINE (and LOGOUT),
        from a run on a mailbox with nothing to list."""
        pw = tools.write_secret(workdir, server.password("empty"))
        with tools.Proxy(server.host, server.imaps_port) as proxy:
            res = self.mailgrab(output=self.out_dir(), port=proxy.port, user="empty",
                                password_file_=pw)
            log = proxy.log()
        self.assertExit(res, EXIT_OK)
        return int(re.search(r"server->client (\d+) bytes", log).group(1))

    def test_workers_log_in_while_listing(self):
        # The proxy holds the first (control) connection halfway through its
        # listing (at least 40 bytes a message) until four connections exist.
        # A client that logs its workers in only after the listing would wait
        # out --timeout and list again on a fifth.
        hold = self._bytes_before_listing() + 20 * N_MESSAGES
        with tools.Proxy(server.host, server.imaps_port, "--hold-after", str(hold),
                         "--until-conns", "4") as proxy:
            out = self.out_dir()
            res = self.mailgrab("--chunks", "4", "--timeout", "10", output=out,
                                port=proxy.port)
            log = proxy.log()
        self.assertExit(res, EXIT_OK)
        self.assertEqual(log.count(": accepted"), 4, "the workers did not log in while "
                         "the control session listed\n" + log + res.describe())
        self.assertNotIn("timed out", res.stderr, res.describe())
        self.assertAllIdentical(out, res)

    def test_nothing_new_logs_in_once(self):
        out = self.out_dir()
        res = self.mailgrab("--chunks", "4", "--limit", "30", output=out)
        self.assertExit(res, EXIT_OK)
        # Still 490 to fetch: a --limit run opens its workers ahead.
        with tools.Proxy(server.host, server.imaps_port) as proxy:
            res = self.mailgrab("--chunks", "4", "--limit", "30", output=out,
                                port=proxy.port)
            log = proxy.log()
        self.assertExit(res, EXIT_OK)
        self.assertEqual(log.count(": accepted"), 4, log + res.describe())
        res = self.mailgrab("--chunks", "4", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res)
        with tools.Proxy(server.host, server.imaps_port) as proxy:
            res = self.mailgrab("--chunks", "4", output=out, port=proxy.port)
            log = proxy.log()
        self.assertExit(res, EXIT_OK)
        self.assertEqual(log.count(": accepted"), 1, "a run with nothing new opened more "
                         "than its control session\n" + log + res.describe())


class TestErrors(Base):
    def test_wrong_password(self):
        bad = tools.write_secret(workdir, "not-the-password")
        out = self.out_dir()
        res = self.mailgrab(output=out, password_file_=bad)
        self.assertExit(res, EXIT_AUTH)
        self.assertNotIn("not-the-password", res.stderr)

    def test_untrusted_ca(self):
        mark = server.log_size()
        res = self.mailgrab(output=self.out_dir(), cafile=server.untrusted_ca_file)
        self.assertExit(res, EXIT_TLS)
        log = self._wait_log(mark, "Disconnected")
        self.assertIn("no auth attempts", log, "Dovecot log:\n" + log + res.describe())
        for needle in ("Login: user=<alice>", "auth failed", "Password mismatch",
                       "method=PLAIN", "method=LOGIN"):
            self.assertNotIn(needle, log, "credentials reached the server over an "
                             "untrusted connection; Dovecot log:\n" + log + res.describe())

    def test_wrong_host_name(self):
        res = self.mailgrab(output=self.out_dir(), host=server.wrong_name_host,
                            port=server.wrong_name_port)
        self.assertExit(res, EXIT_TLS)

    def test_unknown_mailbox(self):
        res = self.mailgrab("--mailbox", "NoSuchFolder", output=self.out_dir())
        self.assertExit(res, EXIT_MAILBOX)

    @unittest.skipUnless(os.geteuid() == 0, "mounting a small tmpfs needs root")
    def test_disk_full(self):
        # The corpus (three 3 MB attachments among 520 messages) does not fit
        # in 4 MB: the run must say so, name the directory, keep only whole
        # messages, and a run with room must complete the backup.
        mnt = tempfile.mkdtemp(prefix="full-", dir=workdir)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mnt],
                       check=True)
        try:
            out = os.path.join(mnt, "mail")
            res = self.mailgrab("--chunks", "4", output=out)
            self.assertExit(res, EXIT_IO)
            self.assertEqual(res.stderr.count("error:"), 1, res.describe())
            self.assertRegex(res.stderr, r"error: disk full: cannot \w.* " + re.escape(out) +
                             r"/INBOX: free some space and run again", res.describe())
            got = self.stored(out, res)
            self.assertGreater(len(got), 0, res.describe())
            self.assertLess(len(got), len(ref), res.describe())
            self.assertEqual([u for u in got if got[u] != ref[u]], [],
                             "a message cut short by the full disk was kept" + res.describe())
            self.assertNoTempFiles(out, res)
            subprocess.run(["mount", "-o", "remount,size=256m", mnt], check=True)
            res = self.mailgrab("--chunks", "4", output=out)
            self.assertExit(res, EXIT_OK)
            self.assertAllIdentical(out, res)
        finally:
            subprocess.run(["umount", mnt], check=False)

    def test_closed_port(self):
        res = self.mailgrab("--timeout", "5", output=self.out_dir(), port=free_port())
        self.assertExit(res, EXIT_CONNECT)

    def test_unknown_host(self):
        res = self.mailgrab("--timeout", "5", output=self.out_dir(),
                            host="no-such-host.invalid")
        self.assertExit(res, EXIT_CONNECT)

    def _wait_log(self, mark, needle, seconds=3.0):
        deadline = time.monotonic() + seconds
        while True:
            log = server.log_since(mark)
            if needle in log or time.monotonic() > deadline:
                return log
            time.sleep(0.05)


class TestFaults(Base):
    """mgproxy breaks one of mailgrab's connections (the first to carry
    FAULT_AFTER bytes from the server, whichever that is); mailgrab must fetch
    the lost messages again and finish in bounded time."""

    FAULT_AFTER = "200000"  # server->client bytes: past the login, inside a FETCH

    def _faulted_run(self, *proxy_args, extra=()):
        with tools.Proxy(server.host, server.imaps_port, "--fault-times", "1",
                         *proxy_args) as proxy:
            out = self.out_dir()
            res = self.mailgrab("--chunks", "4", *extra, output=out, port=proxy.port,
                                timeout=90)
            log = proxy.log()
        self.assertEqual(log.count("fault:"), 1, "the proxy did not inject exactly "
                         "one fault\n" + log + res.describe())
        self.assertLess(res.seconds, 60, "run took too long" + res.describe())
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res)
        self.assertNoTempFiles(out, res)
        return res

    def test_connection_closed_mid_message(self):
        self._faulted_run("--close-after", self.FAULT_AFTER)

    def test_connection_stalls(self):
        self._faulted_run("--stall-after", self.FAULT_AFTER, extra=("--timeout", "3"))


class TestRefusals(Base):
    """The server answers a FETCH with a tagged NO (mgtest.byeproxy in front
    of Dovecot's plain port): busy, over its download quota, or unable to
    read one message."""

    def _run(self, out, **bye):
        with ByeProxy(server, **bye) as proxy:
            res = self.mailgrab("--chunks", "4", "-v", output=out, port=proxy.port,
                                timeout=120)
        return res, proxy

    def test_busy_then_fine(self):
        out = self.out_dir()
        res, proxy = self._run(out, mode="refuse", times=2)
        self.assertEqual(proxy.refused, 2, res.describe())
        self.assertExit(res, EXIT_OK)
        self.assertIn("[UNAVAILABLE] Temporary server failure", res.stderr, res.describe())
        self.assertAllIdentical(out, res)
        self.assertNoTempFiles(out, res)

    def test_download_quota(self):
        out = self.out_dir()
        res, proxy = self._run(out, mode="refuse", times=10000, after_bytes=300000,
                               refusal=b"[OVERQUOTA] Account exceeded command or "
                                       b"bandwidth limits.")
        self.assertExit(res, EXIT_LIMIT)
        self.assertEqual(res.stderr.count("error:"), 1, res.describe())
        self.assertRegex(res.stderr, r"error: .*\[OVERQUOTA\] Account exceeded command or "
                         r"bandwidth limits\..*run again later", res.describe())
        self.assertLessEqual(proxy.refused, 4, "mailgrab kept asking a server over its "
                             "quota" + res.describe())
        got = self.stored(out, res)
        self.assertLess(len(got), len(ref), res.describe())
        self.assertEqual([u for u in got if got[u] != ref[u]], [], res.describe())
        self.assertNoTempFiles(out, res)
        res = self.mailgrab("--chunks", "4", output=out)  # the next day
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res)

    def test_unreadable_message(self):
        lost = sorted(ref)[len(ref) // 2]
        out = self.out_dir()
        res, proxy = self._run(out, mode="lose", lose_uid=lost)
        self.assertExit(res, EXIT_PARTIAL)
        self.assertEqual(proxy.refused, 3, "not tried exactly three times" + res.describe())
        self.assertIn(f"1 of {len(ref)} messages could not be downloaded", res.stderr,
                      res.describe())
        self.assertNotIn("disappeared", res.stderr, "a refused message was reported as "
                         "gone from the server" + res.describe())
        self.assertAllIdentical(out, res, uids=sorted(set(ref) - {lost}))
        self.assertNoTempFiles(out, res)
        res = self.mailgrab("--chunks", "4", output=out)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res)


if __name__ == "__main__":
    unittest.main(verbosity=2)
