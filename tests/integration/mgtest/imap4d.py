"""A private GNU imap4d (GNU Mailutils) on 127.0.0.1 for mailgrab's tests.

GNU imap4d serves mbox files from a directory, lists names as the file
system has them (raw UTF-8, unquoted), and keeps a mailbox's UIDVALIDITY in
an X-IMAPbase header of its first message: an empty mailbox, or one no
client ever opened read-write, gets a new UIDVALIDITY (the clock) in every
session.

    with Imap4d(mailboxes={"INBOX": [raw, raw], "Empty": []}) as s:
        s.port, s.ca_file, s.user, s.password

TLS from the first byte with a certificate for 127.0.0.1 signed by ca_file
(the test PKI of mgtest.server). One virtual user, alice@example.org, whose
mail lives in root/mail/alice. Needs the Debian package mailutils-imap4d.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from mgtest.server import free_port, mail_ids, make_pki
from mgtest.tools import ServerProcess

DOMAIN = "example.org"

_CONF = """\
mode daemon;
foreground yes;
pidfile {root}/imap4d.pid;
logging {{ syslog no; }}
server 127.0.0.1:{port} {{
  tls-mode connection;
  tls {{ ssl-certificate-file {root}/pki/server.pem; ssl-key-file {root}/pki/server.key; }}
}}
tls-file-checks {{ key-file none; cert-file none; ca-file none; }}
auth {{ authorization virtdomain; authentication generic; }}
virtdomain {{ passwd-dir {root}/domains; }}
mailbox {{ mailbox-pattern "mbox:{root}/mail/${{user}}/INBOX"; }}
namespace personal {{
  prefix "" {{ directory "{root}/mail/${{user}}"; delimiter "/"; mailbox-type mbox; }}
}}
"""


def binary():
    return (os.environ.get("IMAP4D") or shutil.which("imap4d")
            or shutil.which("imap4d", path="/usr/sbin:/usr/local/sbin:/sbin"))


def available():
    """Why imap4d cannot run here, or None."""
    if binary() is None:
        return "GNU imap4d is not installed (mailutils-imap4d; scripts/install-deps)"
    if shutil.which("openssl") is None:
        return "openssl is not installed"
    return None


def _with_headers(messages, uidvalidity):
    """The messages (LF line ends) as imap4d stores them: with uidvalidity,
    the X-IMAPbase/X-UID headers it writes once a client opens the mailbox
    read-write."""
    out = []
    for i, raw in enumerate(messages, 1):
        lines = raw.replace(b"\r\n", b"\n").rstrip(b"\n") + b"\n"
        if uidvalidity is not None:
            extra = b""
            if i == 1:
                extra += b"X-IMAPbase: %d %d\n" % (uidvalidity, len(messages) + 1)
            extra += b"X-UID: %d\n" % i
            lines = extra + lines
        out.append(lines)
    return out


def mbox(messages, uidvalidity=None):
    """An mbox file's bytes."""
    out = []
    for lines in _with_headers(messages, uidvalidity):
        if any(ln.startswith(b"From ") for ln in lines.split(b"\n")):
            raise ValueError("a body line starts with 'From ': pick another message")
        out.append(b"From sender@example.org Mon Jan  1 00:00:00 2024\n" + lines + b"\n")
    return b"".join(out)


class Imap4dError(RuntimeError):
    pass


class Imap4d(ServerProcess):
    host = "127.0.0.1"
    user = "alice@" + DOMAIN
    password = "secret"

    def __init__(self, mailboxes=None, uidvalidity=None, root=None):
        """mailboxes: {name (UTF-8): [raw message bytes, ...]}; uidvalidity:
        {name: n} for mailboxes that carry X-IMAPbase (stable UIDVALIDITY)."""
        self.mailboxes = mailboxes or {"INBOX": []}
        self.uidvalidity = uidvalidity or {}
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="mgi4-")
        self.pki = os.path.join(self.root, "pki")
        self.ca_file = os.path.join(self.pki, "ca.pem")
        self.maildir = os.path.join(self.root, "mail", "alice")
        self.log_file = os.path.join(self.root, "imap4d.log")
        self.proc = None
        self.port = None

    def _write_mail(self):
        uid, gid = mail_ids()
        os.makedirs(self.maildir, exist_ok=True)
        for name, msgs in self.mailboxes.items():
            path = os.path.join(self.maildir, name)
            with open(path, "wb") as f:
                f.write(mbox(msgs, self.uidvalidity.get(name)))
        os.makedirs(os.path.join(self.root, "domains"), exist_ok=True)
        crypt = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=self.password,
                               capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(self.root, "domains", DOMAIN), "w") as f:
            f.write(f"alice:{crypt}:{uid}:{gid}:Alice:{self.maildir}:/bin/sh\n")
        for d in (self.root, os.path.join(self.root, "mail")):
            os.chmod(d, 0o755)
        if os.geteuid() == 0:
            os.chown(self.maildir, uid, gid)
            for n in os.listdir(self.maildir):
                os.chown(os.path.join(self.maildir, n), uid, gid)

    def start(self, timeout=10.0):
        why = available()
        if why:
            raise Imap4dError(why)
        if not os.path.exists(self.ca_file):
            make_pki(self.pki)
        self._write_mail()
        for attempt in range(3):
            self.port = free_port()
            conf = os.path.join(self.root, "imap4d.conf")
            with open(conf, "w") as f:
                f.write(_CONF.format(root=self.root, port=self.port))
            with open(self.log_file, "ab") as log:
                self.proc = subprocess.Popen([binary(), "--config-file=" + conf],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop(cleanup=False)
        raise Imap4dError("imap4d did not start:\n" + self.log_text()[-3000:])

    def served(self, name):
        """BODY[] of each message of mailbox name, as imap4d sends it."""
        return [m.replace(b"\n", b"\r\n")
                for m in _with_headers(self.mailboxes[name], self.uidvalidity.get(name))]

    def log_text(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self, cleanup=None):
        self.end_process()
        if cleanup is None:
            cleanup = self._own_root and not os.environ.get("MG_KEEP_TMP")
        if cleanup:
            shutil.rmtree(self.root, ignore_errors=True)
