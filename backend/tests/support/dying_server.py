"""A Unix-socket relay in front of the tests' PostgreSQL that can make the server die mid-request.

The app connects to the relay (`url`) instead of the server; connections are relayed byte for
byte until `die_on_next_request()`. Then the next string a client sends is left unread and the
client gets what a backend terminated at that moment sends (a FATAL `57P01` ErrorResponse)
before its socket is closed. A stream socket closed with unread data resets its peer: the
client's side reports an error event (POLLERR) with the FATAL message readable, which is what
`pg_terminate_backend` does to a request whose string the backend had not read yet.

The relay holds the request (`seen`) until the test lets it die (`let_die`, which returns once
the socket is closed): a test that blocks its event loop meanwhile makes the message and the
reset reach the client in one event, as they did under load.
"""

from __future__ import annotations

import select
import socket
import struct
import tempfile
import threading
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict

_PORT = 5999  # only names the socket file: .s.PGSQL.5999


def _fatal(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        code + value.encode() + b"\0"
        for code, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


TERMINATED = _fatal("57P01", "terminating connection due to administrator command")


class DyingServer:
    """Relays to the server of `database_url`; see the module docstring."""

    def __init__(self, database_url: str) -> None:
        params = conninfo_to_dict(database_url)
        host = str(params.get("host") or "/var/run/postgresql")
        port = int(params.get("port") or 5432)
        if host.startswith("/"):
            self._target: tuple[int, str | tuple[str, int]] = (
                socket.AF_UNIX,
                f"{host}/.s.PGSQL.{port}",
            )
        else:
            self._target = (socket.AF_INET, (host, port))
        self._directory = tempfile.TemporaryDirectory(prefix="todo-api-dying-")
        path = Path(self._directory.name) / f".s.PGSQL.{_PORT}"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        self._armed = threading.Event()
        self.seen = threading.Event()  # the string that is to die arrived
        self._release = threading.Event()
        self._dead = threading.Event()
        self.killed = 0
        self._closing = False
        self._threads: list[threading.Thread] = []
        parts = urlsplit(database_url)
        query = dict(parse_qsl(parts.query))
        query.update(host=self._directory.name, port=str(_PORT))
        netloc = parts.netloc.rsplit("@", 1)
        userinfo = netloc[0] + "@" if len(netloc) == 2 else ""
        self.url = urlunsplit(parts._replace(netloc=userinfo, query=urlencode(query)))
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def die_on_next_request(self) -> None:
        self._armed.set()

    def let_die(self, timeout: float = 10.0) -> None:
        """Let the held request's server die; return once its socket is closed."""
        self._release.set()
        if not self._dead.wait(timeout):
            raise TimeoutError("the relay did not close the connection")

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._relay, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket) -> None:
        family, address = self._target
        server = socket.socket(family, socket.SOCK_STREAM)
        try:
            server.connect(address)
            startup_done = False
            while not self._closing:
                readable, _, _ = select.select([client, server], [], [], 0.2)
                if client in readable:
                    if startup_done and self._armed.is_set():
                        self._armed.clear()
                        self.seen.set()
                        self._release.wait(30)
                        self.killed += 1
                        client.sendall(TERMINATED)
                        client.close()  # with the client's string unread: a reset
                        self._dead.set()
                        return
                    data = client.recv(65536)
                    if not data:
                        return
                    server.sendall(data)
                if server in readable:
                    data = server.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
                    startup_done = startup_done or data.endswith(b"Z\x00\x00\x00\x05I")
        except OSError:
            return
        finally:
            for end in (client, server):
                with suppress(OSError):
                    end.close()

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._directory.cleanup()

    def __enter__(self) -> DyingServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
