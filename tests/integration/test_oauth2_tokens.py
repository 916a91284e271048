"""Integration: mailgrab's OAuth2 token cache and `mailgrab login` against
the local authorization server (mgtest/authserver.py).

MGTOKEN and MGLOGIN name the test binaries (meson sets them).
"""

import os
import stat
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mgtest.authserver import AuthServer  # noqa: E402

MGTOKEN = os.environ.get("MGTOKEN", "build/tests/tools/mgtoken")
MGLOGIN = os.environ.get("MGLOGIN", "build/tests/tools/mglogin")
INVALID_GRANT = ("the refresh token was revoked or has expired (Google expires them "
                 "after 7 days for apps in testing status): run mailgrab login again")


def write_private(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)


class Base(unittest.TestCase):
    server_args = {}

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="mgoauth.")
        self.dir = self.tmp.name
        self.auth = AuthServer(self.dir, **self.server_args).start()
        self.addCleanup(self.tmp.cleanup)
        self.addCleanup(self.auth.stop)
        self.secret_file = os.path.join(self.dir, "client-secret")
        write_private(self.secret_file, self.auth.client_secret)
        self.state_dir = os.path.join(self.dir, "state")
        os.mkdir(self.state_dir, 0o700)
        self.rt_file = os.path.join(self.state_dir, "refresh-token")

    def assert_no_secret(self, text):
        for s in self.auth.all_secrets():
            self.assertNotIn(s, text, "a secret leaked")

    def mgtoken(self, *extra, cafile=None, url=None):
        args = [MGTOKEN, "--token-url", url or self.auth.token_url,
                "--client-id", self.auth.client_id,
                "--client-secret-file", self.secret_file,
                "--refresh-token-file", self.rt_file,
                "--cafile", cafile or self.auth.ca_file, *extra]
        p = subprocess.run(args, capture_output=True, text=True, timeout=60)
        tokens = [line.split()[2] for line in p.stdout.splitlines()
                  if line.startswith("token ")]
        rounds = {}
        for line in p.stdout.splitlines():
            if line.startswith("token "):
                _, r, t = line.split()
                rounds.setdefault(int(r), set()).add(t)
        refreshes = [int(line.split()[1]) for line in p.stdout.splitlines()
                     if line.startswith("refreshes ")]
        return p, rounds, (refreshes[0] if refreshes else None), tokens


class TokenRefresh(Base):
    server_args = {"rotate": True, "delay": 0.3}

    def test_refresh_rotates_file_atomically_0600(self):
        old = self.auth.add_user("alice")
        write_private(self.rt_file, old)
        p, rounds, refreshes, _ = self.mgtoken("-v", "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(refreshes, 1)
        self.assertEqual(self.auth.refreshes, 1)
        (token,) = rounds[0]
        self.assertTrue(self.auth.is_active(token))
        self.assertEqual(self.auth.user_of(token), "alice")
        with open(self.rt_file) as f:
            new = f.read().strip()
        self.assertNotEqual(new, old)
        self.assertIn(new, self.auth.refresh_tokens)
        self.assertEqual(stat.S_IMODE(os.stat(self.rt_file).st_mode), 0o600)
        self.assertEqual(os.listdir(self.state_dir), ["refresh-token"], "temp file left")
        self.assertIn("rotated the refresh token", p.stderr)
        self.assert_no_secret(p.stderr)
        # The rotated token works for the next run; the old one is dead.
        p, rounds, refreshes, _ = self.mgtoken()
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_concurrent_requests_one_refresh(self):
        write_private(self.rt_file, self.auth.add_user("alice"))
        p, rounds, refreshes, tokens = self.mgtoken("--threads", "16", "-v")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(tokens), 16)
        self.assertEqual(len(rounds[0]), 1, "every thread shares one token")
        self.assertEqual(refreshes, 1)
        self.assertEqual(self.auth.refreshes, 1)
        self.assert_no_secret(p.stderr)

    def test_stale_token_reported_by_all_refreshes_once(self):
        write_private(self.rt_file, self.auth.add_user("alice"))
        p, rounds, refreshes, _ = self.mgtoken("--threads", "12", "--reject")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(rounds[0]), 1)
        self.assertEqual(len(rounds[1]), 1)
        self.assertNotEqual(rounds[0], rounds[1])
        self.assertEqual(refreshes, 2)
        self.assertEqual(self.auth.refreshes, 2)


class TokenFailures(Base):
    def test_revoked_exits_10_with_advice(self):
        write_private(self.rt_file, self.auth.add_user("alice"))
        self.auth.revoke("alice")
        p, _, _, _ = self.mgtoken("--threads", "8", "-v", "-v")
        self.assertEqual(p.returncode, 10, p.stderr)
        self.assertIn(INVALID_GRANT, p.stderr)
        self.assertEqual(self.auth.refreshes, 1, "a dead refresh token is asked about once")
        self.assert_no_secret(p.stderr)

    def test_wrong_ca_is_a_tls_error_naming_the_host(self):
        write_private(self.rt_file, self.auth.add_user("alice"))
        p, _, _, _ = self.mgtoken(cafile=self.auth.untrusted_ca_file)
        self.assertEqual(p.returncode, 10, p.stderr)
        self.assertIn("TLS to the token endpoint 127.0.0.1 failed", p.stderr)
        self.assertEqual(self.auth.refreshes, 0)

    def test_unreachable_endpoint(self):
        write_private(self.rt_file, self.auth.add_user("alice"))
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        p, _, _, _ = self.mgtoken(url="https://127.0.0.1:%d/token" % port)
        self.assertEqual(p.returncode, 10, p.stderr)
        self.assertIn("cannot reach the token endpoint 127.0.0.1", p.stderr)

    def test_wrong_client_secret(self):
        write_private(self.rt_file, self.auth.add_user("alice"))
        write_private(self.secret_file, "not-the-secret")
        p, _, _, _ = self.mgtoken()
        self.assertEqual(p.returncode, 10, p.stderr)
        self.assertIn("invalid_client", p.stderr)
        self.assertNotIn("not-the-secret", p.stderr)

    def test_readable_secret_files_refused(self):
        write_private(self.rt_file, self.auth.add_user("alice"), mode=0o640)
        p, _, _, _ = self.mgtoken()
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("chmod 600", p.stderr)
        os.chmod(self.rt_file, 0o600)
        os.chmod(self.secret_file, 0o604)
        p, _, _, _ = self.mgtoken()
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(self.auth.refreshes, 0)

    def test_token_command(self):
        counter = os.path.join(self.dir, "runs")
        cmd = "echo run >> %s; echo tok-$(wc -l < %s)" % (counter, counter)
        p = subprocess.run([MGTOKEN, "--token-command", cmd, "--threads", "6", "--reject"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("token 0 tok-1\n", p.stdout)
        self.assertIn("token 1 tok-2\n", p.stdout)
        self.assertIn("refreshes 2\n", p.stdout)
        p = subprocess.run([MGTOKEN, "--token-command", "exit 3"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 10, p.stderr)
        self.assertIn("--oauth2-token-command failed (exit status 3)", p.stderr)


class Login(Base):
    def start_login(self, *extra):
        args = [MGLOGIN, "--provider", "gmail",
                "--oauth2-auth-url", self.auth.auth_url,
                "--oauth2-token-url", self.auth.token_url,
                "--oauth2-client-id", self.auth.client_id,
                "--oauth2-client-secret-file", self.secret_file,
                "--oauth2-refresh-token-file", self.rt_file,
                "--oauth2-cafile", self.auth.ca_file, "--timeout", "30", "-v", *extra]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(p.kill)
        url = None
        lines = []
        for line in p.stdout:
            lines.append(line)
            if line.startswith("https://"):
                url = line.strip()
                break
        self.assertIsNotNone(url, "no URL printed: %r" % lines)
        return p, url

    def browse(self, url):
        """Follow the authorization URL like a browser: 302 to the loopback."""
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.auth.client_context()))
        try:
            with opener.open(url, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def finish(self, p):
        out, err = p.communicate(timeout=30)
        return p.returncode, out, err

    def test_login_writes_refresh_token_0600(self):
        p, url = self.start_login()
        status, page = self.browse(url)
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 0, err)
        self.assertEqual(status, 200)
        self.assertIn("close this tab", page)
        q = self.auth.last_authorize
        self.assertEqual(q["code_challenge_method"], "S256")
        self.assertEqual(q["access_type"], "offline")
        self.assertEqual(q["prompt"], "consent")
        self.assertEqual(q["scope"], "https://mail.google.com/")
        self.assertEqual(self.auth.exchanges, 1)
        self.assertEqual(stat.S_IMODE(os.stat(self.rt_file).st_mode), 0o600)
        with open(self.rt_file) as f:
            rt = f.read().strip()
        self.assertEqual(self.auth.refresh_tokens.get(rt), "alice")
        self.assertEqual(os.listdir(self.state_dir), ["refresh-token"])
        self.assert_no_secret(out + err)
        # The stored token is good for the download runs.
        proc, rounds, refreshes, _ = self.mgtoken()
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_wrong_state_refused(self):
        self.auth.wrong_state = True
        p, url = self.start_login()
        status, page = self.browse(url)
        rc, out, err = self.finish(p)
        self.assertEqual(rc, 10, err)
        self.assertEqual(status, 400)
        self.assertIn("wrong state", err)
        self.assertEqual(self.auth.exchanges, 0, "the code must not be redeemed")
        self.assertFalse(os.path.exists(self.rt_file))

    def test_access_denied(self):
        self.auth.deny = True
        p, url = self.start_login()
        status, _ = self.browse(url)
        rc, _, err = self.finish(p)
        self.assertEqual(rc, 10, err)
        self.assertEqual(status, 400)
        self.assertIn("access_denied", err)
        self.assertFalse(os.path.exists(self.rt_file))

    def test_stray_requests_do_not_end_the_wait(self):
        p, url = self.start_login()
        port = url.split("redirect_uri=http%3A%2F%2F127.0.0.1%3A")[1].split("%2F")[0]
        try:
            urllib.request.urlopen("http://127.0.0.1:%s/favicon.ico" % port, timeout=10)
        except urllib.error.HTTPError as e:
            self.assertEqual(e.code, 404)
        status, _ = self.browse(url)
        rc, _, err = self.finish(p)
        self.assertEqual((rc, status), (0, 200), err)

    def test_timeout(self):
        p, _ = self.start_login("--timeout", "1")
        rc, _, err = self.finish(p)
        self.assertEqual(rc, 10, err)
        self.assertIn("no answer from the browser within 1 s", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
