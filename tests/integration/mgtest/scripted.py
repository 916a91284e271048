"""A small scripted IMAPS server for misbehaviour no real server produces.

Used only by test_hostile.py: lying literals, bodies that do not match their
RFC822.SIZE, garbage INTERNALDATE, huge or endless lines, floods of untagged
responses, BYE at any stage, hostile FLAGS and mailbox names.  Everything a
real server does well is tested against Dovecot instead.

It serves mailboxes from memory, {name: {uid: bytes}}, over TLS with a
certificate for 127.0.0.1 signed by the harness CA (mgtest.server.make_pki),
and speaks just enough IMAP for mailgrab: CAPABILITY, LOGIN, LIST, EXAMINE,
UID FETCH (the listing and the bodies), NOOP, LOGOUT.

Each stage of a session can be perverted by a hook, a callable given by
name in `hooks` that returns what to send instead of the default:

    greeting(s)                    before any command
    login(s, tag)                  LOGIN
    list(s, tag)                   LIST
    examine(s, tag, box)           EXAMINE
    listing(s, tag, uids)          UID FETCH ... (UID RFC822.SIZE)
    message(s, seq, uid, default)  one message's FETCH response in a body fetch
    fetched(s, tag, uids)          the tagged end of a body fetch
    compress(s, tag)               COMPRESS DEFLATE (default: BAD, not offered);
                                   the server never compresses, whatever it answers

`s` is the session (s.server, s.number: 1 for the first connection; s.box,
the examined mailbox).  A hook returns bytes, an iterable of bytes (sent
piece by piece, so an endless or 500 MB response costs the server nothing),
or None for the default; CLOSE in what it returns ends the connection there.
The helpers default_*() build the default answers for hooks to edit.

    with Scripted(pki_dir, {"INBOX": {1: b"..."}}, hooks={...}) as srv:
        srv.port, srv.sessions, srv.commands
"""

import asyncio
import logging
import re
import ssl

from mgtest.tlsserver import TlsServer

CLOSE = object()
DATE = b'"17-Jul-1996 02:44:25 -0700"'


def message(i, size=300):
    """A small RFC 5322 message, distinct per i."""
    head = (f"From: sender{i}@example.org\r\nTo: alice@example.org\r\n"
            f"Subject: message {i}\r\nMessage-ID: <{i}@scripted>\r\n\r\n").encode()
    body = (f"body of message {i} ".encode() * (size // 20 + 1))[:max(size - len(head) - 2, 0)]
    return head + body + b"\r\n"


def uid_set(text, known):
    """The UIDs of an IMAP set such as 1:4,9,12:* among known (sorted)."""
    top = max(known) if known else 0
    out = set()
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        lo = top if lo == "*" else int(lo)
        hi = lo if not hi else (top if hi == "*" else int(hi))
        lo, hi = min(lo, hi), max(lo, hi)
        out.update(u for u in known if lo <= u <= hi)
    return sorted(out)


class Session:
    def __init__(self, server, number):
        self.server, self.number = server, number
        self.box = None

    def msgs(self):
        return self.server.boxes.get(self.box, {})

    def default_examine(self, tag, uidvalidity=None, exists=None):
        m = self.msgs()
        uv = self.server.uidvalidity if uidvalidity is None else uidvalidity
        n = len(m) if exists is None else exists
        return (b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                + b"* %d EXISTS\r\n* 0 RECENT\r\n" % n
                + (b"* OK [UIDVALIDITY %d] ok\r\n" % uv if uv is not None else b"")
                + b"* OK [UIDNEXT %d] ok\r\n" % (max(m, default=0) + 1)
                + tag + b" OK [READ-ONLY] EXAMINE completed\r\n")

    def default_message(self, seq, uid, body=None, flags=b"\\Seen", date=DATE, size=None):
        body = self.msgs()[uid] if body is None else body
        size = len(body) if size is None else size
        return (b"* %d FETCH (UID %d RFC822.SIZE %d INTERNALDATE %s FLAGS (%s) BODY[] {%d}\r\n"
                % (seq, uid, size, date, flags, len(body)) + body + b")\r\n")

    def default_listing(self, tag, uids):
        m = self.msgs()
        seqs = {u: i + 1 for i, u in enumerate(sorted(m))}
        return (b"".join(b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (seqs[u], u, len(m[u]))
                         for u in uids)
                + tag + b" OK Fetch completed\r\n")


class Scripted(TlsServer):
    stream_limit = 1 << 20

    def __init__(self, pki_dir, boxes, hooks=None, uidvalidity=1234, separator=b"/"):
        self.pki_dir = pki_dir
        self.boxes = boxes
        self.hooks = hooks or {}
        self.uidvalidity = uidvalidity
        self.separator = separator
        self.sessions = 0
        self.commands = []  # (session number, command line) as received

    def body_fetches(self):
        """How many UID FETCH commands asked for bodies."""
        return sum(1 for _, c in self.commands if b"BODY.PEEK[]" in c)

    async def _main(self, ready):
        # Clients that hang up on a flood are the point: not worth a warning.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)
        await super()._main(ready)

    async def _send(self, reader, writer, out):
        """Send out (bytes or pieces); False when the connection is to end
        (the script says CLOSE, or the client has gone)."""
        if out is None:
            return True
        pieces = [out] if isinstance(out, (bytes, bytearray)) or out is CLOSE else out
        for piece in pieces:
            if piece is CLOSE:
                return False
            if not isinstance(piece, (bytes, bytearray)):
                if not await self._send(reader, writer, piece):
                    return False
                continue
            if writer.is_closing() or reader.at_eof() or reader.exception():
                return False
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0)  # drain need not yield: let hang-ups and others in
        return True

    def _hook(self, name, default, *args):
        fn = self.hooks.get(name)
        out = fn(*args) if fn else None
        return default() if out is None else out

    async def _session(self, reader, writer):
        self.sessions += 1
        s = Session(self, self.sessions)
        try:
            if await self._send(reader, writer, self._hook(
                    "greeting", lambda: b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n", s)):
                while line := await reader.readline():
                    self.commands.append((s.number, line.rstrip(b"\r\n")))
                    if not await self._send(reader, writer, self._command(s, line)):
                        break
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except (OSError, ssl.SSLError):
                pass

    def _command(self, s, line):
        m = re.match(rb"(\S+) (UID FETCH|\S+) ?(.*?)\r?\n?$", line, re.S | re.I)
        if not m:
            return b"* BAD what?\r\n"
        tag, cmd, args = m.group(1), m.group(2).upper(), m.group(3)
        if cmd == b"CAPABILITY":
            return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"
        if cmd == b"LOGIN":
            return self._hook("login", lambda: tag + b" OK logged in\r\n", s, tag)
        if cmd == b"NOOP":
            return tag + b" OK done\r\n"
        if cmd == b"COMPRESS":
            return self._hook("compress", lambda: tag + b" BAD unknown command\r\n", s, tag)
        if cmd == b"LOGOUT":
            return [b"* BYE bye\r\n" + tag + b" OK done\r\n", CLOSE]
        if cmd == b"LIST":
            return self._hook("list", lambda: b"".join(
                b'* LIST () "%s" "%s"\r\n' % (self.separator, name.encode())
                for name in self.boxes) + tag + b" OK done\r\n", s, tag)
        if cmd == b"EXAMINE":
            name = args.decode("utf-8", "replace").strip('"')
            if name not in self.boxes and "examine" not in self.hooks:
                return tag + b" NO [NONEXISTENT] no such mailbox\r\n"
            s.box = name
            return self._hook("examine", lambda: s.default_examine(tag), s, tag, name)
        if cmd == b"UID FETCH":
            spec, _, items = args.partition(b" ")
            uids = uid_set(spec.decode(), sorted(s.msgs()))
            if b"BODY.PEEK[]" not in items:
                return self._hook("listing", lambda: s.default_listing(tag, uids), s, tag, uids)
            return self._fetch(s, tag, uids)
        return tag + b" BAD unknown command\r\n"

    def _fetch(self, s, tag, uids):
        seqs = {u: i + 1 for i, u in enumerate(sorted(s.msgs()))}
        fn = self.hooks.get("message")
        for uid in uids:
            default = s.default_message(seqs[uid], uid)
            out = fn(s, seqs[uid], uid, default) if fn else None
            yield default if out is None else out
        yield self._hook("fetched", lambda: tag + b" OK Fetch completed\r\n", s, tag, uids)
