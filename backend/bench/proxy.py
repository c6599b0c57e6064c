"""A TCP proxy in front of PostgreSQL that counts round trips and can add latency.

A round trip is a burst of client->server bytes that follows a server->client reply on the same
connection: the client had to wait for the server before it could go on. A request whose set-up
and statement travel together (one query string, as the service sends them) shows one; a driver
that waits for each statement shows one per statement.

`latency` (seconds) delays every client->server chunk by that much, in order, so each round trip
of a request costs that much more: a request that gets N ms slower with N ms of latency made one
round trip. The proxy listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Upstream:
    """Where PostgreSQL listens: a Unix socket directory or a TCP host, and a port."""

    host: str
    port: int

    @property
    def unix_socket(self) -> str | None:
        return f"{self.host}/.s.PGSQL.{self.port}" if self.host.startswith("/") else None

    @classmethod
    def from_url(cls, url: str) -> Upstream:
        params = conninfo_to_dict(url)
        host = str(params.get("host") or "/var/run/postgresql").split(",")[0]
        return cls(host=host, port=int(str(params.get("port") or 5432).split(",")[0]))


def url_through(url: str, port: int) -> str:
    """The same postgresql:// URL (user, password, database, options), reaching the proxy."""
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "hostaddr", "port")]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


class _Link:
    """One client connection and the server connection behind it."""

    def __init__(self) -> None:
        self.server_replied = True  # the client's first bytes start a round trip


class CountingProxy:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.latency = 0.0
        self.round_trips = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        path = self.upstream.unix_socket
        if path is not None:
            return await asyncio.open_unix_connection(path, limit=CHUNK)
        return await asyncio.open_connection(self.upstream.host, self.upstream.port, limit=CHUNK)

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        link = _Link()
        try:
            server_in, server_out = await self._open_upstream()
        except OSError:
            client_out.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                self._client_to_server(link, client_in, server_out),
                self._server_to_client(link, server_in, client_out),
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in (client_out, server_out):
                writer.close()
            self._tasks.discard(task)

    async def _client_to_server(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        # Chunks are stamped on arrival and released `latency` later, in order: pure added
        # latency however the client splits its writes.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sink.write(data)
                await sink.drain()
            with contextlib.suppress(OSError):
                sink.write_eof()

        releaser = asyncio.create_task(release())
        try:
            while data := await source.read(CHUNK):
                if link.server_replied:
                    link.server_replied = False
                    self.round_trips += 1
                queue.put_nowait((time.monotonic() + self.latency, data))
            queue.put_nowait((0.0, b""))
            await releaser
        finally:
            releaser.cancel()

    async def _server_to_client(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        while data := await source.read(CHUNK):
            link.server_replied = True
            sink.write(data)
            await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()
