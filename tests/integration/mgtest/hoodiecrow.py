"""A private hoodiecrow IMAP server on 127.0.0.1 for mailgrab's tests.

hoodiecrow is an in-memory IMAP server written in node (installed into
tests/integration/node by scripts/install-deps). It is not Dovecot: it lists
mailbox names in raw UTF-8 inside quoted strings, refuses 8-bit bytes in a
quoted string with BAD, answers BAD to EXAMINE of an unknown mailbox, and
offers Gmail's X-GM-EXT-1, XOAUTH2 and SPECIAL-USE. mgtest/hoodiecrow.js
starts it from a JSON description of users, folders and messages.

    with Hoodiecrow(folders={"INBOX": {"messages": [raw_bytes, ...]},
                             "Työ": {"messages": [...]}}) as h:
        h.port, h.ca_file, h.user, h.password

TLS from the first byte with a certificate for 127.0.0.1 signed by ca_file
(the same test PKI as mgtest.server). State lives in the node process: a
restart serves the description again.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading

from mgtest.server import make_pki
from mgtest.tools import ServerProcess

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = os.path.join(HERE, "hoodiecrow.js")
MODULES = os.path.join(HERE, "..", "node", "node_modules", "hoodiecrow-imap")

DEFAULT_PLUGINS = ["X-GM-EXT-1", "SPECIAL-USE", "CONDSTORE", "ID", "ENABLE", "UIDPLUS",
                   "SASL-IR", "XOAUTH2"]


def available():
    """Why hoodiecrow cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/install-deps)"
    if not os.path.isdir(MODULES):
        return "hoodiecrow-imap is not installed in tests/integration/node (scripts/install-deps)"
    return None


def message(raw, **extra):
    """A message for the launcher: raw bytes plus optional uid, flags,
    internaldate (ISO 8601), labels, msgid, thrid."""
    m = {"raw": base64.b64encode(raw).decode("ascii")}
    m.update(extra)
    return m


class HoodiecrowError(RuntimeError):
    pass


class Hoodiecrow(ServerProcess):
    host = "127.0.0.1"

    def __init__(self, folders=None, users=None, plugins=None, separator="/", root=None,
                 max_sessions=None, max_sessions_reply=None, command_log=False):
        """folders: {name: {"messages": [bytes or message(...)], "uidvalidity": n,
        "special_use": "\\\\Sent", "refuse": "NO [NOPERM] text"}}; names in UTF-8.
        users: {user: password}; default alice:secret. max_sessions: more
        logged-in sessions are refused with max_sessions_reply (default
        Gmail's "NO [ALERT] Too many simultaneous connections. (Failure)").
        command_log: the server writes each command it is asked to
        root/commands.jsonl (commands() reads them)."""
        self.folders = folders or {"INBOX": {}}
        self.users = users or {"alice": "secret"}
        self.plugins = DEFAULT_PLUGINS if plugins is None else plugins
        self.separator = separator
        self.max_sessions = max_sessions
        self.max_sessions_reply = max_sessions_reply
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="mghc-")
        self.pki = os.path.join(self.root, "pki")
        self.ca_file = os.path.join(self.pki, "ca.pem")
        self.proc = None
        self.port = None
        self.command_log = os.path.join(self.root, "commands.jsonl") if command_log else None
        self.user = next(iter(self.users))
        self.password = self.users[self.user]
        self._log = []

    def _config(self):
        folders = {}
        for name, f in self.folders.items():
            f = dict(f)
            f["messages"] = [m if isinstance(m, dict) else message(m)
                             for m in f.get("messages", [])]
            folders[name] = f
        return {
            "host": self.host, "port": 0,
            "key": os.path.join(self.pki, "server.key"),
            "cert": os.path.join(self.pki, "server.pem"),
            "plugins": self.plugins,
            "users": {u: {"password": p, "xoauth2": {"accessToken": p,
                                                     "sessionTimeout": 3600 * 1000}}
                      for u, p in self.users.items()},
            "separator": self.separator,
            "folders": folders,
            "max_sessions": self.max_sessions,
            "max_sessions_reply": self.max_sessions_reply,
            "command_log": self.command_log,
        }

    def start(self, timeout=15.0):
        why = available()
        if why:
            raise HoodiecrowError(why)
        if not os.path.exists(self.ca_file):
            make_pki(self.pki)
        conf = os.path.join(self.root, "hoodiecrow.json")
        with open(conf, "w", encoding="utf-8") as f:
            json.dump(self._config(), f, ensure_ascii=False)
        self.proc = subprocess.Popen(["node", LAUNCHER, conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        got = []

        def first_line():
            got.append(self.proc.stdout.readline().decode("utf-8", "replace"))

        t = threading.Thread(target=first_line, daemon=True)
        t.start()
        t.join(timeout)
        line = got[0] if got else ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise HoodiecrowError("hoodiecrow did not start: " + line)
        self.port = int(line.split()[1])
        # Keep draining its output so it never blocks on a full pipe.
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        return self

    def _drain(self):
        for line in self.proc.stdout:
            self._log.append(line.decode("utf-8", "replace"))

    def commands(self, clear=True):
        """[(command, [args as text])] the server was asked since the last
        call (clear) or since it started."""
        if not self.command_log or not os.path.exists(self.command_log):
            return []
        with open(self.command_log, encoding="utf-8") as f:
            got = [json.loads(line) for line in f if line.strip()]
        if clear:
            os.unlink(self.command_log)
        return [(c["command"], c["args"]) for c in got]

    def log_text(self):
        return "".join(self._log)

    def restart(self):
        """A fresh server with the same description, PKI and root."""
        self.stop(cleanup=False)
        return self.start()

    def stop(self, cleanup=None):
        proc = self.end_process()
        if proc is not None:
            if getattr(self, "_drainer", None) is not None:
                self._drainer.join(5)
                self._drainer = None
            proc.stdout.close()
        if cleanup is None:
            cleanup = self._own_root and not os.environ.get("MG_KEEP_TMP")
        if cleanup:
            shutil.rmtree(self.root, ignore_errors=True)
