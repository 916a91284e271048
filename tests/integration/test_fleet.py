#!/usr/bin/env python3
"""mailgrab run by machines, against a real Dovecot: the --events stream
(parsed line by line, counters monotonic, the end event equal to the summary
JSON, errors with their exit-code class), the --metrics file (accepted by
promtool, its figures the summary's, a last success carried over a failed
run), and --shard over a config of 12 accounts (for N = 1..5 the shards
together back up every account exactly once, the N shards of one N running
at once into one shared output), with --shard auto reading Slurm's and
Kubernetes' variables; and a real one-node Slurm (mgtest/slurm.py) running
config/mailgrab-slurm.sh as a 3-task job array.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from mgtest import corpus, slurm, tools
from mgtest.checks import Checks
from mgtest.server import start_for_module, stop_for_module

EXIT_OK, EXIT_USAGE, EXIT_AUTH = 0, 2, 5
SHARD_USERS = {f"acct{i:02d}": f"pw-{i:02d}" for i in range(1, 13)}
CLASSES = {"success", "partial", "later", "permanent", "interrupted"}

server = None
workdir = None
config_home = None


def setUpModule():
    global server, workdir, config_home
    tools.binary("MAILGRAB")
    server, workdir, config_home = start_for_module("mgtest-fleet-", SHARD_USERS)
    # alice has a mailbox large enough to take a few seconds through a slow
    # proxy (progress events); the 12 shard accounts have two messages each.
    corpus.generate(server.maildir("alice"), 60, os.path.join(workdir, "alice.json"), seed=1401,
                    big=2, big_size=1 << 20, server=server)
    corpus.generate(server.maildir("bob"), 7, os.path.join(workdir, "bob.json"), seed=1402,
                    big=0, server=server)
    for i, user in enumerate(SHARD_USERS):
        corpus.generate(server.maildir(user), 2, os.path.join(workdir, f"{user}.json"),
                        seed=1410 + i, big=0, server=server)


def tearDownModule():
    stop_for_module(server, workdir)


def slurp(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_events(path):
    """Every line of an events stream, each parsed on its own."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return events_of(text)


def events_of(text):
    assert text.endswith("\n"), "the stream does not end with a newline"
    return [json.loads(line) for line in text.splitlines()]


class Base(Checks, unittest.TestCase):
    maxDiff = 8000

    def tmp(self, prefix):
        return tempfile.mkdtemp(prefix=prefix, dir=workdir)

    def write_config(self, body, defaults="", chunks=2):
        path = os.path.join(self.tmp("cfg-"), "config")
        with open(path, "w") as f:
            f.write("[defaults]\nserver = 127.0.0.1\n"
                    f"port = {server.imaps_port}\ncafile = {server.ca_file}\n"
                    f"chunks = {chunks}\ntimeout = 30\n" + defaults + body)
        os.chmod(path, 0o600)
        return path

    def account(self, name, user, password=None, extra=""):
        pw = tools.write_secret(workdir, password or server.password(user))
        return f"\n[account {name}]\nuser = {user}\npassword_file = {pw}\n{extra}"

    def run_mailgrab(self, *args, env=None, timeout=120):
        extra = {"XDG_CONFIG_HOME": config_home}
        extra.update(env or {})
        return tools.run([tools.binary("MAILGRAB"), *args], env_extra=extra, timeout=timeout)

    def summary(self, path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def check_stream(self, events, summary, res):
        """The stream's shape: numbered, versioned, bracketed, monotonic."""
        self.assertGreaterEqual(len(events), 2, res.describe())
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)))
        for e in events:
            self.assertEqual(e["schema"], 1, e)
            self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(events[0]["event"], "run_start")
        self.assertEqual(events[-1]["event"], "run_end")
        self.assertEqual([e for e in events if e["event"] in ("run_start", "run_end")],
                         [events[0], events[-1]])
        # the end event is the summary JSON
        self.assertEqual(events[-1]["summary"], summary)
        self.assertEqual(events[-1]["exit_code"], res.returncode)
        self.assertEqual(events[-1]["class"], summary["class"])
        self.assertIn(summary["class"], CLASSES)
        # account_end carries the summary's account object, in order
        ends = [e["report"] for e in events if e["event"] == "account_end"]
        self.assertEqual(ends, summary["accounts"])
        # each mailbox: start, progress that never goes back, end = summary
        boxes = {}
        for e in events:
            key = (e.get("account"), e.get("mailbox") or e.get("report", {}).get("name"))
            if e["event"] == "mailbox_start":
                self.assertNotIn(key, boxes, "mailbox started twice")
                boxes[key] = {"progress": [], "end": None}
            elif e["event"] == "progress":
                self.assertIsNone(boxes[key]["end"], "progress after the mailbox ended")
                boxes[key]["progress"].append(e)
            elif e["event"] == "mailbox_end":
                boxes[key]["end"] = e
        for acct in summary["accounts"]:
            for box in acct["mailboxes"]:
                seen = boxes[(acct["account"], box["name"])]
                self.assertEqual(seen["end"]["report"], box)
                prog = seen["progress"]
                for a, b in zip(prog, prog[1:]):
                    for field in ("messages", "bytes", "seconds"):
                        self.assertLessEqual(a[field], b[field], f"{field} went back: {a} {b}")
                    self.assertEqual(a["messages_total"], b["messages_total"])
                if prog:
                    self.assertTrue(prog[-1]["done"])
                    self.assertEqual(prog[-1]["messages"], box["new"])
                    self.assertEqual([p for p in prog if p["done"]], prog[-1:])
        return boxes


class TestEvents(Base):
    def alice_run(self):
        """A fresh output, events and summary paths, alice's password file."""
        return (self.tmp("out-"), os.path.join(self.tmp("ev-"), "events.jsonl"),
                os.path.join(self.tmp("sj-"), "summary.json"),
                tools.write_secret(workdir, server.password("alice")))

    def test_stream_of_a_slow_download(self):
        out, ev, sj, pw = self.alice_run()
        # About 2.6 MB through two connections of 300 kB/s each: about 5 s,
        # so progress is reported (every 2 s) while it goes.
        with tools.Proxy(server.host, server.imaps_port, "--rate", "300000") as proxy:
            res = self.run_mailgrab(
                *tools.mailgrab_argv(server, user="alice", port=proxy.port, password_file=pw,
                                     output=out)[1:],
                "--chunks", "2", "--quiet", "--events", ev, "--summary-json", sj)
        self.assertExit(res, EXIT_OK)
        self.assertEqual(res.stderr, "", res.describe())
        events = read_events(ev)
        summary = self.summary(sj)
        boxes = self.check_stream(events, summary, res)
        prog = boxes[("command line", "INBOX")]["progress"]
        self.assertGreaterEqual(len(prog), 3, f"too few progress events: {prog}")
        moving = [p for p in prog if not p["done"]]
        self.assertTrue(all(p["eta_seconds"] is None or p["eta_seconds"] >= 0 for p in moving))
        self.assertTrue(any(p["bytes_per_second"] > 0 and p["eta_seconds"] is not None
                            for p in moving), prog)
        self.assertLess(moving[0]["messages"], 60)
        self.assertEqual(summary["accounts"][0]["mailboxes"][0]["new"], 60)
        self.assertEqual(events[0]["accounts"], 1)
        self.assertIsNone(events[0]["shard"])

        # Nothing new, the stream on standard output: only events there.
        res2 = self.run_mailgrab(
            *tools.mailgrab_argv(server, user="alice", password_file=pw, output=out)[1:],
            "--quiet", "--events", "-", "--summary-json", sj)
        self.assertExit(res2, EXIT_OK)
        events2 = events_of(res2.stdout)
        self.check_stream(events2, self.summary(sj), res2)
        self.assertEqual(events2[-1]["summary"]["accounts"][0]["mailboxes"][0]["skipped"], 60)

    def test_sigterm_ends_the_stream_as_interrupted(self):
        out, ev, sj, pw = self.alice_run()
        with tools.Proxy(server.host, server.imaps_port, "--rate", "100000") as proxy:
            argv = tools.mailgrab_argv(server, user="alice", port=proxy.port, password_file=pw,
                                       output=out)
            p = subprocess.Popen(argv + ["--quiet", "--events", ev, "--summary-json", sj],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE,
                                 env={**os.environ, "XDG_CONFIG_HOME": config_home})
            try:
                deadline = time.monotonic() + 30
                while not (os.path.exists(ev) and '"progress"' in slurp(ev)):
                    self.assertIsNone(p.poll(), "the run ended before any progress")
                    self.assertLess(time.monotonic(), deadline, "no progress event in 30 s")
                    time.sleep(0.05)
                t0 = time.monotonic()
                p.send_signal(signal.SIGTERM)
                _, err = p.communicate(timeout=10)
                took = time.monotonic() - t0
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.assertEqual(p.returncode, 130, err.decode())
        self.assertLess(took, 5)
        events = read_events(ev)
        summary = self.summary(sj)
        self.check_stream(events, summary,
                          tools.Run(argv, p.returncode, "", err.decode(), took))
        self.assertEqual((events[-1]["exit_code"], events[-1]["class"]), (130, "interrupted"))
        ended = [e for e in events if e["event"] == "mailbox_end"]
        self.assertEqual(len(ended), 1)
        self.assertLess(ended[0]["report"]["new"], 60)

    def test_errors_carry_their_class(self):
        out = self.tmp("out-")
        ev = os.path.join(self.tmp("ev-"), "events.jsonl")
        sj = os.path.join(workdir, "errors-summary.json")
        cfg = self.write_config(self.account("wrong", "bob", password="not-the-password")
                                + self.account("good", "bob"), f"output = {out}\n")
        res = self.run_mailgrab("--config", cfg, "--events", ev, "--summary-json", sj)
        self.assertExit(res, EXIT_AUTH)
        events = read_events(ev)
        summary = self.summary(sj)
        self.check_stream(events, summary, res)
        errors = [e for e in events if e["event"] == "error"]
        self.assertEqual(len(errors), 1, errors)
        self.assertEqual((errors[0]["account"], errors[0]["exit_code"], errors[0]["status"],
                          errors[0]["class"]), ("wrong", EXIT_AUTH, "auth", "permanent"))
        self.assertIn(errors[0]["message"], res.stderr)
        self.assertEqual([(a["account"], a["class"]) for a in summary["accounts"]],
                         [("wrong", "permanent"), ("good", "success")])
        self.assertEqual(summary["class"], "permanent")
        self.assertEqual([e["account"] for e in events if e["event"] == "account_start"],
                         ["wrong", "good"])

    def test_warnings_reach_the_stream_even_when_quiet(self):
        out, ev, sj, _ = self.alice_run()
        argv = tools.mailgrab_argv(server, user="bob", password_file=tools.write_secret(
            workdir, server.password("bob")), output=out)[1:]
        self.assertExit(self.run_mailgrab(*argv, "--quiet"), EXIT_OK)
        manifest = os.path.join(out, "INBOX", ".mailgrab-manifest")
        with open(manifest) as f:
            lines = f.read().splitlines(keepends=True)
        lines[2] = "2 12 not-a-sum s 2.eml\n"  # one garbled line: a warning on the next run
        with open(manifest, "w") as f:
            f.writelines(lines)
        res = self.run_mailgrab(*argv, "--quiet", "--events", ev, "--summary-json", sj)
        self.assertExit(res, EXIT_OK)
        self.assertEqual(res.stderr, "", "--quiet shows no warning" + res.describe())
        events = read_events(ev)
        self.check_stream(events, self.summary(sj), res)
        warnings = [e for e in events if e["event"] == "warning"]
        self.assertEqual(len(warnings), 1, events)
        self.assertIn("1 damaged line", warnings[0]["message"])
        self.assertNotIn("\n", warnings[0]["message"])
        # without --quiet the same line is on stderr
        with open(manifest, "w") as f:
            f.writelines(lines)
        res = self.run_mailgrab(*argv, "--events", ev)
        self.assertEqual(res.stderr.strip(), "mailgrab: warning: " + warnings[0]["message"])

    def test_early_failure_is_an_event_too(self):
        ev = os.path.join(self.tmp("ev-"), "events.jsonl")
        res = self.run_mailgrab("--config", os.path.join(workdir, "no-such-config"),
                                "--events", ev)
        self.assertNotEqual(res.returncode, EXIT_OK, res.describe())
        events = read_events(ev)
        self.assertEqual([e["event"] for e in events], ["error", "run_end"])
        self.assertEqual(events[0]["exit_code"], res.returncode)
        self.assertEqual(events[1]["summary"]["accounts"], [])


def parse_metrics(text):
    """{(name, account): value} of a text-format file."""
    got = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.fullmatch(r'(\w+)\{account="((?:[^"\\]|\\.)*)"\} (\S+)', line)
        assert m, f"not a sample line: {line!r}"
        got[(m.group(1), m.group(2))] = float(m.group(3))
    return got


class TestMetrics(Base):
    def promtool(self, path):
        exe = shutil.which("promtool")
        self.assertIsNotNone(exe, "promtool is missing: run scripts/install-deps")
        with open(path, "rb") as f:
            p = subprocess.run([exe, "check", "metrics"], stdin=f, capture_output=True,
                               timeout=60)
        self.assertEqual(p.returncode, 0, "promtool check metrics: "
                         + (p.stdout + p.stderr).decode(errors="replace"))

    def test_textfile_equals_summary(self):
        out = self.tmp("out-")
        prom = os.path.join(self.tmp("metrics-"), "mailgrab.prom")
        sj = os.path.join(workdir, "metrics-summary.json")
        good_pw = server.password("bob")
        flaky_pw = tools.write_secret(workdir, server.password("acct01"))
        cfg = self.write_config(self.account("home", "bob", password=good_pw)
                                + self.account('we"ird\\name', "acct02")
                                + f"\n[account flaky]\nuser = acct01\npassword_file = {flaky_pw}\n",
                                f"output = {out}\n")
        res = self.run_mailgrab("--config", cfg, "--quiet", "--metrics", prom,
                                "--summary-json", sj)
        self.assertExit(res, EXIT_OK)
        self.promtool(prom)
        self.assertEqual(os.listdir(os.path.dirname(prom)), ["mailgrab.prom"])
        self.assertEqual(os.stat(prom).st_mode & 0o777, 0o644)
        first = self.check_values(prom, sj)
        for acct in ("home", 'we\\"ird\\\\name', "flaky"):
            self.assertEqual(first[("mailgrab_last_success_timestamp_seconds", acct)],
                             first[("mailgrab_last_run_timestamp_seconds", acct)])

        # flaky now fails: exit 5 in its metrics, its last success kept.
        with open(flaky_pw, "w") as f:
            f.write("wrong\n")
        res = self.run_mailgrab("--config", cfg, "--quiet", "--metrics", prom,
                                "--summary-json", sj)
        self.assertExit(res, EXIT_AUTH)
        self.promtool(prom)
        second = self.check_values(prom, sj)
        self.assertEqual(second[("mailgrab_last_run_exit_code", "flaky")], EXIT_AUTH)
        self.assertEqual(second[("mailgrab_last_success_timestamp_seconds", "flaky")],
                         first[("mailgrab_last_success_timestamp_seconds", "flaky")])
        self.assertGreater(second[("mailgrab_last_run_timestamp_seconds", "flaky")],
                           first[("mailgrab_last_run_timestamp_seconds", "flaky")])
        self.assertGreater(second[("mailgrab_last_success_timestamp_seconds", "home")],
                           first[("mailgrab_last_success_timestamp_seconds", "home")])

    def check_values(self, prom, sj):
        with open(prom) as f:
            got = parse_metrics(f.read())
        summary = self.summary(sj)
        for acct in summary["accounts"]:
            label = acct["account"].replace("\\", "\\\\").replace('"', '\\"')
            boxes = acct["mailboxes"]
            want = {
                "mailgrab_last_run_messages_fetched": sum(b["new"] for b in boxes),
                "mailgrab_last_run_fetched_bytes": sum(b["bytes"] for b in boxes),
                "mailgrab_last_run_messages_failed": sum(b["failed"] for b in boxes),
                "mailgrab_last_run_exit_code": acct["exit_code"],
            }
            for name, value in want.items():
                self.assertEqual(got[(name, label)], value, f"{name} of {label}")
            self.assertGreaterEqual(got[("mailgrab_last_run_duration_seconds", label)], 0)
        self.assertEqual(len({a for _, a in got}), len(summary["accounts"]))
        return got


class TestShard(Base):
    def shard_config(self, out):
        body = "".join(self.account(f"user-{u}", u) for u in SHARD_USERS)
        # one connection each: two messages need no more
        return self.write_config(body, f"output = {out}\n", chunks=1)

    def run_shard(self, cfg, spec, env=None):
        sj = os.path.join(self.tmp("sj-"), "summary.json")
        p = subprocess.Popen([tools.binary("MAILGRAB"), "--config", cfg, "--quiet",
                              "--shard", spec, "--summary-json", sj],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             env={**os.environ, "XDG_CONFIG_HOME": config_home, **(env or {})})
        return p, sj

    def test_union_of_shards_is_every_account_once(self):
        everyone = sorted(f"user-{u}" for u in SHARD_USERS)
        for n in range(1, 6):
            out = self.tmp(f"shard{n}-")
            cfg = self.shard_config(out)
            # The n shards at once, as a scheduler runs them, into one output.
            procs = [self.run_shard(cfg, f"{i}/{n}") for i in range(1, n + 1)]
            seen = []
            for i, (p, sj) in enumerate(procs, 1):
                _, err = p.communicate(timeout=120)
                self.assertEqual(p.returncode, EXIT_OK, f"shard {i}/{n}: {err.decode()}")
                names = [a["account"] for a in self.summary(sj)["accounts"]]
                self.assertTrue(all(a["status"] == "ok" for a in self.summary(sj)["accounts"]))
                seen += names
            self.assertEqual(sorted(seen), everyone, f"N={n}")
            # each account's backup is whole, in its own directory
            for u in SHARD_USERS:
                box = os.path.join(out, f"user-{u}", "INBOX")
                self.assertEqual(len([f for f in os.listdir(box) if f.endswith(".eml")]), 2,
                                 f"N={n}: {box}")

    def test_auto_reads_the_scheduler(self):
        out = self.tmp("auto-")
        cfg = self.shard_config(out)

        def names(spec, env):
            p, sj = self.run_shard(cfg, spec, env)
            _, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, EXIT_OK, err.decode())
            return [a["account"] for a in self.summary(sj)["accounts"]]

        # task 7 of an array 3-11:4 (3, 7, 11) is shard 2 of 3
        slurm = names("auto", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "3",
                               "SLURM_ARRAY_TASK_STEP": "4", "SLURM_ARRAY_TASK_COUNT": "3"})
        self.assertEqual(slurm, names("2/3", {}))
        k8s = names("auto/3", {"JOB_COMPLETION_INDEX": "1"})
        self.assertEqual(k8s, slurm)
        res = self.run_mailgrab("--config", cfg, "--shard", "auto",
                                env={"JOB_COMPLETION_INDEX": "1"})
        self.assertExit(res, EXIT_USAGE)
        self.assertIn("auto/N", res.stderr)
        self.assertEqual(len(res.stderr.splitlines()), 1, res.describe())


class TestExamples(Base):
    def test_systemd_template_verifies(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            self.skipTest("systemd-analyze is not installed")
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config")
        units = self.tmp("units-")
        with open(os.path.join(src, "mailgrab@.service")) as f:
            # verify checks that ExecStart exists: point it at the built binary.
            text = f.read().replace("/usr/local/bin/mailgrab", tools.binary("MAILGRAB"))
        self.assertIn("--account %i", text)
        with open(os.path.join(units, "mailgrab@.service"), "w") as f:
            f.write(text)
        shutil.copy(os.path.join(src, "mailgrab@.timer"), units)
        r = subprocess.run([analyze, "verify", "--man=no", "mailgrab@work.service",
                            "mailgrab@work.timer"], cwd=units, capture_output=True, text=True,
                           timeout=60)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertEqual([l for l in out.splitlines() if "mailgrab" in l], [], out)


def fnv1a(name):
    """The documented stable index of an account (mailgrab(1), SHARDS)."""
    h = 0xcbf29ce484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


class TestSlurm(Base):
    """A job array of config/mailgrab-slurm.sh on a one-node Slurm: every
    account backed up once, a wrong password failing only its own task,
    with the permanent exit code 5."""

    def test_job_array_backs_up_every_account_once(self):
        why = slurm.missing()
        if why:
            self.skipTest(why)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config",
                              "mailgrab-slurm.sh")
        out = self.tmp("slurm-out-")
        state = self.tmp("slurm-state-")
        good = [f"acct{i:02d}" for i in range(1, 7)]
        body = "".join(self.account(f"s-{u}", u) for u in good)
        body += self.account("s-locked-out", "bob", password="wrong password")
        cfg = self.write_config(body, f"output = {out}\n")
        names = [f"s-{u}" for u in good] + ["s-locked-out"]
        bad_task = fnv1a("s-locked-out") % 3 + 1
        with slurm.Slurm(self.tmp("slurm-")) as cluster:
            job = cluster.sbatch(["--array=1-3", script],
                                 env={"MAILGRAB": tools.binary("MAILGRAB"),
                                      "MAILGRAB_CONFIG": cfg, "MAILGRAB_STATE": state,
                                      "XDG_CONFIG_HOME": config_home},
                                 cwd=self.tmp("slurm-cwd-"))
            tasks = cluster.wait(job, 3)
            logs = cluster.logs()
        want = {t: ("FAILED", EXIT_AUTH) if t == bad_task else ("COMPLETED", EXIT_OK)
                for t in (1, 2, 3)}
        self.assertEqual(tasks, want, logs)
        seen = []
        for t in (1, 2, 3):
            summary = self.summary(os.path.join(state, f"summary-{t}.json"))
            got = [a["account"] for a in summary["accounts"]]
            self.assertEqual(sorted(got), sorted(n for n in names if fnv1a(n) % 3 + 1 == t))
            seen += got
            events = read_events(os.path.join(state, f"events-{t}.jsonl"))
            self.assertEqual(events[0]["shard"], f"{t}/3")
            self.assertEqual(events[-1]["summary"], summary)
            with open(os.path.join(state, f"metrics-{t}.prom")) as f:
                self.assertEqual({a for _, a in parse_metrics(f.read())}, set(got))
        self.assertEqual(sorted(seen), sorted(names))
        for u in good:
            box = os.path.join(out, f"s-{u}", "INBOX")
            self.assertEqual(len([f for f in os.listdir(box) if f.endswith(".eml")]), 2, box)
        self.assertFalse(os.path.exists(os.path.join(out, "s-locked-out", "INBOX")))


if __name__ == "__main__":
    unittest.main()
