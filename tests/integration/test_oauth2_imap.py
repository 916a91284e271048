#!/usr/bin/env python3
"""mailgrab's OAuth2 login (XOAUTH2, OAUTHBEARER) against a real Dovecot whose
oauth2 passdb checks every token at the local authorization server
(mgtest/authserver.py): downloads with the refresh-token flow and with
--oauth2-token-command, `mailgrab login`, tokens that expire during a long
download with connections cut like Gmail's session end, revoked and refused
tokens, secrets kept out of logs and argv, and a connection-limited server.

One Dovecot with OAuth2 serves the module (alice: a normal corpus; bob: many
tiny messages, so a download has many batches); a second, default Dovecot
(no OAuth2, two connections per user and IP) serves the tests that need one.
"""

import os
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from mgtest import corpus, reference, tools
from mgtest.authserver import AuthServer
from mgtest.byeproxy import ByeProxy
from mgtest.checks import Checks
from mgtest.server import Dovecot, stop_for_module

EXIT_OK, EXIT_AUTH, EXIT_OAUTH = 0, 5, 10
SCOPE = "https://mail.google.com/"

N_ALICE = 200
N_BOB = 3072  # tiny messages: 12 batches of 256

workdir = auth = server = plain_server = None
ref_alice = ref_bob = plain_ref = ref_carol = None
secret_file = None


def tiny_corpus(srv, user, n, folder=""):
    """n small messages (~420 bytes) in user's Maildir (or its .folder)."""
    cur = os.path.join(srv.maildir(user), folder and "." + folder, "cur")
    os.makedirs(cur, exist_ok=True)
    for i in range(n):
        body = (f"tiny message {i} for the token lifetime test\r\n" * (i % 7 + 3)).encode()
        head = (f"From: sender{i}@example.org\r\nTo: {user}@example.org\r\n"
                f"Subject: tiny {i}\r\nMessage-ID: <{i}.tiny@mailgrab.test>\r\n"
                f"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\n\r\n").encode()
        msg = head + body
        with open(os.path.join(cur, f"{1672653600 + i}.M{i}P7.tiny,S={len(msg)}:2,"),
                  "wb") as f:
            f.write(msg)
    srv.chown_tree(srv.maildir(user))


def setUpModule():
    global workdir, auth, server, plain_server, ref_alice, ref_bob, plain_ref, secret_file
    global ref_carol
    tools.binary("MAILGRAB")
    workdir = tempfile.mkdtemp(prefix="mgtest-oauth-")
    os.chmod(workdir, 0o755)
    auth = AuthServer(os.path.join(workdir, "auth")).start()
    try:
        server = Dovecot(auth_server=auth).start()
        corpus.generate(server.maildir("alice"), N_ALICE,
                        os.path.join(workdir, "expected-alice.json"),
                        big=1, big_size=1 << 20, server=server)
        tiny_corpus(server, "bob", N_BOB)
        ref_alice = reference.fetch_all(server, "alice")
        ref_bob = reference.fetch_all(server, "bob")
        tiny_corpus(server, "carol", 600)
        tiny_corpus(server, "carol", 50, folder="Archive")
        ref_carol = {box: reference.fetch_all(server, "carol", mailbox=box)
                     for box in ("INBOX", "Archive")}
        plain_server = Dovecot(max_connections=2).start()
        corpus.generate(plain_server.maildir("alice"), N_ALICE,
                        os.path.join(workdir, "expected-plain.json"),
                        big=1, big_size=1 << 20, server=plain_server)
        plain_ref = reference.fetch_all(plain_server, "alice")
        secret_file = tools.write_secret(workdir, auth.client_secret, "client-secret")
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    stop_for_module(server, workdir, plain_server, auth)


class Base(Checks, unittest.TestCase):
    maxDiff = 2000

    def setUp(self):
        auth.token_lifetime = 3600
        self.dir = tempfile.mkdtemp(prefix="t-", dir=workdir)
        self.refreshes0 = auth.refreshes

    def refreshes(self):
        return auth.refreshes - self.refreshes0

    def refresh_token_file(self, user="alice"):
        return tools.write_secret(self.dir, auth.add_user(user), "refresh-token")

    def oauth_args(self, rt_file, mech="xoauth2"):
        return ["--auth", mech, "--oauth2-token-url", auth.token_url,
                "--oauth2-client-id", auth.client_id,
                "--oauth2-client-secret-file", secret_file,
                "--oauth2-refresh-token-file", rt_file,
                "--oauth2-cafile", auth.ca_file]

    def out_dir(self):
        return os.path.join(tempfile.mkdtemp(prefix="out-", dir=self.dir), "mail")

    def mailgrab(self, *extra, srv=None, user="alice", output=None, port=None,
                 timeout=90, watch=None, password_file=None):
        argv = tools.mailgrab_argv(srv or server, user=user, port=port, output=output,
                                   password_file=password_file, extra=extra)
        return tools.run(argv, timeout=timeout, watch=watch)

    def assertNothingOnDisk(self, out, res):
        found = []
        if os.path.exists(out):
            for dirpath, dirnames, filenames in os.walk(out):
                found += [n for n in filenames if n.endswith(".eml") or ".mg-tmp-" in n]
        self.assertEqual(found, [], "files left on disk" + res.describe())


class TestDownload(Base):
    def test_refresh_token_flow_xoauth2_and_oauthbearer(self):
        rt_file = self.refresh_token_file()
        for mech in ("xoauth2", "oauthbearer"):
            with self.subTest(mech=mech):
                before = auth.refreshes
                mark = server.log_size()
                out = self.out_dir()
                res = self.mailgrab("--chunks", "4", "-v", *self.oauth_args(rt_file, mech),
                                    output=out)
                self.assertExit(res, EXIT_OK)
                self.assertAllIdentical(out, res, ref_alice)
                log = server.log_since(mark)
                self.assertIn(f"method={mech.upper()}", log, res.describe())
                self.assertNotIn("method=PLAIN", log)
                # One refresh serves all four connections.
                self.assertEqual(auth.refreshes - before, 1, res.describe())
                self.assertIn("1 OAuth2 token refresh\n", res.stderr, res.describe())

    def test_token_command(self):
        """A helper program that gets the access token itself (here: from the
        token endpoint) is run once and its token logs every connection in."""
        rt_file = self.refresh_token_file()
        counter = os.path.join(self.dir, "runs")
        script = os.path.join(self.dir, "token-helper")
        with open(script, "w") as f:
            f.write(f"""#!{sys.executable}
import json, ssl, urllib.parse, urllib.request
with open({counter!r}, "a") as f:
    f.write("run\\n")
form = urllib.parse.urlencode({{
    "grant_type": "refresh_token", "client_id": {auth.client_id!r},
    "client_secret": open({secret_file!r}).read().strip(),
    "refresh_token": open({rt_file!r}).read().strip()}}).encode()
ctx = ssl.create_default_context(cafile={auth.ca_file!r})
with urllib.request.urlopen({auth.token_url!r}, data=form, context=ctx) as r:
    print(json.load(r)["access_token"])
""")
        os.chmod(script, 0o700)
        out = self.out_dir()
        res = self.mailgrab("--chunks", "4", "--auth", "xoauth2",
                            "--oauth2-token-command", script, output=out)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, ref_alice)
        with open(counter) as f:
            runs = f.read().count("run")
        self.assertEqual(runs, 1, "the token command should run once for 4 connections"
                         + res.describe())


class TestLogin(Base):
    def start_login(self, rt_file):
        argv = [tools.binary("MAILGRAB"), "login",
                "--oauth2-auth-url", auth.auth_url, "--oauth2-token-url", auth.token_url,
                "--oauth2-scope", SCOPE, "--oauth2-client-id", auth.client_id,
                "--oauth2-client-secret-file", secret_file,
                "--oauth2-refresh-token-file", rt_file,
                "--oauth2-cafile", auth.ca_file, "--timeout", "30"]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        seen = []
        for line in p.stdout:
            seen.append(line)
            if line.startswith("https://"):
                return p, line.strip()
        p.wait()
        self.fail(f"mailgrab login printed no URL: {seen!r}\n{p.stderr.read()}")

    def browse(self, url):
        """The browser: open the URL, follow the 302 to mailgrab's listener."""
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=auth.client_context()))
        try:
            with opener.open(url, timeout=30) as r:
                return r.status, r.geturl()
        except urllib.error.HTTPError as e:
            return e.code, e.geturl()

    def test_login_then_download(self):
        rt_file = os.path.join(self.dir, "refresh-token")
        p, url = self.start_login(rt_file)
        status, landed = self.browse(url)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(status, 200, err)
        self.assertTrue(landed.startswith("http://127.0.0.1:"), landed)
        self.assertEqual(stat.S_IMODE(os.stat(rt_file).st_mode), 0o600)
        with open(rt_file) as f:
            self.assertEqual(auth.refresh_tokens.get(f.read().strip()), "alice")
        dl_out = self.out_dir()
        res = self.mailgrab("--chunks", "4", *self.oauth_args(rt_file), output=dl_out)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(dl_out, res, ref_alice)

    def test_wrong_state_refused(self):
        rt_file = os.path.join(self.dir, "refresh-token")
        auth.wrong_state = True
        try:
            exchanges = auth.exchanges
            p, url = self.start_login(rt_file)
            self.browse(url)
            out, err = p.communicate(timeout=30)
        finally:
            auth.wrong_state = False
        self.assertEqual(p.returncode, EXIT_OAUTH, err)
        self.assertIn("state", err)
        self.assertEqual(auth.exchanges, exchanges, "the code must not be redeemed")
        self.assertEqual(os.listdir(self.dir), [], "mailgrab login wrote a file")


class TestShortTokens(Base):
    """Tokens live 4 s; the download lasts several of those lifetimes (mgproxy
    delays each direction by 200 ms) and the server side ends sessions in the
    middle of a FETCH after 140 kB (ByeProxy in front of Dovecot's plain port):
    with Gmail's `* BYE` between two messages, or by closing the connection
    halfway through one.  140 kB is more than one 256-message batch of bob's
    tiny messages, so every session gets work done; ByeProxy interrupts each
    batch at most once.  The reconnects come after the token has expired."""

    LIFETIME = 4

    def _cut_up_download(self, mode, mech):
        auth.token_lifetime = self.LIFETIME
        rt_file = self.refresh_token_file("bob")
        mark = server.log_size()
        out = self.out_dir()
        with ByeProxy(server, after_bytes=140000, times=12, mode=mode) as bye, \
                tools.Proxy(server.host, bye.port, "--delay-ms", "200") as delay:
            res = self.mailgrab("--chunks", "4", "-v", *self.oauth_args(rt_file, mech),
                                user="bob", port=delay.port, output=out, timeout=120)
        refreshes = self.refreshes()
        logins = server.log_since(mark).count(f"Login: user=<bob>, method={mech.upper()}")
        facts = (f"\n{mode}/{mech}: {res.seconds:.1f} s, {refreshes} refreshes, "
                 f"{logins} logins, {bye.byes} sessions ended by the server")
        print(facts, file=sys.stderr)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, ref_bob)
        self.assertNoTempFiles(out, res)
        self.assertGreaterEqual(bye.byes, 4, "too few session ends" + facts)
        self.assertGreater(res.seconds, 2 * self.LIFETIME,
                           "the download did not outlive the token" + facts)
        # The token expired and was renewed during the run.
        self.assertGreaterEqual(refreshes, 2, facts + res.describe())
        # A token is refreshed only when a login needs one and it is within a
        # quarter of its lifetime (1 s) of expiry, so each new token serves at
        # least 3 s: at most one refresh per 3 s of run, plus the first, plus
        # one after a token Dovecot refused at the edge of its expiry.
        bound = int(res.seconds / (self.LIFETIME * 3 / 4)) + 2
        self.assertLessEqual(refreshes, bound, facts + res.describe())
        # Not one refresh per login: connections share the cached token.
        self.assertLess(refreshes, logins, facts + res.describe())

    def test_bye_between_messages(self):
        self._cut_up_download("bye", "xoauth2")

    def test_connection_cut_mid_message(self):
        self._cut_up_download("cut", "oauthbearer")

    def test_token_dies_before_its_expiry(self):
        """The authorization server kills every access token 4 s into the run
        (expires_in said an hour): the next logins are refused after the `+`
        challenge, the refusal reaches the shared cache, one refresh serves
        all connections, and the download completes."""
        rt_file = self.refresh_token_file("bob")
        mark = server.log_size()
        t0 = time.monotonic()
        killed = []

        def watch(pid):
            if not killed and time.monotonic() - t0 > 4:
                auth.expire_access_tokens()
                killed.append(time.monotonic() - t0)

        out = self.out_dir()
        with ByeProxy(server, after_bytes=140000, times=12) as bye, \
                tools.Proxy(server.host, bye.port, "--delay-ms", "200") as delay:
            res = self.mailgrab("--chunks", "4", "-v", *self.oauth_args(rt_file),
                                user="bob", port=delay.port, output=out, watch=watch,
                                timeout=120)
        log = server.log_since(mark)
        refused = log.count("oauth2 failed: Introspection failed")
        facts = (f"\n{res.seconds:.1f} s, {self.refreshes()} refreshes, {refused} refused "
                 f"logins, {bye.byes} sessions ended by the server")
        print(facts, file=sys.stderr)
        self.assertTrue(killed, "the run ended before the tokens were killed" + facts)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, ref_bob)
        self.assertGreaterEqual(refused, 1, "no login used the dead token" + facts + log[-3000:])
        self.assertEqual(self.refreshes(), 2, facts + res.describe())


class TestControlSessionEnded(Base):
    """The session mailgrab lists and opens mailboxes on (its first one) is
    ended by the server, as Gmail does when the session's token expires:
    mailgrab should reconnect, as it does for a fetching session."""

    def test_bye_during_the_listing(self):
        rt_file = self.refresh_token_file("bob")
        out = self.out_dir()
        # bob's listing of 3072 sizes is ~110 kB: the BYE lands inside it.
        with ByeProxy(server, after_bytes=20000, times=1) as bye:
            res = self.mailgrab("--chunks", "2", "-v", *self.oauth_args(rt_file),
                                user="bob", port=bye.port, output=out)
        self.assertEqual(bye.byes, 1, "no BYE was sent" + res.describe())
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, ref_bob)

    def test_idle_session_ended_between_mailboxes(self):
        rt_file = self.refresh_token_file("carol")
        out = self.out_dir()
        # Every session that comes back to open the second mailbox finds
        # itself ended: the control session first, then the workers.
        with ByeProxy(server, after_bytes=0, times=4, mode="reexamine") as bye:
            res = self.mailgrab("--chunks", "4", "-v", *self.oauth_args(rt_file),
                                "-m", "INBOX", "-m", "Archive", user="carol",
                                port=bye.port, output=out)
        # The sessions the first mailbox opened (the control session, and
        # those opened ahead or by workers: a few for these small mailboxes,
        # never more than --chunks) come back for the second, and are ended.
        self.assertGreaterEqual(bye.byes, 1, "no session was ended" + res.describe())
        self.assertLessEqual(bye.byes, 4, res.describe())
        self.assertExit(res, EXIT_OK)
        for box in ("INBOX", "Archive"):
            self.assertAllIdentical(out, res, ref_carol[box], mailbox=box)


class TestTokenFailures(Base):
    def test_revoked_refresh_token(self):
        rt_file = self.refresh_token_file()
        auth.revoke("alice")
        out = self.out_dir()
        res = self.mailgrab("--chunks", "4", *self.oauth_args(rt_file), output=out)
        self.assertExit(res, EXIT_OAUTH)
        self.assertRevokedMessage(res)
        self.assertNothingOnDisk(out, res)

    def assertRevokedMessage(self, res):
        # invalid_grant, said in words the user can act on
        self.assertIn("refresh token was revoked or has expired", res.stderr, res.describe())
        self.assertIn("run mailgrab login again", res.stderr, res.describe())

    def test_revoked_during_the_download(self):
        """Revoked while connections are being cut and the 4 s tokens expire:
        the next refresh fails, the run stops with exit 10 and leaves only
        complete, byte-identical messages behind."""
        auth.token_lifetime = 4
        rt_file = self.refresh_token_file("bob")
        t0 = time.monotonic()
        revoked = []

        def watch(pid):
            if not revoked and time.monotonic() - t0 > 4:
                auth.revoke("bob")
                revoked.append(time.monotonic() - t0)

        out = self.out_dir()
        with tools.Proxy(server.host, server.imaps_port, "--delay-ms", "200",
                         "--close-after", "140000", "--fault-times", "30") as proxy:
            res = self.mailgrab("--chunks", "4", *self.oauth_args(rt_file), user="bob",
                                port=proxy.port, output=out, watch=watch, timeout=120)
        self.assertTrue(revoked, "the run ended before the revocation" + res.describe())
        self.assertExit(res, EXIT_OAUTH)
        self.assertRevokedMessage(res)
        self.assertNoTempFiles(out, res)
        got = self.stored(out, res) if os.path.isdir(os.path.join(out, "INBOX")) else {}
        self.assertLess(len(got), len(ref_bob), "revocation came too late" + res.describe())
        bad = [u for u in got if got[u] != ref_bob.get(u)]
        self.assertEqual(bad, [], "stored messages are not complete" + res.describe())

    def test_token_refused_at_imap(self):
        """alice's token offered as carol: Dovecot's passdb sees the wrong
        e-mail in the introspection answer and refuses it."""
        rt_file = self.refresh_token_file("alice")
        out = self.out_dir()
        res = self.mailgrab("--chunks", "1", *self.oauth_args(rt_file), user="carol",
                            output=out)
        self.assertExit(res, EXIT_AUTH)
        self.assertIn("refused the OAuth2 token", res.stderr, res.describe())
        # The refusal is reported to the cache and one fresh token is tried.
        self.assertEqual(self.refreshes(), 2, res.describe())
        self.assertNothingOnDisk(out, res)

    def test_server_without_the_mechanism(self):
        rt_file = self.refresh_token_file()
        out = self.out_dir()
        res = self.mailgrab(*self.oauth_args(rt_file), srv=plain_server, output=out)
        self.assertExit(res, EXIT_AUTH)
        self.assertIn("AUTH=XOAUTH2", res.stderr, res.describe())
        self.assertNothingOnDisk(out, res)


class TestSecrets(Base):
    def test_no_secret_in_logs_or_argv(self):
        rt_file = self.refresh_token_file()
        # bob's password: alice's ("secret") is part of an option name
        pw_file = tools.write_secret(self.dir, server.password("bob"))
        cmdlines = []

        def watch(pid):
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        if os.getpgid(int(p)) == pid:
                            with open(f"/proc/{p}/cmdline", "rb") as f:
                                cmdlines.append(f.read())
                    except OSError:
                        pass

        runs = []
        for mech in ("xoauth2", "oauthbearer"):
            out = self.out_dir()
            res = self.mailgrab("--chunks", "4", "-vv", *self.oauth_args(rt_file, mech),
                                output=out, watch=watch)
            self.assertExit(res, EXIT_OK)
            runs.append(res)
        out = self.out_dir()
        res = self.mailgrab("--chunks", "4", "-vv", "--limit", "20", user="bob",
                            output=out, password_file=pw_file, watch=watch)
        self.assertExit(res, EXIT_OK)
        runs.append(res)
        self.assertTrue(cmdlines, "never saw mailgrab's argv")
        secrets = auth.all_secrets() + [server.password("bob")]
        for res in runs:
            text = res.stdout + res.stderr
            leaked = [s for s in secrets if s in text]
            self.assertEqual(leaked, [], "a secret was printed" + res.describe())
        leaked = [s for s in secrets for c in cmdlines if s.encode() in c]
        self.assertEqual(leaked, [], "a secret was in a process's argv")


class TestConnectionLimit(Base):
    def test_continues_with_the_connections_it_has(self):
        """Dovecot allows two sessions per user and IP; six are asked for."""
        pw_file = tools.write_secret(self.dir, plain_server.password("alice"))
        out = self.out_dir()
        res = self.mailgrab("--chunks", "6", "-v", srv=plain_server, output=out,
                            password_file=pw_file)
        self.assertExit(res, EXIT_OK)
        self.assertAllIdentical(out, res, plain_ref)
        self.assertIn("Maximum number of connections", plain_server.log_text(),
                      "the limit was never hit" + res.describe())


if __name__ == "__main__":
    unittest.main(verbosity=2)
