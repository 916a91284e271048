"""Running mailgrab and mgproxy from tests.

MAILGRAB and MGPROXY (set by meson) name the binaries under test.  A missing
or broken binary makes tests fail with a message, never skip.
"""

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time


def binary(var):
    path = os.environ.get(var)
    if not path:
        raise AssertionError(f"${var} is not set: run through `meson test` or export it")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"${var}={path} is not an executable")
    return path


class Run:
    """One finished mailgrab run."""

    def __init__(self, argv, returncode, stdout, stderr, seconds):
        self.argv, self.returncode = argv, returncode
        self.stdout, self.stderr, self.seconds = stdout, stderr, seconds

    def describe(self):
        tail = self.stderr[-6000:]
        return (f"\n$ {shlex.join(self.argv)}\nexit {self.returncode} after "
                f"{self.seconds:.1f}s\n--- mailgrab stderr ---\n{tail}\n--- end ---")


def write_secret(directory, text, name="password"):
    """A 0600 file holding text and a newline."""
    fd, path = tempfile.mkstemp(prefix=name + "-", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def mailgrab_argv(server, *, user="alice", port=None, host=None, cafile=None,
                  password_file=None, output=None, extra=()):
    argv = [binary("MAILGRAB"), "--server", host or server.host,
            "--port", str(port or server.imaps_port), "--user", user,
            "--cafile", cafile or server.ca_file]
    if password_file:
        argv += ["--password-file", password_file]
    if output:
        argv += ["--output", output]
    return argv + list(extra)


def run(argv, env_extra=None, timeout=300, watch=None):
    """Runs argv to completion; watch(pid) is called every 50 ms while it runs."""
    env = dict(os.environ)
    env.pop("MAILGRAB_PASSWORD", None)
    env.update(env_extra or {})
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             env=env, start_new_session=True)
        killed = False
        try:
            deadline = t0 + timeout
            while p.poll() is None:
                if time.monotonic() > deadline:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                    killed = True
                    break
                if watch:
                    watch(p.pid)
                time.sleep(0.05)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        seconds = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        if killed:
            stderr += f"\n[test harness: killed, no exit within {timeout} s]"
        return Run(argv, p.returncode, out.read().decode("utf-8", "replace"), stderr, seconds)


class Proxy:
    """mgproxy in front of target, as a context manager; .port, .log()."""

    def __init__(self, target_host, target_port, *args):
        self.dir = tempfile.mkdtemp(prefix="mgproxy-")
        self.port_file = os.path.join(self.dir, "port")
        self.log_file = os.path.join(self.dir, "log")
        self.argv = [binary("MGPROXY"), "--listen", "127.0.0.1:0",
                     "--target", f"{target_host}:{target_port}",
                     "--port-file", self.port_file, "--max-seconds", "300", *args]
        self.proc = None
        self.port = None

    def __enter__(self):
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + 5
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mgproxy did not start: {self.log()}")
            time.sleep(0.01)
        with open(self.port_file) as f:
            self.port = int(f.read())
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._final_log = self.log()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def log(self):
        if getattr(self, "_final_log", None) is not None:
            return self._final_log
        with open(self.log_file, errors="replace") as f:
            return f.read()


class ServerProcess:
    """A test server run as its own process group (start_new_session=True)
    in self.proc: `with` calls start() and stop(); end_process() ends the
    whole group, politely first, and returns the ended Popen."""

    proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def end_process(self, grace=5.0):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        proc, self.proc = self.proc, None
        return proc


def unnamed_file_open(pid, under):
    """Has process pid a file open under the directory under that has no
    name (O_TMPFILE, or unlinked)? False once it has exited."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(under) and target.endswith("(deleted)"):
            return True
    return False
