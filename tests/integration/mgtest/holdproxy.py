"""A TLS front for Dovecot's plain IMAP port that holds a run at one stage.

The proxy passes everything on until a client command matches `pattern` (a
bytes regex on the command line) on a session that `sessions` accepts
(1-based, in accept order; None: any).  Then it passes on `after_bytes` more
bytes of the server's answer and forwards nothing more to that client: the
client waits in that command, as it would on a stalled server.  Only the
first matching command is held; every other session goes on as normal.
`held` is set once the hold is in place, so a test can act "during LOGIN",
"during LIST", "mid-FETCH".

    with HoldProxy(server, rb"^\\S+ LIST ") as p:
        ... p.port ...; p.held.wait(10)

With pattern=None nothing is forwarded at all, not even the TLS handshake:
a server that accepts the connection and never answers.

It serves server.pki's certificate for 127.0.0.1, so mailgrab verifies it
with server.ca_file as usual.
"""

import asyncio
import re
import ssl
import threading

from mgtest.byeproxy import ByeProxy


class HoldProxy(ByeProxy):
    """ByeProxy's TLS front and lifecycle, with sessions that hold."""

    def __init__(self, server, pattern, sessions=None, after_bytes=0):
        super().__init__(server)
        self.pattern = re.compile(pattern) if pattern is not None else None
        self.hold_sessions = sessions
        self.after_bytes = after_bytes
        self.held = threading.Event()
        self.accepted = 0
        self._armed = False

    async def _main(self, ready):
        if self.pattern is not None:
            return await super()._main(ready)
        self._stop = asyncio.Event()
        srv = await asyncio.start_server(self._silent, "127.0.0.1", 0)
        self.port = srv.sockets[0].getsockname()[1]
        ready.set()
        async with srv:
            await self._stop.wait()
            srv.close()

    async def _silent(self, reader, writer):
        self.accepted += 1
        self.held.set()
        try:
            while await reader.read(65536):
                pass
        except OSError:
            pass
        writer.close()

    async def _session(self, c_reader, c_writer):
        self.accepted += 1
        number = self.accepted
        hold = {"left": None}  # bytes still passed on once the hold is armed
        await self._relay(c_reader, c_writer, self.server.imap_port,
                          lambda s_writer: self._up(c_reader, s_writer, number, hold),
                          lambda s_reader: self._down(s_reader, c_writer, hold))

    async def _up(self, reader, writer, number, hold):
        """Client to server, line by line (mailgrab sends no literals)."""
        try:
            while data := await reader.readline():
                if (not self._armed and self.pattern.search(data)
                        and (self.hold_sessions is None or number in self.hold_sessions)):
                    self._armed = True
                    hold["left"] = self.after_bytes
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        writer.close()

    async def _down(self, reader, writer, hold):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if hold["left"] is not None:
                data = data[:hold["left"]]
                hold["left"] -= len(data)
            if data:
                writer.write(data)
                await writer.drain()
            if hold["left"] == 0:
                self.held.set()
                await self._stop.wait()  # the client waits for the rest
                return
