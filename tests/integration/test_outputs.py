#!/usr/bin/env python3
"""Where each account's backup goes, against a real Dovecot: accounts of one
config file sharing an output each get a directory of their own, a backup
kept directly in the output moves into its account's directory without a
body fetched again, another account is refused a directory that is not its
own, and files, symbolic links and hard links planted in the output never
let a write out of it.
"""

import hashlib
import json
import os
import tempfile
import unittest

from mgtest import corpus, tools
from mgtest.server import start_for_module, stop_for_module
from test_backup import append, bodies_sent, read_box, server_mail, wait_sessions, walk_files

EXIT_OK, EXIT_PARTIAL, EXIT_OWNER = 0, 1, 13
OWNER_FILE = ".mailgrab-account"
LOCK_FILE = ".mailgrab.lock"

EXTRA_USERS = {"mover": "mover-pw", "other": "other-pw", "hostile": "hostile-pw"}

server = None
workdir = None
config_home = None


def setUpModule():
    global server, workdir, config_home
    tools.binary("MAILGRAB")
    server, workdir, config_home = start_for_module("mgtest-out-", EXTRA_USERS)
    for user, n, seed in (("alice", 14, 501), ("bob", 9, 502), ("mover", 12, 503),
                          ("other", 5, 504)):
        corpus.generate(server.maildir(user), n, os.path.join(workdir, f"{user}.json"),
                        seed=seed, big=0, server=server)


def tearDownModule():
    stop_for_module(server, workdir)


def snapshot(top):
    """{path: (kind, size, mtime, sha256)} of everything under top, links not followed."""
    got = {}
    for p in [top] + list(walk_files(top)):
        st = os.lstat(p)
        digest = ""
        if os.path.isfile(p) and not os.path.islink(p):
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        got[p] = (st.st_mode >> 12, st.st_size, st.st_mtime_ns, digest)
    return got


def inodes(top):
    return {os.path.relpath(p, top): os.stat(p).st_ino for p in walk_files(top)
            if p.endswith(".eml")}


class Base(unittest.TestCase):
    maxDiff = 4000

    def out_dir(self):
        return tempfile.mkdtemp(prefix="out-", dir=workdir) + "/backup"

    def write_config(self, body):
        d = tempfile.mkdtemp(prefix="cfg-", dir=workdir)
        path = os.path.join(d, "config")
        with open(path, "w") as f:
            f.write("[defaults]\nserver = 127.0.0.1\n"
                    f"port = {server.imaps_port}\ncafile = {server.ca_file}\n"
                    "chunks = 3\ntimeout = 30\n" + body)
        os.chmod(path, 0o600)
        return path

    def account(self, name, user, extra=""):
        pw = tools.write_secret(workdir, server.password(user))
        return f"\n[account {name}]\nuser = {user}\npassword_file = {pw}\n{extra}"

    def run_mailgrab(self, *args):
        return tools.run([tools.binary("MAILGRAB"), *args],
                         env_extra={"XDG_CONFIG_HOME": config_home}, timeout=90)

    def run_user(self, user, out, *extra):
        pw = tools.write_secret(workdir, server.password(user))
        return self.run_mailgrab(*tools.mailgrab_argv(server, user=user, password_file=pw,
                                                      output=out)[1:], *extra)

    def assertExit(self, res, code):
        self.assertEqual(res.returncode, code,
                         f"expected exit {code}, got {res.returncode}" + res.describe())

    def assertBox(self, box, want, res, fmt="eml"):
        self.assertTrue(os.path.isdir(box), f"no directory {box}" + res.describe())
        got, dups, _ = read_box(box, fmt)
        self.assertEqual(dups, [], f"duplicates in {box}" + res.describe())
        self.assertEqual(sorted(got), sorted(want), f"{box}: other messages" + res.describe())
        self.assertEqual([u for u in want if got[u] != want[u]], [],
                         f"{box}: messages differ from the server's" + res.describe())

    def settle(self, users):
        """A log offset past every session of users so far: Dovecot logs a
        logout when it gets to it, and an earlier run's must not count."""
        for user in users:
            wait_sessions(server, self.start, user)
        return server.log_size()

    def setUp(self):
        self.start = server.log_size()

    def assertNoBodies(self, mark, users, res):
        for user in users:
            log, logins = wait_sessions(server, mark, user)
            self.assertGreater(logins, 0, f"{user} never logged in" + res.describe())
            self.assertEqual(bodies_sent(log, user), 0,
                             f"bodies of {user} were fetched again; Dovecot log:\n{log}"
                             + res.describe())


class TestSharedOutput(Base):
    # Regression: two accounts with [defaults] output wrote into one INBOX;
    # the second was taken for a renumbered mailbox (INBOX%uidvalidity=N).
    def test_two_accounts_each_in_its_own_directory(self):
        out = self.out_dir()
        cfg = self.write_config(f"output = {out}\n" + self.account("home", "alice")
                                + self.account("work", "bob", "format = maildir\n"))
        summary = os.path.join(workdir, "shared-summary.json")
        res = self.run_mailgrab("--config", cfg, "--summary-json", summary)
        self.assertExit(res, EXIT_OK)
        self.assertEqual((res.stdout, res.stderr), ("", ""), res.describe())
        self.assertEqual(sorted(os.listdir(out)), sorted([LOCK_FILE, OWNER_FILE, "home", "work"]),
                         res.describe())
        self.assertBox(os.path.join(out, "home", "INBOX"), server_mail(server, "alice"), res)
        self.assertBox(os.path.join(out, "work", "INBOX"), server_mail(server, "bob"), res,
                       "maildir")
        with open(summary) as f:
            dirs = [b["path"] for a in json.load(f)["accounts"] for b in a["mailboxes"]]
        self.assertEqual(dirs, [os.path.join(out, "home", "INBOX"),
                                os.path.join(out, "work", "INBOX")])

        mark = self.settle(["alice", "bob"])
        res = self.run_mailgrab("--config", cfg)
        self.assertExit(res, EXIT_OK)
        self.assertEqual(res.stderr, "", res.describe())
        self.assertNoBodies(mark, ["alice", "bob"], res)

        # One account alone goes to the same place as in a run of all.
        before = inodes(out)
        mark = self.settle(["alice", "bob"])
        res = self.run_mailgrab("--config", cfg, "--account", "work")
        self.assertExit(res, EXIT_OK)
        self.assertNoBodies(mark, ["bob"], res)
        self.assertEqual(inodes(out), before, res.describe())


class TestMigration(Base):
    def _migrate(self, forget_owner):
        out = self.out_dir()
        one = f"output = {out}\n" + self.account("home", "mover")
        res = self.run_mailgrab("--config", self.write_config(one))
        self.assertExit(res, EXIT_OK)
        self.assertBox(os.path.join(out, "INBOX"), server_mail(server, "mover"), res)
        if forget_owner:  # a backup made before accounts were recorded
            os.unlink(os.path.join(out, OWNER_FILE))
        before = inodes(out)

        # A second account now shares the output.
        cfg = self.write_config(one + self.account("work", "other"))
        mark = self.settle(["mover", "other"])
        res = self.run_mailgrab("--config", cfg)
        self.assertExit(res, EXIT_OK)
        self.assertNoBodies(mark, ["mover"], res)
        self.assertEqual(inodes(os.path.join(out, "home")), before,
                         "the backup was not moved as it was" + res.describe())
        self.assertFalse(os.path.exists(os.path.join(out, "INBOX")), res.describe())
        self.assertBox(os.path.join(out, "home", "INBOX"), server_mail(server, "mover"), res)
        self.assertBox(os.path.join(out, "work", "INBOX"), server_mail(server, "other"), res)
        mark = self.settle(["mover", "other"])
        res = self.run_mailgrab("--config", cfg)
        self.assertExit(res, EXIT_OK)
        self.assertNoBodies(mark, ["mover", "other"], res)

    def test_single_account_backup_moves_without_refetch(self):
        self._migrate(forget_owner=False)

    def test_unrecorded_backup_goes_to_the_first_account(self):
        self._migrate(forget_owner=True)


class TestOwner(Base):
    def test_another_account_is_refused(self):
        out = self.out_dir()
        res = self.run_user("alice", out)
        self.assertExit(res, EXIT_OK)
        before = snapshot(out)
        res = self.run_user("bob", out)
        self.assertExit(res, EXIT_OWNER)
        lines = res.stderr.splitlines()
        self.assertEqual(len(lines), 1, res.describe())
        self.assertIn("user alice on 127.0.0.1", lines[0], res.describe())
        self.assertIn("output of its own", lines[0], res.describe())
        self.assertEqual(snapshot(out), before, "the refused run changed the backup")

    def test_symlinked_owner_record_refused(self):
        out = self.out_dir()
        outside = tempfile.mkdtemp(prefix="outside-", dir=workdir)
        victim = os.path.join(outside, "notes")
        with open(victim, "w") as f:
            f.write("keep me\n")
        os.makedirs(out)
        os.symlink(victim, os.path.join(out, OWNER_FILE))
        before = snapshot(outside)
        res = self.run_user("alice", out)
        self.assertExit(res, EXIT_OWNER)
        self.assertEqual(len(res.stderr.splitlines()), 1, res.describe())
        self.assertIn(OWNER_FILE, res.stderr, res.describe())
        self.assertEqual(snapshot(outside), before, "a file outside the output changed")


class TestHostileFiles(Base):
    """A regular file, a symbolic link out of OUTPUT and hard links to files
    elsewhere, placed where mailgrab writes."""

    @classmethod
    def setUpClass(cls):
        for box, seed in (("INBOX", 601), ("Archive", 602), ("Drafts", 603), ("Sent", 604)):
            append(server, "hostile", box, seed=seed, count=4)

    def _run(self, fmt):
        out = self.out_dir()
        outside = tempfile.mkdtemp(prefix="outside-", dir=workdir)
        os.makedirs(os.path.join(outside, "dir"))
        for name in ("victim-lock", "victim-state", "dir/file"):
            with open(os.path.join(outside, name), "w") as f:
                f.write(f"precious {name}\n")
        os.makedirs(os.path.join(out, "Archive"))
        with open(os.path.join(out, "Sent"), "w") as f:
            f.write("not a mailbox\n")
        os.symlink(os.path.join(outside, "dir"), os.path.join(out, "Drafts"))
        os.link(os.path.join(outside, "victim-lock"), os.path.join(out, LOCK_FILE))
        os.link(os.path.join(outside, "victim-state"),
                os.path.join(out, "Archive", ".mg-tmp-state"))
        before = snapshot(outside)

        res = self.run_user("hostile", out, "--format", fmt, "--mailbox", "INBOX",
                            "--mailbox", "Archive", "--mailbox", "Drafts", "--mailbox", "Sent")
        self.assertEqual(snapshot(outside), before,
                         "a file outside the output changed" + res.describe())
        self.assertExit(res, EXIT_PARTIAL)
        lines = res.stderr.splitlines()
        self.assertEqual(len(lines), 2, "one line per mailbox in the way" + res.describe())
        for box, line in zip(("Drafts", "Sent"), lines):
            self.assertIn(os.path.join(out, box) + " is not a directory", line, res.describe())
            self.assertIn("move it away", line, res.describe())
        for box in ("INBOX", "Archive"):
            self.assertBox(os.path.join(out, box), server_mail(server, "hostile", box), res, fmt)
        self.assertTrue(os.path.islink(os.path.join(out, "Drafts")))
        with open(os.path.join(out, "Sent")) as f:
            self.assertEqual(f.read(), "not a mailbox\n")

        # Once out of the way, the next run completes the backup.
        os.unlink(os.path.join(out, "Sent"))
        os.unlink(os.path.join(out, "Drafts"))
        res = self.run_user("hostile", out, "--format", fmt, "--mailbox", "INBOX",
                            "--mailbox", "Archive", "--mailbox", "Drafts", "--mailbox", "Sent")
        self.assertExit(res, EXIT_OK)
        for box in ("INBOX", "Archive", "Drafts", "Sent"):
            self.assertBox(os.path.join(out, box), server_mail(server, "hostile", box), res, fmt)
        self.assertEqual(snapshot(outside), before, "a file outside the output changed")

    def test_eml(self):
        self._run("eml")

    def test_maildir(self):
        self._run("maildir")


if __name__ == "__main__":
    unittest.main()
