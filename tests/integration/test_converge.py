#!/usr/bin/env python3
"""mailgrab converges when the server keeps ending its sessions: every
connection cut a few seconds after it opens on a slow link (mgproxy
--cut-every, --rate), and Gmail-style sessions that end when their OAuth2
token expires (mgtest.byeproxy mode="expire").  One run must store every
message, byte for byte, without fetching much more than it stores; a message
that no session lives long enough to send is given up, said in one line.

One Dovecot (passwords and OAuth2 tokens) serves the module: alice holds the
harness corpus (MG_CONVERGE_MESSAGES, default 1500, of which MG_CONVERGE_BIG,
default 3, carry a 3 MB attachment: 4.3 MB each), bob 120 small messages and
one such big one.
"""

import json
import os
import sys
import tempfile
import unittest

from mgtest import corpus, reference, tools
from mgtest.authserver import AuthServer
from mgtest.byeproxy import ByeProxy
from mgtest.checks import Checks
from mgtest.server import Dovecot, stop_for_module

N_MESSAGES = int(os.environ.get("MG_CONVERGE_MESSAGES", "1500"))
N_BIG = int(os.environ.get("MG_CONVERGE_BIG", "3"))

EXIT_OK, EXIT_PARTIAL = 0, 1

workdir = auth = server = None
ref_alice = ref_bob = None
password_file = secret_file = None


def setUpModule():
    global workdir, auth, server, ref_alice, ref_bob, password_file, secret_file
    tools.binary("MAILGRAB")
    tools.binary("MGPROXY")
    workdir = tempfile.mkdtemp(prefix="mgtest-conv-")
    os.chmod(workdir, 0o755)
    auth = AuthServer(os.path.join(workdir, "auth")).start()
    try:
        server = Dovecot(auth_server=auth).start()
        corpus.generate(server.maildir("alice"), N_MESSAGES,
                        os.path.join(workdir, "expected-alice.json"),
                        big=N_BIG, big_size=3 << 20, server=server)
        corpus.generate(server.maildir("bob"), 121, os.path.join(workdir, "expected-bob.json"),
                        seed=2, big=1, big_size=3 << 20, server=server)
        ref_alice = reference.fetch_all(server, "alice")
        ref_bob = reference.fetch_all(server, "bob")
        password_file = tools.write_secret(workdir, server.password("alice"))
        secret_file = tools.write_secret(workdir, auth.client_secret, "client-secret")
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    stop_for_module(server, workdir, auth)


class Base(Checks, unittest.TestCase):
    maxDiff = 2000

    def setUp(self):
        auth.token_lifetime = 3600
        self.dir = tempfile.mkdtemp(prefix="t-", dir=workdir)

    def out_dir(self):
        return os.path.join(tempfile.mkdtemp(prefix="out-", dir=self.dir), "mail")

    def mailgrab(self, *extra, user="alice", port=None, output=None, password_file_=None,
                 timeout=150):
        argv = tools.mailgrab_argv(server, user=user, port=port, output=output,
                                   password_file=password_file_, extra=extra)
        return tools.run(argv, timeout=timeout)

    def stats(self, path):
        with open(path) as f:
            return json.load(f)


class TestCuts(Base):
    """mgproxy cuts every connection 3 s after it opens and lets each carry
    2 MB/s from the server; four connections.  What arrived whole before a
    cut is kept, so one run stores everything and the bytes on the wire stay
    close to the bytes stored."""

    def test_cut_every_3s_at_2mb_per_s(self):
        out = self.out_dir()
        stats_file = os.path.join(self.dir, "wire.json")
        with tools.Proxy(server.host, server.imaps_port, "--rate", "2000000",
                         "--cut-every", "3", "--stats-file", stats_file) as proxy:
            res = self.mailgrab("--chunks", "4", "-v", port=proxy.port, output=out,
                                password_file_=password_file)
        wire = self.stats(stats_file)
        stored = sum(map(len, ref_alice.values()))
        facts = (f"\n{res.seconds:.1f} s, {wire['connections']} connections, {wire['cuts']} "
                 f"cuts, {wire['down_bytes']} bytes on the wire for {stored} stored "
                 f"({wire['down_bytes'] / stored:.2f}x)")
        print(facts, file=sys.stderr)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, ref_alice)
        self.assertNoTempFiles(out, res)
        self.assertGreaterEqual(wire["cuts"], 4, "the proxy cut too few connections" + facts)
        self.assertLessEqual(wire["down_bytes"], 1.3 * stored,
                             "too many bytes fetched again" + facts + res.describe())


class TestTokenExpiry(Base):
    """Gmail ends a session when the token it logged in with expires.  Tokens
    live 3 s, each connection carries 1 MB/s; byeproxy ends every session at
    its token's expiry, however often a batch is interrupted."""

    def test_sessions_end_when_their_token_expires(self):
        auth.token_lifetime = 3
        rt_file = tools.write_secret(self.dir, auth.add_user("alice"), "refresh-token")
        out = self.out_dir()
        stats_file = os.path.join(self.dir, "wire.json")
        # The slow link is behind byeproxy, so what byeproxy forwards is what
        # reaches mailgrab at once: the BYE comes right at the expiry.
        with tools.Proxy(server.host, server.imap_port, "--rate", "1000000",
                         "--stats-file", stats_file) as slow, \
                ByeProxy(server, mode="expire", expiry_of=auth.expiry_of,
                         target_port=slow.port) as bye:
            res = self.mailgrab("--chunks", "4", "-v", "--auth", "xoauth2",
                                "--oauth2-token-url", auth.token_url,
                                "--oauth2-client-id", auth.client_id,
                                "--oauth2-client-secret-file", secret_file,
                                "--oauth2-refresh-token-file", rt_file,
                                "--oauth2-cafile", auth.ca_file,
                                port=bye.port, output=out)
        wire = self.stats(stats_file)
        stored = sum(map(len, ref_alice.values()))
        facts = (f"\n{res.seconds:.1f} s, {bye.sessions} sessions, {bye.byes} ended at token "
                 f"expiry, {wire['down_bytes']} bytes on the wire for {stored} stored")
        print(facts, file=sys.stderr)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, ref_alice)
        self.assertNoTempFiles(out, res)
        self.assertGreaterEqual(bye.byes, 4, "too few sessions ended" + facts)
        self.assertLessEqual(wire["down_bytes"], 1.3 * stored,
                             "too many bytes fetched again" + facts + res.describe())


class TestTooBig(Base):
    """Sessions live 1.5 s at 1 MB/s: bob's 4.3 MB message can never arrive
    whole.  It is tried alone on new sessions a bounded number of times, then
    given up in one line (exit 1); its 120 neighbours are all stored."""

    def test_message_longer_than_any_session(self):
        big = max(ref_bob, key=lambda u: len(ref_bob[u]))
        self.assertGreater(len(ref_bob[big]), 3_000_000)
        bob_pw = tools.write_secret(self.dir, server.password("bob"))
        out = self.out_dir()
        stats_file = os.path.join(self.dir, "wire.json")
        with tools.Proxy(server.host, server.imaps_port, "--rate", "1000000",
                         "--cut-every", "1.5", "--stats-file", stats_file) as proxy:
            res = self.mailgrab("--chunks", "4", user="bob", port=proxy.port, output=out,
                                password_file_=bob_pw, timeout=90)
        wire = self.stats(stats_file)
        facts = (f"\n{res.seconds:.1f} s, {wire['connections']} connections, "
                 f"{wire['down_bytes']} bytes on the wire")
        print(facts, file=sys.stderr)
        self.assertExit(res, EXIT_PARTIAL)
        self.assertAllIdentical(out, res, {u: b for u, b in ref_bob.items() if u != big})
        self.assertNoTempFiles(out, res)
        lines = [ln for ln in res.stderr.splitlines() if f"UID {big} " in ln]
        self.assertEqual(len(lines), 1, "want one line about the message" + res.describe())
        self.assertRegex(lines[0], r"never arrived whole", res.describe())
        self.assertIn("1 of 121 messages could not be downloaded", res.stderr, res.describe())
        # Bounded: a few new sessions for it, not one after another forever.
        self.assertLess(wire["connections"], 30, facts + res.describe())
        self.assertLess(res.seconds, 60, facts + res.describe())


if __name__ == "__main__":
    unittest.main()
