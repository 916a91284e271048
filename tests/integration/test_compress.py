#!/usr/bin/env python3
"""COMPRESS=DEFLATE (RFC 4978) against a real Dovecot with its imap_zlib
plugin: mailgrab asks for it after login when the server offers it, every
message arrives byte-identical, and the bytes on the wire (counted by
mgproxy below TLS, and by mailgrab in the summary JSON) are well under the
bytes stored.  --no-compress and `compress = no` do not ask for it; cuts,
stalls and SIGTERM mid-stream behave as they do uncompressed.

The corpus is the harness's text-heavy one without big attachments
(MG_COMPRESS_MESSAGES, default 400 messages, about 5.5 MB).
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

from mgtest import corpus, reference, tools
from mgtest.checks import Checks
from mgtest.server import start_for_module, stop_for_module

N_MESSAGES = int(os.environ.get("MG_COMPRESS_MESSAGES", "400"))
EXIT_OK, EXIT_INTERRUPTED = 0, 130

server = workdir = config_home = None
ref = None
stored_total = 0
password_file = None


def setUpModule():
    global server, workdir, config_home, ref, stored_total, password_file
    tools.binary("MAILGRAB")
    tools.binary("MGPROXY")
    server, workdir, config_home = start_for_module("mgtest-cmp-", compress=True)
    try:
        os.chmod(workdir, 0o755)
        corpus.generate(server.maildir("alice"), N_MESSAGES,
                        os.path.join(workdir, "expected.json"), big=0, server=server)
        ref = reference.fetch_all(server, "alice")
        stored_total = sum(map(len, ref.values()))
        password_file = tools.write_secret(workdir, server.password("alice"))
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    stop_for_module(server, workdir)


class Base(Checks, unittest.TestCase):
    maxDiff = 2000

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="t-", dir=workdir)
        self.out = os.path.join(self.dir, "mail")
        self.summary = os.path.join(self.dir, "summary.json")
        self.wire_file = os.path.join(self.dir, "wire.json")

    def argv(self, port, *extra):
        return tools.mailgrab_argv(server, port=port, output=self.out,
                                   password_file=password_file,
                                   extra=("--summary-json", self.summary) + extra)

    def mailgrab(self, *extra, proxy_args=()):
        """One run through mgproxy; returns (run, proxy stats, summary account).
        The proxy's log is kept in self.proxy_log."""
        with tools.Proxy(server.host, server.imaps_port, "--stats-file", self.wire_file,
                         *proxy_args) as proxy:
            res = tools.run(self.argv(proxy.port, *extra), timeout=150,
                            env_extra={"XDG_CONFIG_HOME": config_home})
            self.proxy_log = proxy.log()
        return res, self.json(self.wire_file), self.account(res)

    def json(self, path):
        with open(path) as f:
            return json.load(f)

    def account(self, res):
        self.assertTrue(os.path.exists(self.summary), "no summary JSON" + res.describe())
        return self.json(self.summary)["accounts"][0]

    def facts(self, wire, acct):
        text = (f"\ncorpus {stored_total} bytes; proxy: {wire['down_bytes']} bytes down over "
                f"{wire['connections']} connections, {wire['cuts']} cuts; summary: "
                f"wire_bytes {acct['wire_bytes']}, stored_bytes {acct['stored_bytes']}, "
                f"compressed_sessions {acct['compressed_sessions']}")
        print(text, file=sys.stderr)
        return text


class TestCompress(Base):
    def test_negotiated_identical_and_small_on_the_wire(self):
        res, wire, acct = self.mailgrab("--chunks", "4", "-v")
        facts = self.facts(wire, acct)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(self.out, res, ref)
        self.assertNoTempFiles(self.out, res)
        # Every session that logged in switched: the proxy saw that many.
        self.assertGreaterEqual(acct["compressed_sessions"], 1, facts)
        self.assertEqual(acct["compressed_sessions"], wire["connections"], facts)
        self.assertEqual(acct["stored_bytes"], stored_total, facts)
        self.assertEqual(acct["mailboxes"][0]["bytes"], stored_total, facts)
        # The bound, measured below TLS by the proxy; TLS records add
        # a little to what mailgrab counts, never less.
        self.assertLessEqual(wire["down_bytes"], 0.75 * stored_total, facts)
        self.assertLessEqual(acct["wire_bytes"], wire["down_bytes"], facts)
        self.assertGreater(acct["wire_bytes"], 0.9 * wire["down_bytes"] - 50000, facts)
        box = acct["mailboxes"][0]
        self.assertLessEqual(box["wire_bytes"], acct["wire_bytes"], facts)
        self.assertGreater(box["wire_bytes"], 0.9 * acct["wire_bytes"], facts)
        self.assertIn("received from the server (COMPRESS=DEFLATE)", res.stderr, res.describe())
        said = re.search(r"INBOX: \d+ new \(([0-9.]+) MB, ([0-9.]+) MB on the wire\)", res.stderr)
        self.assertIsNotNone(said, res.describe())
        self.assertAlmostEqual(float(said.group(1)), stored_total / 1e6, delta=0.06)
        self.assertAlmostEqual(float(said.group(2)), box["wire_bytes"] / 1e6, delta=0.06)

    def test_no_compress_does_not_ask(self):
        res, wire, acct = self.mailgrab("--chunks", "4", "--no-compress")
        facts = self.facts(wire, acct)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(self.out, res, ref)
        self.assertEqual(acct["compressed_sessions"], 0, facts)
        self.assertGreaterEqual(wire["down_bytes"], stored_total, facts)
        self.assertGreaterEqual(acct["wire_bytes"], stored_total, facts)

    def test_config_key(self):
        """`compress = no` in the config file turns it off; --compress on the
        command line turns it back on for that run."""
        cfg = os.path.join(self.dir, "config")
        with open(cfg, "w") as f:
            f.write("[defaults]\ncompress = no\n")
        os.chmod(cfg, 0o600)
        res, wire, acct = self.mailgrab("--config", cfg)
        facts = self.facts(wire, acct)
        self.assertExit(res, EXIT_OK)
        self.assertEqual(acct["compressed_sessions"], 0, facts)
        self.assertGreaterEqual(wire["down_bytes"], stored_total, facts)
        self.out = os.path.join(self.dir, "mail2")
        res, wire, acct = self.mailgrab("--config", cfg, "--compress")
        facts = self.facts(wire, acct)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(self.out, res, ref)
        self.assertEqual(acct["compressed_sessions"], wire["connections"], facts)
        self.assertLessEqual(wire["down_bytes"], 0.75 * stored_total, facts)


class TestFaults(Base):
    def test_cut_mid_stream_recovers(self):
        """Every connection is cut 1 s after it opens, at 500 KB/s each: cuts
        land inside the compressed stream, mid-message; one run stores all."""
        res, wire, acct = self.mailgrab("--chunks", "4",
                                        proxy_args=("--rate", "500000", "--cut-every", "1"))
        facts = self.facts(wire, acct)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(self.out, res, ref)
        self.assertNoTempFiles(self.out, res)
        self.assertGreaterEqual(wire["cuts"], 3, "the proxy cut too few connections" + facts)
        # A connection cut before its login ended never got to COMPRESS.
        self.assertGreaterEqual(acct["compressed_sessions"], 0.8 * wire["connections"], facts)
        self.assertLessEqual(wire["down_bytes"], 1.3 * 0.75 * stored_total,
                             "too much fetched again" + facts)

    def test_stall_mid_stream_times_out_and_recovers(self):
        """One connection goes silent 300 KB into its compressed stream: it is
        dropped after --timeout and its work done on a new one."""
        res, wire, acct = self.mailgrab(
            "--chunks", "2", "--timeout", "2", "-v",
            proxy_args=("--stall-after", "300000", "--fault-times", "1"))
        facts = self.facts(wire, acct)
        self.assertEqual(self.proxy_log.count("fault:"), 1,
                         "the proxy did not stall one connection\n" + self.proxy_log)
        self.assertIn("no data from server for 2 s", res.stderr, res.describe())
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(self.out, res, ref)
        self.assertNoTempFiles(self.out, res)
        self.assertGreaterEqual(acct["compressed_sessions"], 2, facts)

    def test_sigterm_mid_stream(self):
        """SIGTERM while compressed bodies stream in: exit 130 within 3 s,
        what is stored is whole; the next run completes the backup."""
        with tools.Proxy(server.host, server.imaps_port, "--rate", "300000") as proxy:
            argv = self.argv(proxy.port, "--chunks", "2")
            env = dict(os.environ, XDG_CONFIG_HOME=config_home)
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=env, start_new_session=True)
            box = os.path.join(self.out, "INBOX")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and p.poll() is None:
                if os.path.isdir(box) and len(os.listdir(box)) > 20:
                    break
                time.sleep(0.05)
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            try:
                _, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                _, err = p.communicate()
            took = time.monotonic() - t0
        res = tools.Run(argv, p.returncode, "", err.decode("utf-8", "replace"), took)
        self.assertExit(res, EXIT_INTERRUPTED)
        self.assertLess(took, 3, res.describe())
        got = self.stored(self.out, res)
        self.assertGreater(len(got), 0, res.describe())
        self.assertLess(len(got), len(ref), "the run was not stopped mid-way" + res.describe())
        for uid, body in got.items():
            self.assertEqual(body, ref[uid], f"uid {uid} not whole" + res.describe())
        self.assertEqual(self.account(res)["status"], "interrupted", res.describe())
        res, wire, acct = self.mailgrab("--chunks", "2")
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(self.out, res, ref)


if __name__ == "__main__":
    unittest.main()
