#!/usr/bin/env python3
"""mailgrab verify against a real Dovecot, and the SHA-256 manifests it reads.

A backup is made, then damaged the ways a backup gets damaged (a file
deleted, a file altered, a foreign file dropped in, a message added on the
server since), and verify must name each one and nothing else; on a whole
backup it must say nothing and exit 0; --offline does the file checks
without a server. The manifest must hold, for every stored message, the
SHA-256 of the bytes the server sent (recorded while streaming), and must
survive kill -9 and torn appends: after the next clean run every stored file
has its entry.

One Dovecot serves the module; each test has its own user.
"""

import hashlib
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

from mgtest import corpus, reference, tools
from mgtest.server import start_for_module, stop_for_module

EXIT_OK, EXIT_VERIFY = 0, 12
MANIFEST = ".mailgrab-manifest"
N = 24

USERS = {f"v{k}": f"{k}-pw" for k in
         ("eml", "md", "sha", "shamd", "torn", "kill", "link", "pre", "size", "dmg", "home", "work")}

server = None
workdir = None
config_home = None


def setUpModule():
    global server, workdir, config_home
    tools.binary("MAILGRAB")
    server, workdir, config_home = start_for_module("mgtest-verify-", USERS)


def tearDownModule():
    stop_for_module(server, workdir)


def append(user, start, count, seed=7):
    conn = reference.login(server, user)
    try:
        for i in range(start, start + count):
            msg, mtime, _ = corpus.build_message(seed, i)
            reference.ok(conn.append("INBOX", None, mtime, msg), "APPEND")
    finally:
        conn.logout()


def manifest(box):
    """{uid: (size, sha256 hex, origin, name)} of box's manifest, last line wins;
    fails on any line that is not a comment or a well-formed entry."""
    out = {}
    with open(os.path.join(box, MANIFEST), "rb") as f:
        data = f.read()
    assert data.endswith(b"\n"), f"{box}/{MANIFEST} does not end with a newline"
    for line in data.decode("ascii").splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([1-9]\d*) (\d+) ([0-9a-f]{64}) ([sr]) (\S+)", line)
        assert m, f"bad manifest line {line!r}"
        out[int(m.group(1))] = (int(m.group(2)), m.group(3), m.group(4), m.group(5))
    return out


def stored(box, fmt):
    """{uid: path} of the message files in box."""
    out = {}
    if fmt == "eml":
        for n in os.listdir(box):
            if n.endswith(".eml"):
                out[int(n[:-4])] = os.path.join(box, n)
    else:
        for sub in ("cur", "new"):
            for n in os.listdir(os.path.join(box, sub)):
                m = re.search(r",U=(\d+)", n)
                if m:
                    out[int(m.group(1))] = os.path.join(box, sub, n)
    return out


class Base(unittest.TestCase):
    maxDiff = 4000

    def out_dir(self):
        return tempfile.mkdtemp(prefix="out-", dir=workdir) + "/backup"

    def argv(self, user, *extra, output, verify=False):
        pw = tools.write_secret(workdir, server.password(user))
        argv = tools.mailgrab_argv(server, user=user, password_file=pw, output=output,
                                   extra=extra)
        return [argv[0], "verify"] + argv[1:] if verify else argv

    def run_mg(self, argv, timeout=90):
        return tools.run(argv, env_extra={"XDG_CONFIG_HOME": config_home}, timeout=timeout)

    def backup(self, user, out, fmt="eml", *extra):
        res = self.run_mg(self.argv(user, "--format", fmt, *extra, output=out))
        self.assertEqual(res.returncode, EXIT_OK, "backup failed" + res.describe())
        return res

    def verify(self, user, out, *extra, offline=False):
        if offline:
            argv = [tools.binary("MAILGRAB"), "verify", "--offline", "--output", out, *extra]
        else:
            argv = self.argv(user, *extra, output=out, verify=True)
        return self.run_mg(argv)

    def assertWhole(self, res):
        self.assertEqual(res.returncode, EXIT_OK, "verify of a whole backup" + res.describe())
        self.assertEqual(res.stdout, "", "verify of a whole backup printed problems"
                         + res.describe())

    def assertProblems(self, res, want):
        self.assertEqual(res.returncode, EXIT_VERIFY, "verify of a damaged backup"
                         + res.describe())
        self.assertEqual(sorted(res.stdout.splitlines()), sorted(want), res.describe())

    def assertManifestIsServer(self, box, fmt, user, origins="s"):
        """Every stored file has one entry, and each entry is the server's bytes."""
        ref = reference.fetch_all(server, user=user)
        man = manifest(box)
        files = stored(box, fmt)
        self.assertEqual(sorted(man), sorted(files), f"{box}: manifest UIDs vs stored files")
        self.assertEqual(sorted(files), sorted(ref), f"{box}: stored vs server")
        for uid, (size, sha, origin, name) in man.items():
            self.assertEqual((size, sha), (len(ref[uid]), hashlib.sha256(ref[uid]).hexdigest()),
                             f"uid {uid}: manifest entry is not the server's BODY[]")
            self.assertIn(origin, origins, f"uid {uid}: origin {origin}")
            self.assertEqual(os.path.basename(name), os.path.basename(files[uid]))
        return man


class TestFindsDamage(Base):
    def _damage(self, user, fmt):
        append(user, 0, N)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        self.backup(user, out, fmt)

        # Whole: nothing on stdout, exit 0; with --quiet nothing at all.
        self.assertWhole(self.verify(user, out))
        res = self.verify(user, out, "--quiet")
        self.assertWhole(res)
        self.assertEqual(res.stderr, "", res.describe())
        self.assertWhole(self.verify(user, out, offline=True))

        files = stored(box, fmt)
        rel = {uid: os.path.relpath(p, box) for uid, p in files.items()}
        os.unlink(files[3])
        with open(files[5], "r+b") as f:  # one byte, same size
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0x20]))
        foreign = "notes.txt" if fmt == "eml" else "cur/notes.txt"
        with open(os.path.join(box, foreign), "w") as f:
            f.write("mine\n")
        if fmt == "maildir":
            # A mail client marks a message read and moves another to new/:
            # same messages, not altered.
            p = files[7]
            os.rename(p, p + "RS" if p.endswith(":2,") else re.sub(r":2,.*$", ":2,RS", p))
            os.rename(files[8], os.path.join(box, "new", os.path.basename(files[8])))
        append(user, N, 1)  # a message the backup has not seen: uid N + 1

        files_problems = [f"deleted INBOX/{rel[3]}", f"altered INBOX/{rel[5]}",
                          f"unexpected INBOX/{foreign}"]
        res = self.verify(user, out)
        self.assertProblems(res, files_problems + [f"missing INBOX uid {N + 1}"])
        self.assertIn("4 problems", res.stderr, res.describe())
        self.assertProblems(self.verify(user, out, offline=True), files_problems)

        # A backup run brings back the deleted and the new message; the
        # altered and the foreign file stay as they are, and are still named.
        self.backup(user, out, fmt)
        self.assertProblems(self.verify(user, out),
                            [f"altered INBOX/{rel[5]}", f"unexpected INBOX/{foreign}"])

    def test_eml(self):
        self._damage("veml", "eml")

    def test_maildir(self):
        self._damage("vmd", "maildir")


class TestManifest(Base):
    def test_sums_are_the_servers_bytes_eml(self):
        append("vsha", 0, N)
        out = self.out_dir()
        self.backup("vsha", out, "eml", "--chunks", "3")
        self.assertManifestIsServer(os.path.join(out, "INBOX"), "eml", "vsha")
        self.assertEqual(os.stat(os.path.join(out, "INBOX", MANIFEST)).st_mode & 0o777, 0o600)

    def test_sums_are_the_servers_bytes_maildir(self):
        append("vshamd", 0, N)
        out = self.out_dir()
        self.backup("vshamd", out, "maildir", "--chunks", "3")
        self.assertManifestIsServer(os.path.join(out, "INBOX"), "maildir", "vshamd")

    def test_torn_and_lost_entries_are_recorded_by_the_next_run(self):
        """A run killed after naming files but before (or while) recording
        them: verify calls those files unrecorded, the next run records them."""
        user = "vtorn"
        append(user, 0, N)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        self.backup(user, out)
        path = os.path.join(box, MANIFEST)
        with open(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        # Drop the last four entries, and leave half of the one before.
        kept, torn = lines[:-5], lines[-5][:40]
        with open(path, "wb") as f:
            f.write(b"".join(kept) + torn)
        lost = sorted(int(x.split()[0]) for x in lines[-5:])
        res = self.verify(user, out, offline=True)
        self.assertProblems(res, [f"unrecorded INBOX/{u}.eml" for u in lost])
        append(user, N, 2)
        self.backup(user, out)
        man = self.assertManifestIsServer(box, "eml", user, origins="sr")
        self.assertEqual(sorted(u for u, e in man.items() if e[2] == "r"), lost)
        self.assertWhole(self.verify(user, out))

    def test_backup_older_than_manifests(self):
        user = "vpre"
        append(user, 0, N)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        self.backup(user, out, "maildir")
        os.unlink(os.path.join(box, MANIFEST))
        res = self.verify(user, out)
        self.assertEqual(len(res.stdout.splitlines()), N, res.describe())
        self.assertTrue(all(x.startswith("unrecorded INBOX/cur/") for x in res.stdout.splitlines()),
                        res.describe())
        self.backup(user, out, "maildir")
        self.assertManifestIsServer(box, "maildir", user, origins="r")
        self.assertWhole(self.verify(user, out))

    def test_hard_linked_manifest_is_not_written_through(self):
        user = "vlink"
        append(user, 0, N)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        self.backup(user, out, "eml", "--limit", "10")
        outside = os.path.join(workdir, "outside-" + user)
        with open(outside, "w") as f:
            f.write("not mailgrab's\n")
        os.unlink(os.path.join(box, MANIFEST))
        os.link(outside, os.path.join(box, MANIFEST))
        self.backup(user, out)
        with open(outside) as f:
            self.assertEqual(f.read(), "not mailgrab's\n")
        self.assertEqual(os.stat(os.path.join(box, MANIFEST)).st_nlink, 1)
        self.assertManifestIsServer(box, "eml", user, origins="sr")
        self.assertWhole(self.verify(user, out))

    def test_kill9_then_clean_run(self):
        """kill -9 at moments after commits; the next clean run leaves an entry,
        the server's sum, for every stored file, and verify finds it whole."""
        user = "vkill"
        n = 160
        corpus.generate(server.maildir(user), n, os.path.join(workdir, "kill.json"),
                        seed=31, big=1, big_size=1 << 20, server=server)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        kills = 0
        with tools.Proxy(server.host, server.imaps_port, "--delay-ms", "15") as proxy:
            for share in (0.1, 0.3, 0.5, 0.7):
                pw = tools.write_secret(workdir, server.password(user))
                argv = tools.mailgrab_argv(server, user=user, password_file=pw, output=out,
                                           port=proxy.port,
                                           extra=["--chunks", "4", "--format", "maildir"])
                env = dict(os.environ, XDG_CONFIG_HOME=config_home)
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True)
                t0 = time.monotonic()
                try:
                    while p.poll() is None and time.monotonic() - t0 < 60:
                        try:
                            have = len(os.listdir(os.path.join(box, "cur")))
                        except FileNotFoundError:
                            have = 0
                        if have >= share * n:
                            os.killpg(p.pid, signal.SIGKILL)
                            break
                        time.sleep(0.002)
                finally:
                    if p.poll() is None:
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                kills += p.returncode == -signal.SIGKILL
        self.assertGreaterEqual(kills, 3, "the runs ended before they could be killed")
        self.backup(user, out, "maildir")
        self.assertManifestIsServer(box, "maildir", user, origins="sr")
        self.assertWhole(self.verify(user, out))


class TestOtherProblems(Base):
    def test_size_differs_from_the_server(self):
        """A file cut short but recorded as such (a server that sent less than
        it listed): the manifest agrees, the server does not."""
        user = "vsize"
        append(user, 0, 6)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        self.backup(user, out)
        path = os.path.join(box, "4.eml")
        with open(path, "rb") as f:
            full = f.read()
        cut = full[:len(full) // 2]
        with open(path, "wb") as f:
            f.write(cut)
        man = os.path.join(box, MANIFEST)
        with open(man) as f:
            lines = f.read().splitlines(keepends=True)
        with open(man, "w") as f:
            for line in lines:
                if line.startswith("4 "):
                    line = f"4 {len(cut)} {hashlib.sha256(cut).hexdigest()} s 4.eml\n"
                f.write(line)
        self.assertWhole(self.verify(user, out, offline=True))
        self.assertProblems(self.verify(user, out), [
            f"size INBOX/4.eml ({len(cut)} bytes stored, the server lists {len(full)})"])

    def test_damaged_manifest_foreign_directory_and_missing_mailbox(self):
        user = "vdmg"
        append(user, 0, 6)
        out = self.out_dir()
        box = os.path.join(out, "INBOX")
        self.backup(user, out)
        man = os.path.join(box, MANIFEST)
        with open(man) as f:
            lines = f.read().splitlines(keepends=True)
        lines[2] = "2 12 not-a-sum s 2.eml\n"  # line 3: the entry of uid 2, garbled
        with open(man, "w") as f:
            f.writelines(lines)
        os.mkdir(os.path.join(box, "photos"))
        res = self.verify(user, out, offline=True)
        self.assertProblems(res, ["damaged INBOX/.mailgrab-manifest line 3",
                                  "unrecorded INBOX/2.eml", "unexpected INBOX/photos"])
        # The next backup run rewrites the manifest without the damaged line
        # and records uid 2 from its file; the foreign directory stays.
        res = self.run_mg(self.argv(user, output=out))
        self.assertEqual(res.returncode, EXIT_OK, res.describe())
        self.assertIn("damaged line", res.stderr, res.describe())
        self.assertEqual(manifest(box)[2][2], "r")
        self.assertProblems(self.verify(user, out), ["unexpected INBOX/photos"])
        # A mailbox the server does not have: one error line, exit 6.
        os.rmdir(os.path.join(box, "photos"))
        res = self.verify(user, out, "--mailbox", "INBOX", "--mailbox", "NoSuchBox")
        self.assertEqual(res.returncode, 6, res.describe())
        self.assertEqual(res.stdout, "", res.describe())
        self.assertIn("NoSuchBox", res.stderr, res.describe())


class TestSharedOutput(Base):
    def test_accounts_sharing_an_output(self):
        """Two accounts of a config file share an output, each backed up in
        OUTPUT/<account>: verify checks each in its own place, and names the
        account's directory in its lines."""
        for user in ("vhome", "vwork"):
            append(user, 0, 5)
        out = self.out_dir()
        cfg = os.path.join(tempfile.mkdtemp(prefix="cfg-", dir=workdir), "config")
        with open(cfg, "w") as f:
            f.write(f"[defaults]\nserver = 127.0.0.1\nport = {server.imaps_port}\n"
                    f"cafile = {server.ca_file}\noutput = {out}\n")
            for name, user in (("home", "vhome"), ("work", "vwork")):
                pw = tools.write_secret(workdir, server.password(user))
                f.write(f"\n[account {name}]\nuser = {user}\npassword_file = {pw}\n")
        os.chmod(cfg, 0o600)
        mg = tools.binary("MAILGRAB")
        res = self.run_mg([mg, "--config", cfg])
        self.assertEqual(res.returncode, EXIT_OK, res.describe())
        self.assertWhole(self.run_mg([mg, "verify", "--config", cfg]))
        self.assertWhole(self.run_mg([mg, "verify", "--config", cfg, "--offline"]))
        os.unlink(os.path.join(out, "work", "INBOX", "3.eml"))
        append("vhome", 5, 1)
        self.assertProblems(self.run_mg([mg, "verify", "--config", cfg]),
                            ["missing home/INBOX uid 6", "deleted work/INBOX/3.eml"])
        self.assertProblems(self.run_mg([mg, "verify", "--config", cfg, "--account", "work",
                                         "--offline"]), ["deleted work/INBOX/3.eml"])


class TestSignal(Base):
    def test_sigterm_ends_verify(self):
        """verify on a server that went silent: SIGTERM ends it at once with
        exit 130, not after the 60 s timeout."""
        out = self.out_dir()
        os.makedirs(out)
        with tools.Proxy(server.host, server.imaps_port, "--stall-after", "0") as proxy:
            pw = tools.write_secret(workdir, server.password("veml"))
            argv = tools.mailgrab_argv(server, user="veml", password_file=pw, output=out,
                                       port=proxy.port)
            argv = [argv[0], "verify"] + argv[1:]
            env = dict(os.environ, XDG_CONFIG_HOME=config_home)
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env, start_new_session=True)
            try:
                time.sleep(1)
                self.assertIsNone(p.poll(), "verify ended before the signal")
                t0 = time.monotonic()
                p.send_signal(signal.SIGTERM)
                _, err = p.communicate(timeout=10)
                waited = time.monotonic() - t0
            finally:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        self.assertEqual(p.returncode, 130, err.decode(errors="replace"))
        self.assertLess(waited, 3, "verify took too long to stop")


class TestUsage(Base):
    def test_offline_is_a_verify_option(self):
        res = self.run_mg([tools.binary("MAILGRAB"), "--offline", "--output", workdir])
        self.assertEqual(res.returncode, 2, res.describe())
        res = self.run_mg([tools.binary("MAILGRAB"), "verify", "--offline", "--stats"])
        self.assertEqual(res.returncode, 2, res.describe())

    def test_no_backup_there(self):
        res = self.run_mg([tools.binary("MAILGRAB"), "verify", "--offline", "--output",
                           os.path.join(workdir, "nothing-here")])
        self.assertEqual(res.returncode, 7, res.describe())
        self.assertIn("no backup to verify", res.stderr)


if __name__ == "__main__":
    unittest.main()
