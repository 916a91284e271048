#!/usr/bin/env python3
"""Stand-in for mgproxy's delay mode, for trees where mgproxy is not built.

  delayproxy.py --listen 127.0.0.1:0 --target HOST:PORT --delay-ms N
                --port-file F [--max-seconds S]

Every chunk read from either side is written to the other side N ms later
(so the round trip grows by 2*N ms); nothing is throttled or reordered.
It costs Python CPU time that mgproxy does not, so bench/run labels results
measured through it.
"""

import argparse
import asyncio
import os


class Side(asyncio.Protocol):
    def __init__(self, loop, delay):
        self.loop, self.delay = loop, delay
        self.peer = None      # the other Side
        self.transport = None
        self.pending = []     # data that arrived before the peer was connected

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.loop.call_later(self.delay, self._deliver, data)

    def _deliver(self, data):
        if self.peer is None or self.peer.transport is None:
            self.pending.append(data)
        elif not self.peer.transport.is_closing():
            self.peer.transport.write(data)

    def eof_received(self):
        self.loop.call_later(self.delay, self._close_peer)
        return True

    def _close_peer(self):
        if self.peer is not None and self.peer.transport is not None:
            try:
                self.peer.transport.write_eof()
            except (OSError, RuntimeError):
                self.peer.transport.close()

    def connection_lost(self, exc):
        self.loop.call_later(self.delay + 0.001, self._drop_peer)

    def _drop_peer(self):
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--target", required=True)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--max-seconds", type=float, default=3600)
    a = p.parse_args()
    loop = asyncio.get_running_loop()
    delay = a.delay_ms / 1000.0
    thost, tport = a.target.rsplit(":", 1)

    def client_factory():
        client = Side(loop, delay)

        async def connect():
            try:
                _, server = await loop.create_connection(lambda: Side(loop, delay),
                                                         thost, int(tport))
            except OSError:
                if client.transport is not None:
                    client.transport.close()
                return
            server.peer, client.peer = client, server
            for d in client.pending:
                server.transport.write(d)
            client.pending.clear()
        loop.create_task(connect())
        return client

    lhost, lport = a.listen.rsplit(":", 1)
    srv = await loop.create_server(client_factory, lhost, int(lport))
    port = srv.sockets[0].getsockname()[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.rename(tmp, a.port_file)
    await asyncio.sleep(a.max_seconds)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
