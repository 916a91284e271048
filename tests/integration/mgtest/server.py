"""A private Dovecot on 127.0.0.1 for mailgrab's integration tests.

Dovecot owns everything under one temporary directory: certificates, config,
runtime sockets, state, log, Maildirs and indexes.  Nothing outside that
directory is read or written, so several instances can run side by side.

Ports (all picked at runtime):
  imaps_port       TLS from the first byte, certificate for 127.0.0.1/localhost
                   signed by ca_file.
  imap_port        plain IMAP (plaintext logins allowed; for benchmarks).
  wrong_name_port  TLS on wrong_name_host (127.0.0.2), certificate for
                   "wrong.example" signed by the same trusted CA: a valid chain
                   whose name does not match.
untrusted_ca_file is a CA that signed nothing this server serves.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

USERS = {
    "alice": "secret",
    "bob": "hunter2",
    "carol": "p4ss word",
    "empty": "nothing-here",
}

MAIL_USER = "mailgrabtest"

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @san
[san]
{san}
"""


def dovecot_binary():
    """dovecot lives in sbin, which a normal user's PATH may lack."""
    return (os.environ.get("DOVECOT") or shutil.which("dovecot")
            or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin:/sbin")
            or "dovecot")


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago."""
    return free_ports(host)[0]


def free_ports(*hosts):
    """One port per host, free a moment ago and all different.

    The sockets stay bound until every port is picked: a socket closed at
    once lets the kernel hand the same port out again, and a server told to
    listen twice on one port refuses to start.
    """
    held = []
    try:
        for host in hosts:
            s = socket.socket()
            held.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def mail_ids():
    """uid/gid that Dovecot may use for mail access.

    As root, a dedicated system user (created if missing); otherwise ourselves.
    """
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        pw = pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", MAIL_USER],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, pw.pw_gid


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(d):
    """Writes test CAs and certificates into directory d."""
    os.makedirs(d, exist_ok=True)

    def key(name):
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-out", name + ".key", cwd=d)

    def ca(name, cn):
        key(name)
        cnf = os.path.join(d, name + ".cnf")
        with open(cnf, "w") as f:
            f.write(_OPENSSL_CNF.format(san="DNS.1 = unused"))
        _openssl("req", "-x509", "-new", "-config", cnf, "-extensions", "ca_ext",
                 "-key", name + ".key", "-subj", "/CN=" + cn, "-days", "3650",
                 "-out", name + ".pem", cwd=d)

    def leaf(name, cn, san, ca_name):
        key(name)
        cnf = os.path.join(d, name + ".cnf")
        with open(cnf, "w") as f:
            f.write(_OPENSSL_CNF.format(san=san))
        _openssl("req", "-new", "-config", cnf, "-key", name + ".key",
                 "-subj", "/CN=" + cn, "-out", name + ".csr", cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca_name + ".pem",
                 "-CAkey", ca_name + ".key", "-CAcreateserial", "-days", "3650",
                 "-extfile", cnf, "-extensions", "leaf_ext", "-out", name + ".pem",
                 cwd=d)

    ca("ca", "mailgrab test CA")
    ca("untrusted-ca", "mailgrab untrusted test CA")
    leaf("server", "127.0.0.1", "IP.1 = 127.0.0.1\nDNS.1 = localhost", "ca")
    leaf("wrong", "wrong.example", "DNS.1 = wrong.example", "ca")
    for name in os.listdir(d):
        if name.endswith(".key"):
            os.chmod(os.path.join(d, name), 0o600)
        else:
            os.chmod(os.path.join(d, name), 0o644)


_CONF = """\
# Private Dovecot for mailgrab integration tests; everything lives under {root}.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
debug_log_path = {root}/dovecot.log
instance_name = mailgrab-test-{tag}
protocols = imap
default_client_limit = {client_limit}
listen = 127.0.0.1, 127.0.0.2
shutdown_clients = yes

ssl = yes
ssl_cert = <{root}/pki/server.pem
ssl_key = <{root}/pki/server.key
ssl_min_protocol = TLSv1.2
local 127.0.0.2 {{
  ssl_cert = <{root}/pki/wrong.pem
  ssl_key = <{root}/pki/wrong.key
}}

disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_cache_size = 0
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = {gid}
last_valid_gid = 0
mail_location = maildir:{root}/mail/%u/Maildir:INDEX={root}/index/%u:CONTROL={root}/control/%u{layout}
mail_fsync = never
maildir_very_dirty_syncs = no
{zlib_global}
protocol imap {{
  mail_max_userip_connections = {max_conn}
{zlib_imap}}}

service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{unprivileged}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
  inet_listener imaps_wrong_name {{
    address = 127.0.0.2
    port = {wrong_name_port}
    ssl = yes
  }}
  process_limit = {process_limit}
}}
service imap {{
  process_limit = {process_limit}
}}
"""


def _signal_group(pgid, sig):
    """True if the group still existed."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_members(pgid):
    """Pids of live (non-zombie) processes in process group pgid.

    Orphaned Dovecot helpers are reparented to pid 1, which in a container may
    never reap them; a zombie is dead, so it does not count."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(name))
    return pids


class DovecotError(RuntimeError):
    pass


class Dovecot:
    """Context manager: a running private Dovecot.

    with Dovecot() as d:
        d.imaps_port, d.ca_file, d.maildir("alice"), d.log_text()
    """

    host = "127.0.0.1"
    wrong_name_host = "127.0.0.2"

    def __init__(self, max_connections=100, root=None, foreground=True,
                 imap_port=None, layout=None, auth_server=None, compress=False,
                 extra_conf=""):
        """layout: None for Maildir++ (hierarchy separator "."), or a Dovecot
        maildir LAYOUT such as "fs" (separator "/", folders as directories).
        auth_server: an mgtest.authserver.AuthServer to check XOAUTH2 and
        OAUTHBEARER tokens against.
        compress: offer COMPRESS=DEFLATE after login (the imap_zlib plugin);
        a number from 1 to 9 is Dovecot's deflate level (6 otherwise).
        Off by default: the proxies that read IMAP text need it plain.
        extra_conf: Dovecot settings appended to the configuration (a quota
        plugin with a message size limit, say)."""
        self.max_connections = max_connections
        self.compress = compress
        self.layout = layout
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="mgdc-")
        self.foreground = foreground
        self._wanted_imap_port = imap_port
        self.proc = None
        self.uid, self.gid = mail_ids()
        self.users = dict(USERS)
        self.conf = os.path.join(self.root, "dovecot.conf")
        self.pki = os.path.join(self.root, "pki")
        self.ca_file = os.path.join(self.pki, "ca.pem")
        self.untrusted_ca_file = os.path.join(self.pki, "untrusted-ca.pem")
        self.log_file = os.path.join(self.root, "dovecot.log")
        self.imaps_port = self.imap_port = self.wrong_name_port = None
        # An mgtest.authserver.AuthServer (started): Dovecot also offers
        # XOAUTH2 and OAUTHBEARER and checks tokens by introspection there.
        self.auth_server = auth_server
        self.extra_conf = extra_conf

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, timeout=10.0):
        os.chmod(self.root, 0o755)  # mail processes run as the mail user
        if os.geteuid() == 0:
            self._check_reachable()
        make_pki(self.pki)
        with open(os.path.join(self.root, "users"), "w") as f:
            for user, password in self.users.items():
                f.write(f"{user}:{{PLAIN}}{password}::::::\n")
        os.chmod(os.path.join(self.root, "users"), 0o644)
        for user in self.users:
            self._make_maildir(user)
        # Ports are picked free, then bound by Dovecot a moment later; another
        # process may take one in between, so a bind failure gets new ports.
        for attempt in range(3):
            try:
                return self._launch(timeout)
            except DovecotError as e:
                if attempt == 2 or not any(m in str(e) for m in (
                        "Address already in use", "duplicate listener")):
                    raise

    def _launch(self, timeout):
        self.imaps_port, imap_port, self.wrong_name_port = free_ports(
            self.host, self.host, self.wrong_name_host)
        self.imap_port = self._wanted_imap_port or imap_port
        with open(self.conf, "w") as f:
            f.write(_CONF.format(
                root=self.root, tag=os.path.basename(self.root),
                uid=self.uid, gid=self.gid, max_conn=self.max_connections,
                imap_port=self.imap_port, imaps_port=self.imaps_port,
                wrong_name_port=self.wrong_name_port,
                layout=f":LAYOUT={self.layout}" if self.layout else "",
                process_limit=max(200, 2 * self.max_connections),
                client_limit=max(1000, 5 * self.max_connections),
                unprivileged=self._unprivileged_conf(),
                zlib_global=self._zlib_conf(),
                zlib_imap="  mail_plugins = $mail_plugins imap_zlib\n" if self.compress else ""))
        self._add_oauth2_conf()
        if self.extra_conf:
            with open(self.conf, "a") as f:
                f.write(self.extra_conf)
        args = [dovecot_binary(), "-c", self.conf]
        if self.foreground:
            with open(os.path.join(self.root, "dovecot.stderr"), "wb") as err:
                self.proc = subprocess.Popen(args + ["-F"], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err,
                                             start_new_session=True)
        else:
            # The daemon's children inherit stdout/stderr: give them a file,
            # not a pipe we would wait on forever.
            with open(os.path.join(self.root, "dovecot.stderr"), "wb") as err:
                r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            if r.returncode != 0:
                raise DovecotError("dovecot failed to start:\n" + self._diag())
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(cleanup=False)
            raise
        return self

    def _zlib_conf(self):
        if not self.compress:
            return ""
        level = ("" if self.compress is True else
                 f"plugin {{\n  imap_compress_deflate_level = {int(self.compress)}\n}}\n")
        return "mail_plugins = $mail_plugins zlib\n" + level

    def _add_oauth2_conf(self):
        """With auth_server: passwords keep their mechanisms, tokens go to a
        second passdb (driver oauth2) that asks auth_server about them."""
        if self.auth_server is None:
            return
        with open(self.conf) as f:
            text = f.read()
        old_passdb = "passdb {\n  driver = passwd-file\n"
        if "auth_mechanisms = plain login\n" not in text or old_passdb not in text:
            raise DovecotError("oauth2: config template changed; update _add_oauth2_conf")
        text = text.replace("auth_mechanisms = plain login\n", "")
        text = text.replace(old_passdb, old_passdb + "  mechanisms = plain login\n")
        text += self.auth_server.dovecot_conf(os.path.join(self.root, "oauth2-passdb.args"))
        with open(self.conf, "w") as f:
            f.write(text)

    def _unprivileged_conf(self):
        """Without root, every Dovecot service runs as us and nothing chroots."""
        if os.geteuid() == 0:
            return ""
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        lines = [f"default_login_user = {user}", f"default_internal_user = {user}",
                 f"default_internal_group = {group}"]
        for svc in ("imap-login", "anvil", "auth", "auth-worker", "stats", "log",
                    "config", "imap"):
            lines.append(f"service {svc} {{\n  chroot =\n  user = \n}}")
        return "\n".join(lines) + "\n"

    def _check_reachable(self):
        path = os.path.dirname(os.path.abspath(self.root))
        while True:
            if not os.stat(path).st_mode & 0o001:
                raise DovecotError(
                    f"{path} is not searchable by others (chmod o+x): Dovecot's mail "
                    f"processes run as {MAIL_USER} and must reach {self.root}")
            if path == "/":
                return
            path = os.path.dirname(path)

    def _make_maildir(self, user):
        home = os.path.join(self.root, "mail", user)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(home, "Maildir", sub), exist_ok=True)
        for top in ("mail", "index", "control"):
            os.makedirs(os.path.join(self.root, top, user), exist_ok=True)
        for top in ("mail", "index", "control"):
            self.chown_tree(os.path.join(self.root, top))

    def chown_tree(self, path):
        if os.geteuid() != 0:
            return
        os.chown(path, self.uid, self.gid)
        for dirpath, dirnames, filenames in os.walk(path):
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), self.uid, self.gid)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        pending = [(self.host, self.imaps_port), (self.host, self.imap_port),
                   (self.wrong_name_host, self.wrong_name_port)]
        while pending:
            if self.proc is not None and self.proc.poll() is not None:
                raise DovecotError("dovecot exited during start-up:\n" + self._diag())
            host, port = pending[0]
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DovecotError(f"dovecot did not listen on {host}:{port}:\n" + self._diag())
            time.sleep(0.02)
        while self.master_pid() is None:
            if time.monotonic() > deadline:
                raise DovecotError("dovecot wrote no master.pid:\n" + self._diag())
            time.sleep(0.02)

    def _diag(self):
        out = []
        for name in ("dovecot.stderr", "dovecot.log"):
            p = os.path.join(self.root, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append(f.read()[-4000:])
        return "\n".join(out)

    def master_pid(self):
        if self.proc is not None:
            return self.proc.pid
        try:
            with open(os.path.join(self.root, "run", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self, cleanup=None):
        """Stops Dovecot and all its children; removes the temp dir if we made it.

        Dovecot runs in its own process group (session), so the whole group gets
        SIGTERM at once.  A master signalled in its first few hundred ms can
        take seconds to exit, so whatever survives 1.5 s gets SIGKILL.
        """
        pid = self.master_pid()
        if pid is not None:
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                pgid = None
            if pgid is not None and pgid != os.getpgrp():
                _signal_group(pgid, signal.SIGTERM)
                deadline = time.monotonic() + 1.5
                while time.monotonic() < deadline:
                    if self.proc is not None:
                        self.proc.poll()  # reap the master so the group can empty
                    if not group_members(pgid):
                        break
                    time.sleep(0.01)
                if group_members(pgid):
                    _signal_group(pgid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            self.proc = None
        if cleanup is None:
            cleanup = self._own_root and not os.environ.get("MG_KEEP_TMP")
        if cleanup:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- facts ---------------------------------------------------------------

    def maildir(self, user="alice"):
        return os.path.join(self.root, "mail", user, "Maildir")

    def password(self, user="alice"):
        return self.users[user]

    def log_text(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_file)
        except FileNotFoundError:
            return 0

    def log_since(self, offset):
        """Log text written after offset (a previous log_size())."""
        with open(self.log_file, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")


def wait_sessions(srv, mark, user, seconds=5.0):
    """Dovecot's log since mark once every session of user has logged out,
    and how many logged in."""
    deadline = time.monotonic() + seconds
    while True:
        log = srv.log_since(mark)
        logins = log.count(f"Login: user=<{user}>")
        ends = len(re.findall(rf"imap\({re.escape(user)}\).*?Disconnected", log))
        if ends >= logins or time.monotonic() > deadline:
            return log, logins
        time.sleep(0.05)


def bodies_sent(log, user):
    """BODY[] fetches Dovecot counted for user's sessions in log."""
    return sum(int(n) for n in re.findall(
        rf"imap\({re.escape(user)}\).*?Disconnected.*? body_count=(\d+)", log))


def start_for_module(prefix, users=None, **server_args):
    """What a test module sets up: a temporary directory named prefix...,
    an empty XDG_CONFIG_HOME in it (no stray user config is read), and a
    started Dovecot (given server_args, e.g. compress=True) with users
    ({name: password}) added.  Returns (server, workdir, config_home)."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    config_home = os.path.join(workdir, "xdg-empty")
    os.makedirs(config_home)
    server = Dovecot(**server_args)
    server.users.update(users or {})
    server.start()
    return server, workdir, config_home


def stop_for_module(server, workdir, *others):
    """Stops server (and the other servers given: an authorization server, a
    second Dovecot), and removes workdir unless MG_KEEP_TMP is set."""
    for s in (server,) + others:
        if s is not None:
            s.stop()
    if workdir and not os.environ.get("MG_KEEP_TMP"):
        shutil.rmtree(workdir, ignore_errors=True)
