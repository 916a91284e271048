"""A local OAuth2 authorization server on 127.0.0.1 for mailgrab's tests.

It stands in for Google's: an HTTPS endpoint serving

  GET  /authorize   authorization endpoint: checks the PKCE request and
                    302-redirects to redirect_uri with a code and the state
                    (or a wrong state, or error=access_denied, on request)
  POST /token       token endpoint: grant_type=authorization_code (checks the
                    S256 code_verifier) and grant_type=refresh_token

and a plain-HTTP introspection endpoint for Dovecot's oauth2 passdb:

  POST /introspect  token=T (introspection_mode = post; GET ?token= and a
                    Bearer header also work) -> {"active": true, "email": U}

Every token is tied to a user. Switches: token_lifetime (seconds),
rotate (a new refresh token on each refresh, the old one dies), delay
(seconds the token endpoint stalls, so concurrent clients overlap),
revoke() (-> 400 {"error": "invalid_grant"}), wrong_state, deny.
Counters: refreshes, exchanges, introspections.

Standard library only; the certificate comes from mgtest.server.make_pki
when the Dovecot harness is present, else from a small openssl CLI helper.

    with AuthServer(tmpdir) as auth:
        rt = auth.add_user("alice")
        ... auth.token_url, auth.auth_url, auth.introspect_url, auth.ca_file
"""

import base64
import hashlib
import http.server
import json
import os
import secrets
import ssl
import subprocess
import threading
import time
import urllib.parse

CLIENT_ID = "mailgrab-test-client.apps.example"
CLIENT_SECRET = "client-secret+/=&%value"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_pki_fallback(d):
    """ca.pem, server.pem/.key for 127.0.0.1, untrusted-ca.pem."""
    os.makedirs(d, exist_ok=True)
    for name in ("ca", "untrusted-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key",
                 "-out", name + ".pem", "-days", "3650",
                 "-subj", "/CN=mailgrab auth test " + name,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "3650", "-extfile",
             "server.ext", "-out", "server.pem", cwd=d)


def make_pki(d):
    if os.path.exists(os.path.join(d, "server.pem")):
        return
    try:
        from .server import make_pki as harness_pki
    except ImportError:
        harness_pki = None
    if harness_pki is not None:
        harness_pki(d)
    else:
        _make_pki_fallback(d)


def _pkce_s256(verifier):
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _new_refresh_token():
    # Characters that must be form-escaped, as real refresh tokens have.
    return "1//" + secrets.token_urlsafe(24) + "+r/=" + secrets.token_hex(2)


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _reply(self, status, obj=None, headers=()):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _form(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 65536:
            return None
        raw = self.rfile.read(n).decode("ascii", "replace")
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}


class _TokenHandler(_Quiet):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/authorize":
            return self._reply(404, {"error": "not_found"})
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        auth = self.server.auth
        problems = []
        if q.get("response_type") != "code":
            problems.append("response_type")
        if q.get("client_id") != auth.client_id:
            problems.append("client_id")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problems.append("pkce")
        redirect = q.get("redirect_uri", "")
        if not redirect.startswith("http://127.0.0.1:"):
            problems.append("redirect_uri")
        if not q.get("state") or not q.get("scope"):
            problems.append("state/scope")
        if problems:
            return self._reply(400, {"error": "invalid_request",
                                     "error_description": ",".join(problems)})
        auth.last_authorize = q
        if auth.deny:
            params = {"error": "access_denied", "state": q["state"]}
        else:
            code = "4/" + secrets.token_urlsafe(16)
            with auth.lock:
                auth.codes[code] = (auth.login_user, q["code_challenge"], redirect)
            state = "not-" + q["state"] if auth.wrong_state else q["state"]
            params = {"code": code, "state": state}
        location = redirect + "?" + urllib.parse.urlencode(params)
        self._reply(302, None, [("Location", location)])

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != "/token":
            return self._reply(404, {"error": "not_found"})
        form = self._form()
        if form is None:
            return self._reply(413, {"error": "invalid_request"})
        status, obj = self.server.auth._token(form)
        self._reply(status, obj)


class _IntrospectHandler(_Quiet):
    def _introspect(self, token):
        auth = self.server.auth
        with auth.lock:
            auth.introspections += 1
            entry = auth.access.get(token or "")
        if entry is None or entry[1] < time.time():
            return self._reply(200, {"active": False})
        self._reply(200, {"active": True, "email": entry[0], "scope": auth.scope})

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        token = q.get("token")
        authz = self.headers.get("Authorization", "")
        if token is None and authz.startswith("Bearer "):
            token = authz[7:]
        self._introspect(token)

    def do_POST(self):
        form = self._form() or {}
        self._introspect(form.get("token"))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class AuthServer:
    def __init__(self, workdir, token_lifetime=3600, rotate=False, delay=0.0,
                 client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                 scope="https://mail.google.com/"):
        self.workdir = workdir
        self.pki_dir = os.path.join(workdir, "pki")
        self.token_lifetime = token_lifetime
        self.rotate = rotate
        self.delay = delay
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.wrong_state = False
        self.deny = False
        self.login_user = "alice"
        self.lock = threading.Lock()
        self.refresh_tokens = {}   # refresh token -> user (live ones)
        self.dead_refresh_tokens = set()
        self.access = {}           # access token -> (user, expiry time)
        self.codes = {}            # code -> (user, challenge, redirect_uri)
        self.refreshes = 0
        self.exchanges = 0
        self.introspections = 0
        self.last_authorize = None
        self._servers = []
        self._threads = []

    # -- lifecycle --
    def start(self):
        make_pki(self.pki_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        https = _Server(("127.0.0.1", 0), _TokenHandler)
        https.socket = ctx.wrap_socket(https.socket, server_side=True)
        plain = _Server(("127.0.0.1", 0), _IntrospectHandler)
        for srv in (https, plain):
            srv.auth = self
            t = threading.Thread(target=srv.serve_forever, daemon=True,
                                 kwargs={"poll_interval": 0.1})
            t.start()
            self._servers.append(srv)
            self._threads.append(t)
        self.https_port = https.server_address[1]
        self.http_port = plain.server_address[1]
        return self

    def stop(self):
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(5)
        self._servers, self._threads = [], []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- where things are --
    @property
    def ca_file(self):
        return os.path.join(self.pki_dir, "ca.pem")

    @property
    def untrusted_ca_file(self):
        return os.path.join(self.pki_dir, "untrusted-ca.pem")

    @property
    def cert_file(self):
        return os.path.join(self.pki_dir, "server.pem")

    @property
    def key_file(self):
        return os.path.join(self.pki_dir, "server.key")

    @property
    def token_url(self):
        return "https://127.0.0.1:%d/token" % self.https_port

    @property
    def auth_url(self):
        return "https://127.0.0.1:%d/authorize" % self.https_port

    @property
    def introspect_url(self):
        return "http://127.0.0.1:%d/introspect" % self.http_port

    def client_context(self):
        """An ssl context for test code that talks to the HTTPS endpoint."""
        return ssl.create_default_context(cafile=self.ca_file)

    def dovecot_passdb_args(self):
        """Contents of the file named by Dovecot's oauth2 passdb args."""
        return ("introspection_mode = post\n"
                "introspection_url = %s\n"
                "username_attribute = email\n"
                "active_attribute = active\n"
                "active_value = true\n" % self.introspect_url)

    def dovecot_conf(self, args_file):
        """Lines for dovecot.conf that make Dovecot check tokens here.

        Writes the oauth2 passdb's args file (it must be readable by the auth
        process). The passwd-file passdb should also get
        `mechanisms = plain login`, or Dovecot first tries each token as a
        password and logs a password mismatch.
        """
        with open(args_file, "w") as f:
            f.write(self.dovecot_passdb_args())
        os.chmod(args_file, 0o644)
        return ("auth_mechanisms = plain login xoauth2 oauthbearer\n"
                "passdb {\n"
                "  driver = oauth2\n"
                "  mechanisms = xoauth2 oauthbearer\n"
                "  args = %s\n"
                "}\n" % args_file)

    # -- tokens --
    def add_user(self, user):
        """A fresh refresh token for user."""
        rt = _new_refresh_token()
        with self.lock:
            self.refresh_tokens[rt] = user
        return rt

    def revoke(self, user=None):
        """Kill the refresh tokens (of user, or all) and their access tokens."""
        with self.lock:
            for rt, u in list(self.refresh_tokens.items()):
                if user is None or u == user:
                    del self.refresh_tokens[rt]
                    self.dead_refresh_tokens.add(rt)
            for at, (u, _) in list(self.access.items()):
                if user is None or u == user:
                    del self.access[at]

    def expire_access_tokens(self):
        with self.lock:
            self.access = {t: (u, 0) for t, (u, _) in self.access.items()}

    def is_active(self, token):
        with self.lock:
            entry = self.access.get(token)
        return entry is not None and entry[1] >= time.time()

    def expiry_of(self, token):
        """When token expires (time.time() seconds), None if unknown."""
        with self.lock:
            entry = self.access.get(token)
        return entry[1] if entry else None

    def user_of(self, token):
        with self.lock:
            entry = self.access.get(token)
        return entry[0] if entry else None

    def all_secrets(self):
        """Every secret issued or known, for leak checks."""
        with self.lock:
            return ([self.client_secret] + list(self.refresh_tokens)
                    + list(self.dead_refresh_tokens) + list(self.access)
                    + list(self.codes))

    def _issue(self, user):
        at = "ya29." + secrets.token_urlsafe(24)
        self.access[at] = (user, time.time() + self.token_lifetime)
        return {"access_token": at, "expires_in": self.token_lifetime,
                "token_type": "Bearer", "scope": self.scope}

    def _token(self, form):
        if form.get("client_id") != self.client_id or (
                self.client_secret is not None
                and form.get("client_secret") != self.client_secret):
            return 401, {"error": "invalid_client",
                         "error_description": "The OAuth client was not found."}
        grant = form.get("grant_type")
        if grant == "refresh_token":
            with self.lock:
                self.refreshes += 1
            if self.delay:
                time.sleep(self.delay)
            with self.lock:
                rt = form.get("refresh_token", "")
                user = self.refresh_tokens.get(rt)
                if user is None:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "Token has been expired or revoked."}
                reply = self._issue(user)
                if self.rotate:
                    del self.refresh_tokens[rt]
                    self.dead_refresh_tokens.add(rt)
                    new = _new_refresh_token()
                    self.refresh_tokens[new] = user
                    reply["refresh_token"] = new
                return 200, reply
        if grant == "authorization_code":
            with self.lock:
                self.exchanges += 1
                entry = self.codes.pop(form.get("code", ""), None)
                if entry is None:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "Malformed auth code."}
                user, challenge, redirect = entry
                if form.get("redirect_uri") != redirect:
                    return 400, {"error": "redirect_uri_mismatch"}
                verifier = form.get("code_verifier", "")
                if _pkce_s256(verifier) != challenge:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "Invalid code verifier."}
                reply = self._issue(user)
                rt = _new_refresh_token()
                self.refresh_tokens[rt] = user
                reply["refresh_token"] = rt
                return 200, reply
        return 400, {"error": "unsupported_grant_type"}


if __name__ == "__main__":
    import sys
    import tempfile
    d = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="mgauth.")
    with AuthServer(d) as a:
        print("token_url=%s\nauth_url=%s\nintrospect_url=%s\nca_file=%s\n"
              "client_id=%s\nrefresh_token(alice)=%s"
              % (a.token_url, a.auth_url, a.introspect_url, a.ca_file,
                 a.client_id, a.add_user("alice")), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
