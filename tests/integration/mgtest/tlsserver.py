"""A TLS server on 127.0.0.1 run by an asyncio loop on its own thread.

The base of the test harness's scripted servers and proxies (byeproxy.py,
scripted.py): a subclass sets pki_dir (a directory holding server.pem and
server.key, see server.make_pki) and defines `async def _session(reader,
writer)`, called for each connection.

    with Subclass(...) as srv:
        srv.port
"""

import asyncio
import os
import ssl
import threading


class TlsServer:
    pki_dir = None
    port = None
    stream_limit = 1 << 16  # asyncio's line limit for readers

    def __enter__(self):
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10) or self.port is None:
            raise AssertionError(f"{type(self).__name__} did not start")
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        return False

    def _run(self, ready):
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main(ready))
        self._loop.close()

    async def _main(self, ready):
        self._stop = asyncio.Event()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.pki_dir, "server.pem"),
                            os.path.join(self.pki_dir, "server.key"))
        srv = await asyncio.start_server(self._session, "127.0.0.1", 0, ssl=ctx,
                                         limit=self.stream_limit)
        self.port = srv.sockets[0].getsockname()[1]
        ready.set()
        async with srv:
            await self._stop.wait()
            srv.close()
