"""A TLS front for Dovecot's plain IMAP port that ends sessions the way Gmail
does when their OAuth2 token expires: an untagged `* BYE`, sent between two
FETCH responses of a running command, then the connection is closed.

Dovecot never does this by itself (it keeps a session whose token expired).
The proxy understands IMAP framing just enough (lines and {n} literals) to
put the BYE on a response boundary, never inside a message.  With
mode="cut" it instead closes the connection halfway through a message.  With
mode="reexamine" it ends a session that comes back to open another mailbox
(its second EXAMINE) with a BYE instead of an answer: what a client meets
when the server ended the session while it sat idle between two mailboxes.

mode="expire" ends every session when the OAuth2 token it logged in with
expires, as Gmail does, whatever it was doing: the first response to start
after that moment becomes the `* BYE` (expiry_of(token) gives a token's
expiry time, e.g. AuthServer.expiry_of).  Responses are passed on as they
stream, so a message that started before the expiry arrives whole.  The "at most once" rule below does not
apply to it: a batch may be interrupted any number of times.

Two modes make the server refuse instead of ending the session:
mode="refuse" answers a message FETCH (one asking for BODY.PEEK[]) with
`TAG NO <refusal>` itself, without passing it on, `times` times in all
(Gmail's "[OVERQUOTA] Account exceeded command or bandwidth limits.", or a
busy server's "[UNAVAILABLE] ..."); mode="lose" passes every FETCH on but
holds back the message with UID lose_uid and turns the command's OK into
"NO [SERVERBUG] ...", every time, as Dovecot does for a message it cannot
read.

Two modes slow the client down as Gmail does: mode="throttle" turns the
tagged OK of every message FETCH into Gmail's "TAG OK Success [THROTTLED]"
and records, for each message FETCH sent, how many were in flight at once
and how many throttled replies had gone out before it (`starts`);
mode="crowd" answers a login with Gmail's "NO [ALERT] Too many simultaneous
connections. (Failure)" while `max_sessions` sessions are logged in
(`refused` counts them, `peak` is the most sessions logged in at once).

A session is ended at the first FETCH response after it has carried
after_bytes to the client, at most `times` in all, and never during a
UID FETCH that asks for a UID an earlier ended session was fetching: each
batch of the client is lost at most once, so the test does not depend on how
often the client retries before giving a message up.

    with ByeProxy(server, after_bytes=100000, times=8) as p:
        p.port, p.byes

It connects to server.imap_port, or target_port (e.g. an mgproxy in front
of it).  It serves server.pki's certificate for 127.0.0.1, so mailgrab verifies it
with server.ca_file as usual.
"""

import asyncio
import base64
import binascii
import re
import ssl
import time

from mgtest.tlsserver import TlsServer

BYE = b"* BYE Session expired, please login again.\r\n"
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class ByeProxy(TlsServer):
    def __init__(self, server, after_bytes=0, times=1, mode="bye",
                 refusal=b"[UNAVAILABLE] Temporary server failure", lose_uid=None,
                 expiry_of=None, target_port=None, max_sessions=0, bye=BYE):
        self.server = server
        self.pki_dir = server.pki
        self.target_port = target_port or server.imap_port
        self.expiry_of = expiry_of
        self.mode = mode
        self.refusal = refusal
        self.lose_uid = lose_uid
        self.refused = 0  # FETCH commands answered NO (refuse and lose modes)
        self._sent = 0    # bytes sent to clients, all sessions
        self.lost = set()  # UIDs of the FETCH commands interrupted so far
        self.after_bytes = after_bytes
        self.times = times
        self.byes = 0
        self.bye = bye  # what mode="bye" sends, e.g. Gmail's "* BYE [OVERQUOTA] ..."
        self.sessions = 0
        self.max_sessions = max_sessions
        self.logged_in = 0  # crowd mode: sessions logged in now
        self.peak = 0
        self.throttled = 0  # throttle mode: OKs rewritten
        self.in_flight = 0  # message FETCHes sent and not yet answered
        self.starts = []    # (in flight with it, throttled replies before it)

    async def _relay(self, c_reader, c_writer, port, up, down):
        """Connect to the server's port and run up(s_writer) (client to
        server) beside down(s_reader) (server to client) until either ends;
        then close both sides."""
        try:
            s_reader, s_writer = await asyncio.open_connection(self.server.host, port)
        except OSError:
            c_writer.close()
            return
        task = asyncio.ensure_future(up(s_writer))
        try:
            await down(s_reader)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            task.cancel()
            for w in (c_writer, s_writer):
                try:
                    w.close()
                except (OSError, ssl.SSLError):
                    pass

    async def _session(self, c_reader, c_writer):
        self.sessions += 1
        fetching = _Command()  # this session's current UID FETCH
        try:
            await self._relay(c_reader, c_writer, self.target_port,
                              lambda s_writer: self._up(c_reader, s_writer, c_writer, fetching),
                              lambda s_reader: self._down(s_reader, c_writer, fetching))
        finally:
            self.logged_in -= fetching.logged_in
            self.in_flight -= fetching.waiting

    async def _up(self, reader, writer, c_writer, fetching):
        """Client to server, line by line (mailgrab sends no literals)."""
        examines = 0
        try:
            while data := await reader.readline():
                m = re.match(rb"(\S+) UID FETCH ([0-9:,*]+) ", data)
                if m:
                    fetching.clear()
                    fetching.update(_uids(m.group(2)))
                    fetching.tag, fetching.dropped = m.group(1), False
                    fetching.bodies = b"BODY.PEEK[]" in data
                    if (self.mode == "refuse" and b"BODY.PEEK[]" in data
                            and self._sent >= self.after_bytes and self.refused < self.times):
                        self.refused += 1
                        c_writer.write(m.group(1) + b" NO " + self.refusal + b"\r\n")
                        await c_writer.drain()
                        continue
                if self.mode == "throttle" and m and fetching.bodies:
                    fetching.waiting = 1
                    self.in_flight += 1
                    self.starts.append((self.in_flight, self.throttled))
                login = re.match(rb"(\S+) (?:LOGIN|AUTHENTICATE) ", data, re.I)
                if self.mode == "crowd" and login and not fetching.logged_in:
                    if self.logged_in >= self.max_sessions:
                        self.refused += 1
                        c_writer.write(login.group(1) + b" NO [ALERT] Too many simultaneous "
                                       b"connections. (Failure)\r\n")
                        await c_writer.drain()
                        continue
                    fetching.logged_in = 1
                    self.logged_in += 1
                    self.peak = max(self.peak, self.logged_in)
                m = re.match(rb"\S+ AUTHENTICATE (?:XOAUTH2|OAUTHBEARER) (\S+)", data)
                if m and self.expiry_of is not None:
                    fetching.expires = self.expiry_of(_bearer(m.group(1)))
                if re.match(rb"\S+ EXAMINE ", data):
                    examines += 1
                    # The client waits for this answer, so nothing of the
                    # server's is on its way down: the BYE stands alone.
                    if self.mode == "reexamine" and examines > 1 and self.byes < self.times:
                        self.byes += 1
                        c_writer.write(BYE)
                        await c_writer.drain()
                        c_writer.close()
                        break
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        writer.close()

    async def _down(self, reader, writer, fetching):
        """Server to client, one whole response at a time."""
        if self.mode == "expire":
            return await self._down_expire(reader, writer, fetching)
        sent = 0
        while True:
            response = await reader.readuntil(b"\r\n")
            while m := _LITERAL.search(response):
                response += await reader.readexactly(int(m.group(1)))
                response += await reader.readuntil(b"\r\n")
            if self.mode == "lose" and fetching.bodies and response.startswith(b"* "):
                m = re.match(rb"\* \d+ FETCH \(.*?\bUID (\d+)", response[:300], re.S)
                if m and int(m.group(1)) == self.lose_uid:
                    fetching.dropped = True
                    continue
            if (self.mode == "throttle" and fetching.bodies and fetching.tag
                    and response.startswith(fetching.tag + b" OK")):
                self.throttled += 1
                response = fetching.tag + b" OK Success [THROTTLED]\r\n"
            if fetching.waiting and fetching.tag and response.startswith(fetching.tag + b" "):
                fetching.waiting = 0
                self.in_flight -= 1
            if (self.mode == "lose" and fetching.dropped and fetching.tag
                    and response.startswith(fetching.tag + b" OK")):
                self.refused += 1
                fetching.dropped = False
                response = (fetching.tag + b" NO [SERVERBUG] Internal error occurred. "
                            b"Refer to server log for more information.\r\n")
            if (self.mode == "expire" and fetching.expires is not None
                    and time.time() >= fetching.expires):
                self.byes += 1
                writer.write(BYE)
                await writer.drain()
                return
            if (self.mode in ("bye", "cut") and sent >= self.after_bytes and self.byes < self.times
                    and re.match(rb"\* \d+ FETCH ", response)
                    and not fetching & self.lost):
                self.byes += 1
                self.lost |= fetching
                writer.write(self.bye if self.mode == "bye" else response[:len(response) // 2])
                await writer.drain()
                return
            writer.write(response)
            await writer.drain()
            sent += len(response)
            self._sent += len(response)


    async def _down_expire(self, reader, writer, fetching):
        """Server to client as it comes (a message's literal in pieces, as a
        server streams it); the first response to start after the session's
        token expired is replaced by BYE."""
        while True:
            line = await reader.readuntil(b"\r\n")
            if fetching.expires is not None and time.time() >= fetching.expires:
                self.byes += 1
                writer.write(BYE)
                await writer.drain()
                return
            while True:
                writer.write(line)
                await writer.drain()
                m = _LITERAL.search(line)
                if not m:
                    break
                left = int(m.group(1))
                while left > 0:
                    piece = await reader.read(min(left, 65536))
                    if not piece:
                        raise asyncio.IncompleteReadError(b"", left)
                    writer.write(piece)
                    await writer.drain()
                    left -= len(piece)
                line = await reader.readuntil(b"\r\n")


class _Command(set):
    """The UIDs of a session's current UID FETCH, with its tag."""

    tag = b""
    bodies = False   # it asks for messages, not only their sizes
    dropped = False  # lose mode: a message of it was held back
    expires = None   # expire mode: when the session's token expires
    logged_in = 0    # crowd mode: this session counts as logged in
    waiting = 0      # throttle mode: its message FETCH awaits the tagged reply


def _bearer(initial_response):
    """The token in an XOAUTH2 or OAUTHBEARER initial response, or None."""
    try:
        text = base64.b64decode(initial_response, validate=True)
    except (binascii.Error, ValueError):
        return None
    m = re.search(rb"auth=Bearer ([^\x01]+)\x01", text)
    return m.group(1).decode("ascii", "replace") if m else None


def _uids(seq_set):
    """The UIDs of an IMAP sequence set such as 1:5,9 (no *)."""
    out = set()
    for part in seq_set.decode().split(","):
        lo, _, hi = part.partition(":")
        if lo == "*" or hi == "*":
            continue
        lo, hi = int(lo), int(hi or lo)
        out.update(range(min(lo, hi), max(lo, hi) + 1))
    return out
