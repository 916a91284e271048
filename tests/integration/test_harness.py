#!/usr/bin/env python3
"""The test harness itself, without mailgrab: Dovecot sandbox, test PKI, corpus
truth, reference fetch and mgproxy.  When these fail, mailgrab's integration
results mean nothing."""

import imaplib
import os
import shutil
import socket
import ssl
import tempfile
import time
import unittest

from mgtest import corpus, reference, tools
from mgtest.server import Dovecot, free_ports, group_members

server = None
workdir = None


def setUpModule():
    global server, workdir
    workdir = tempfile.mkdtemp(prefix="mgtest-h-")
    t0 = time.monotonic()
    server = Dovecot()
    server.start()
    server.startup_seconds = time.monotonic() - t0


def tearDownModule():
    if server is not None:
        server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def tls(cafile):
    return ssl.create_default_context(cafile=cafile)


class TestServer(unittest.TestCase):
    def test_starts_fast(self):
        self.assertLess(server.startup_seconds, 3.0)

    def test_login_over_tls_and_plain(self):
        m = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=tls(server.ca_file))
        self.assertEqual(m.login("alice", "secret")[0], "OK")
        m.logout()
        m = imaplib.IMAP4(server.host, server.imap_port)
        self.assertEqual(m.login("bob", server.password("bob"))[0], "OK")
        m.logout()

    def test_compress_offered_only_when_asked(self):
        """COMPRESS=DEFLATE (imap_zlib) after login with compress=True only:
        the proxies that read IMAP text rely on the default being plain."""
        def caps(srv):
            m = reference.login(srv, "alice")
            try:
                return reference.ok(m.capability(), "CAPABILITY")[0].decode().split()
            finally:
                m.logout()
        self.assertNotIn("COMPRESS=DEFLATE", caps(server))
        with Dovecot(compress=True) as z:
            self.assertIn("COMPRESS=DEFLATE", caps(z))

    def test_untrusted_ca_is_rejected(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            imaplib.IMAP4_SSL(server.host, server.imaps_port,
                              ssl_context=tls(server.untrusted_ca_file))

    def test_wrong_name_is_rejected(self):
        with self.assertRaises(ssl.SSLCertVerificationError) as cm:
            imaplib.IMAP4_SSL(server.wrong_name_host, server.wrong_name_port,
                              ssl_context=tls(server.ca_file))
        self.assertIn("mismatch", str(cm.exception))

    def test_wrong_name_chain_is_valid(self):
        ctx = tls(server.ca_file)
        ctx.check_hostname = False  # only the name is wrong, not the chain
        m = imaplib.IMAP4_SSL(server.wrong_name_host, server.wrong_name_port, ssl_context=ctx)
        m.logout()

    def test_many_parallel_logins(self):
        conns = []
        try:
            for _ in range(20):
                m = imaplib.IMAP4(server.host, server.imap_port)
                m.login("carol", server.password("carol"))
                conns.append(m)
        finally:
            for m in conns:
                m.logout()

    def test_ports_picked_together_differ(self):
        # A server told to listen twice on one port refuses to start
        # ("duplicate listener"), so ports picked for one server must differ.
        for _ in range(2000):
            ports = free_ports("127.0.0.1", "127.0.0.1", "127.0.0.1")
            self.assertEqual(len(set(ports)), 3, ports)

    def test_stop_leaves_no_process(self):
        d = Dovecot()
        d.start()
        pgid = os.getpgid(d.master_pid())
        t0 = time.monotonic()
        d.stop()
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(group_members(pgid), [])
        self.assertFalse(os.path.exists(d.root))


class TestCorpus(unittest.TestCase):
    def test_truth_matches_server_and_grows(self):
        exp_path = os.path.join(workdir, "expected.json")
        exp = corpus.generate(server.maildir("bob"), 120, exp_path, seed=7, big=1,
                              big_size=1 << 20, server=server)
        got = reference.fetch_all(server, user="bob")
        self.assertEqual(len(got), 120)
        self.assertEqual(sum(map(len, got.values())), exp["total"]["bytes"])
        self.assertEqual(sum(exp["sender"].values()), 120)
        self.assertEqual(sum(exp["sender_domain"].values()), 120)
        self.assertEqual(sum(exp["hour_utc"]), 120)
        self.assertEqual(sum(exp["weekday_utc"]), 120)
        self.assertGreater(exp["date_fallback"], 0)
        self.assertIn("(none)", exp["sender"])
        exp2 = corpus.add_messages(server.maildir("bob"), 9, exp_path, seed=7, server=server)
        got2 = reference.fetch_all(server, user="bob")
        self.assertEqual(len(got2), 129)
        self.assertEqual(sum(map(len, got2.values())), exp2["total"]["bytes"])
        self.assertEqual(set(got) - set(got2), set(), "old UIDs must survive")

    def test_deterministic(self):
        for i in (0, 5, 77):
            self.assertEqual(corpus.build_message(3, i), corpus.build_message(3, i))
        self.assertNotEqual(corpus.build_message(3, 1)[0], corpus.build_message(4, 1)[0])

    def test_crlf_only(self):
        for i in range(200):
            msg = corpus.build_message(1, i)[0]
            self.assertEqual(msg.count(b"\n"), msg.count(b"\r\n"))
            self.assertEqual(msg.count(b"\r"), msg.count(b"\r\n"))


class TestProxy(unittest.TestCase):
    def test_passthrough_with_delay(self):
        with tools.Proxy(server.host, server.imap_port, "--delay-ms", "50") as p:
            t0 = time.monotonic()
            m = imaplib.IMAP4(server.host, p.port)  # greeting: one delayed leg
            self.assertGreaterEqual(time.monotonic() - t0, 0.05)
            t0 = time.monotonic()
            m.noop()
            self.assertGreaterEqual(time.monotonic() - t0, 0.1)  # RTT + 2 * delay
            m.login("alice", "secret")
            m.logout()

    def test_close_after(self):
        def chatter(port):
            m = imaplib.IMAP4(server.host, port)
            try:
                m.login("alice", "secret")
                for _ in range(100):  # a few hundred bytes each
                    m.capability()
                m.logout()
            except (imaplib.IMAP4.abort, OSError):
                try:
                    m.shutdown()
                except OSError:
                    pass
                raise

        with tools.Proxy(server.host, server.imap_port, "--close-after", "5000",
                         "--fault-conn", "2") as p:
            chatter(p.port)  # connection 1 is not faulted
            with self.assertRaises((imaplib.IMAP4.abort, OSError)):
                chatter(p.port)
            chatter(p.port)
            log = p.log()
        self.assertIn("conn 2: fault: closing after 5000", log)

        with tools.Proxy(server.host, server.imap_port, "--close-after", "5000",
                         "--fault-times", "1") as p:
            with self.assertRaises((imaplib.IMAP4.abort, OSError)):
                chatter(p.port)  # the first to carry 5000 bytes is cut
            chatter(p.port)
            chatter(p.port)
            log = p.log()
        self.assertEqual(log.count("fault:"), 1, log)

    def test_stall_after(self):
        with tools.Proxy(server.host, server.imap_port, "--stall-after", "10") as p:
            s = socket.create_connection((server.host, p.port), timeout=1)
            self.assertEqual(len(s.recv(100)), 10)
            with self.assertRaises(socket.timeout):
                s.recv(100)
            s.close()
            self.assertIn("stalling after 10", p.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
