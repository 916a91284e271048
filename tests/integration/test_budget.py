#!/usr/bin/env python3
"""Budgets against a real Dovecot: --daily-limit (a ledger in the output that
counts bytes per rolling 24 h over runs and kill -9), --max-bytes and
--max-time per run. Each stops cleanly with exit 11, keeps everything, and the
next run goes on where it stopped, fetching nothing twice.

And a server that wants less, as Gmail says it (through ByeProxy, which
rewrites what Dovecot answers): "OK Success [THROTTLED]" on every message
FETCH, or "NO [ALERT] Too many simultaneous connections" to logins past two.
The run completes with fewer connections.

One Dovecot serves the module; each test has its own user and a small corpus.
"""

import os
import signal
import subprocess
import tempfile
import time
import unittest

from mgtest import corpus, reference, tools
from mgtest.byeproxy import ByeProxy
from mgtest.checks import Checks
from mgtest.server import bodies_sent, start_for_module, stop_for_module, wait_sessions

EXIT_OK, EXIT_LIMIT = 0, 11
LEDGER = ".mailgrab-ledger"
N = 80  # messages per user; small ones, a few kB each

USERS = {"daily": "daily-pw", "killed": "killed-pw", "maxb": "maxb-pw", "maxt": "maxt-pw",
         "thr": "thr-pw", "crowd": "crowd-pw", "quota": "quota-pw"}
SIZES = {"thr": 160}  # enough fetches to see the connections go down

server = None
workdir = None
config_home = None


def setUpModule():
    global server, workdir, config_home
    tools.binary("MAILGRAB")
    server, workdir, config_home = start_for_module("mgtest-budget-", USERS)
    for i, user in enumerate(sorted(USERS)):
        corpus.generate(server.maildir(user), SIZES.get(user, N),
                        os.path.join(workdir, user + ".json"),
                        seed=70 + i, big=0, server=server)


def tearDownModule():
    stop_for_module(server, workdir)


def ledger_bytes(out):
    """Bytes the ledger in out counts (its "f TIME BYTES" lines)."""
    total = 0
    with open(os.path.join(out, LEDGER)) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "f":
                total += int(parts[2])
    return total


class Base(unittest.TestCase, Checks):
    maxDiff = 4000
    USER = None

    @classmethod
    def setUpClass(cls):
        mark = server.log_size()
        cls.ref = reference.fetch_all(server, user=cls.USER)
        # Dovecot logs what that session sent as it ends: before any test
        # counts the bodies mailgrab's sessions were sent.
        wait_sessions(server, mark, cls.USER)
        cls.total = sum(len(b) for b in cls.ref.values())
        cls.biggest = max(len(b) for b in cls.ref.values())

    def out_dir(self):
        return tempfile.mkdtemp(prefix="out-", dir=workdir) + "/backup"

    def argv(self, out, *extra, port=None):
        pw = tools.write_secret(workdir, server.password(self.USER))
        return tools.mailgrab_argv(server, user=self.USER, port=port, password_file=pw,
                                   output=out, extra=extra)

    def mailgrab(self, out, *extra, port=None, timeout=90):
        return tools.run(self.argv(out, *extra, port=port),
                         env_extra={"XDG_CONFIG_HOME": config_home}, timeout=timeout)

    def stored_bytes(self, out, res):
        got = self.stored(out, res)
        for uid, body in got.items():
            self.assertEqual(body, self.ref[uid], f"UID {uid} differs" + res.describe())
        return got, sum(len(b) for b in got.values())


class TestDailyLimit(Base):
    USER = "daily"

    def test_stops_at_limit_rerun_fetches_nothing_raised_limit_completes(self):
        out = self.out_dir()
        limit = self.total * 2 // 5
        mark = server.log_size()
        res = self.mailgrab(out, "--daily-limit", str(limit), "--chunks", "4")
        self.assertExit(res, EXIT_LIMIT)
        got, used = self.stored_bytes(out, res)
        self.assertGreater(len(got), 0, "nothing stored before the limit" + res.describe())
        self.assertLessEqual(used, limit, "stored more than the daily limit" + res.describe())
        # It stops at the limit, not well before it.
        self.assertGreater(used, limit - 4 * 256 * self.biggest, res.describe())
        self.assertGreater(used, limit // 2, res.describe())
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 1, "not one line at the limit" + res.describe())
        self.assertRegex(lines[0], r"daily limit .* run again at \d{4}-\d\d-\d\d "
                         r"\d\d:\d\d:\d\d UTC", res.describe())
        self.assertGreaterEqual(ledger_bytes(out), used, res.describe())
        first = wait_sessions(server, mark, self.USER)[0]
        self.assertEqual(bodies_sent(first, self.USER), len(got), res.describe())

        # At once: no connection is even made, nothing is fetched.
        mark = server.log_size()
        again = self.mailgrab(out, "--daily-limit", str(limit))
        self.assertExit(again, EXIT_LIMIT)
        self.assertEqual(sorted(self.stored(out, again)), sorted(got), again.describe())
        self.assertNotIn(f"Login: user=<{self.USER}>", server.log_since(mark),
                         "a run with the day spent logged in" + again.describe())
        self.assertIn("daily limit", again.stderr)

        # A raised limit fetches the rest, and only the rest.
        mark = server.log_size()
        done = self.mailgrab(out, "--daily-limit", "1G")
        self.assertExit(done, EXIT_OK)
        self.assertAllIdentical(out, done, self.ref)
        log = wait_sessions(server, mark, self.USER)[0]
        self.assertEqual(bodies_sent(log, self.USER), N - len(got), done.describe())
        self.assertGreaterEqual(ledger_bytes(out), self.total, done.describe())

    def test_none_turns_it_off_and_bad_sizes_are_refused(self):
        out = self.out_dir()
        res = self.mailgrab(out, "--daily-limit", "none")
        self.assertExit(res, EXIT_OK)
        self.assertFalse(os.path.exists(os.path.join(out, LEDGER)), res.describe())
        bad = self.mailgrab(out, "--daily-limit", "12X")
        self.assertExit(bad, 2)
        self.assertIn("--daily-limit must be a size", bad.stderr)


class TestLedgerSurvivesKill9(Base):
    USER = "killed"

    def test_kill9_mid_run_still_counted(self):
        out = self.out_dir()
        limit = self.total // 2
        box = os.path.join(out, "INBOX")
        # Slow enough to be killed half-way through its share.
        with tools.Proxy(server.host, server.imaps_port, "--rate", "40000") as proxy:
            argv = self.argv(out, "--daily-limit", str(limit), "--chunks", "2",
                             port=proxy.port)
            env = dict(os.environ, XDG_CONFIG_HOME=config_home)
            env.pop("MAILGRAB_PASSWORD", None)
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env, start_new_session=True)
            t0 = time.monotonic()
            try:
                while p.poll() is None and time.monotonic() - t0 < 60:
                    try:
                        n = sum(1 for x in os.listdir(box) if x.endswith(".eml"))
                    except FileNotFoundError:
                        n = 0
                    if n >= N // 5:
                        os.killpg(p.pid, signal.SIGKILL)
                        break
                    time.sleep(0.01)
            finally:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.assertEqual(p.returncode, -signal.SIGKILL, "the run ended before it was killed")
        killed = tools.Run(argv, p.returncode, "", "", 0)
        _, used = self.stored_bytes(out, killed)
        self.assertGreaterEqual(ledger_bytes(out), used,
                                "the ledger forgot bytes of the killed run")
        # The rerun only tops the day up to the limit.
        res = self.mailgrab(out, "--daily-limit", str(limit), "--chunks", "2")
        self.assertExit(res, EXIT_LIMIT)
        _, used = self.stored_bytes(out, res)
        self.assertLessEqual(used, limit, "the killed run's bytes were forgotten"
                             + res.describe())
        self.assertNoTempFiles(out, res)


class TestMaxBytes(Base):
    USER = "maxb"

    def test_runs_stop_and_resume_nothing_lost(self):
        out = self.out_dir()
        step = self.total // 3
        mark = server.log_size()
        runs, before = 0, 0
        while True:
            res = self.mailgrab(out, "--max-bytes", str(step), "--chunks", "3")
            runs += 1
            if res.returncode == EXIT_OK:
                break
            self.assertExit(res, EXIT_LIMIT)
            self.assertIn("--max-bytes", res.stderr)
            got, used = self.stored_bytes(out, res)
            self.assertLessEqual(used - before, step, "one run went over --max-bytes"
                                 + res.describe())
            self.assertGreater(used, before, "a run made no progress" + res.describe())
            before = used
            self.assertLess(runs, 8, res.describe())
        self.assertGreaterEqual(runs, 3, res.describe())
        self.assertAllIdentical(out, res, self.ref)
        self.assertNoTempFiles(out, res)
        self.assertFalse(os.path.exists(os.path.join(out, LEDGER)),
                         "--max-bytes alone wrote a ledger" + res.describe())
        log = wait_sessions(server, mark, self.USER)[0]
        self.assertEqual(bodies_sent(log, self.USER), N, "a message was fetched twice")


class TestMaxTime(Base):
    USER = "maxt"

    def test_stops_in_time_and_resumes(self):
        out = self.out_dir()
        # A connection's first fetch alone (16 messages) takes longer than
        # --max-time and its grace together: only the cut ends the run in time.
        with tools.Proxy(server.host, server.imaps_port, "--rate", "4000") as proxy:
            res = self.mailgrab(out, "--max-time", "2s", "--chunks", "2", port=proxy.port)
        self.assertExit(res, EXIT_LIMIT)
        self.assertIn("--max-time", res.stderr)
        first = sum(len(self.ref[u]) for u in sorted(self.ref)[:16])
        self.assertGreater(first / 4000, 12, "the corpus is too small for this test")
        # 2 s, then at most 5 s for the fetches in flight, and the start.
        self.assertLess(res.seconds, 12, "in-flight fetches kept the run going" + res.describe())
        got, _ = self.stored_bytes(out, res)
        self.assertGreater(len(got), 0, res.describe())
        self.assertLess(len(got), N, res.describe())
        done = self.mailgrab(out)
        self.assertExit(done, EXIT_OK)
        self.assertAllIdentical(out, done, self.ref)
        self.assertNoTempFiles(out, done)


class TestThrottled(Base):
    USER = "thr"

    def test_throttled_oks_mean_fewer_connections(self):
        out = self.out_dir()
        # A slow link (mgproxy) under it, so that fetches overlap.
        with tools.Proxy(server.host, server.imap_port, "--rate", "200000") as link, \
                ByeProxy(server, mode="throttle", target_port=link.port) as proxy:
            res = self.mailgrab(out, "--chunks", "4", port=proxy.port, timeout=120)
            starts, throttled = list(proxy.starts), proxy.throttled
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, self.ref)
        self.assertGreater(throttled, 0, "the proxy throttled nothing" + res.describe())
        self.assertGreater(max(n for n, _ in starts), 1,
                           f"never fetched in parallel: {starts}" + res.describe())
        # Once told a few times, one connection fetches at a time.
        late = [n for n, before in starts if before >= 6]
        self.assertGreaterEqual(len(late), 3, f"{starts}" + res.describe())
        self.assertEqual(max(late), 1, f"still fetching in parallel: {starts}" + res.describe())


class TestTooManyConnections(Base):
    USER = "crowd"

    def test_refused_logins_mean_fewer_connections(self):
        out = self.out_dir()
        with ByeProxy(server, mode="crowd", max_sessions=2) as proxy:
            res = self.mailgrab(out, "--chunks", "4", "-v", port=proxy.port)
            refused = proxy.refused
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, self.ref)
        self.assertGreater(refused, 0, "the limit was never hit" + res.describe())
        self.assertRegex(res.stderr, r"Too many simultaneous connections.*: going on with "
                         r"[123] connections?\n", res.describe())
        # Each connection over the limit is tried about once, not again and
        # again with pauses.
        self.assertLessEqual(refused, 4, f"{refused} logins refused" + res.describe())


class TestOverQuota(Base):
    USER = "quota"

    def test_bye_overquota_stops_with_11_and_keeps_everything(self):
        out = self.out_dir()
        bye = b"* BYE [OVERQUOTA] Account exceeded command or bandwidth limits.\r\n"
        with ByeProxy(server, after_bytes=self.total // 3, times=1, bye=bye) as proxy:
            res = self.mailgrab(out, "--chunks", "2", port=proxy.port)
            sessions = proxy.sessions
        self.assertExit(res, EXIT_LIMIT)
        self.assertIn("OVERQUOTA", res.stderr)
        got, _ = self.stored_bytes(out, res)
        self.assertGreater(len(got), 0, res.describe())
        self.assertLess(len(got), N, res.describe())
        # Stopped: no new session was opened to ask again.
        self.assertLessEqual(sessions, 2, res.describe())
        done = self.mailgrab(out)
        self.assertExit(done, EXIT_OK)
        self.assertAllIdentical(out, done, self.ref)


if __name__ == "__main__":
    unittest.main()
