"""`todo-api serve --workers 2` with METRICS_ENABLED: every worker's scrape shows all workers."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.api.test_metrics import Samples, parse, requests, value
from tests.support.cli import Server, start_serve, wait_gone
from tests.support.tokens import make_token, new_user_id

POOL_MAX = 3


def _workers(server: Server) -> list[psutil.Process]:
    """The live workers (a killed one is a zombie until the supervisor reaps it)."""
    workers = []
    for child in psutil.Process(server.process.pid).children():
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
    return workers


class Connection:
    """One keep-alive connection, and the worker that accepted it."""

    def __init__(self, server: Server) -> None:
        host, port = server.base_url.removeprefix("http://").split(":")
        self.http = http.client.HTTPConnection(host, int(port), timeout=10)
        self.get("/healthz")  # accepted by a worker now
        local = self.http.sock.getsockname()[:2]
        owners = [
            worker.pid
            for worker in _workers(server)
            for conn in worker.net_connections(kind="tcp")
            if conn.raddr and (conn.raddr.ip, conn.raddr.port) == local
        ]
        assert len(owners) == 1, owners
        self.worker = owners[0]

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http.request("GET", path, headers=headers)
        response = self.http.getresponse()
        return response.status, response.read().decode()

    def scrape(self) -> Samples:
        status, text = self.get("/metrics")
        assert status == 200, text
        return parse(text)


def _one_connection_per_worker(server: Server) -> dict[int, Connection]:
    """Connect until each of the two workers holds one of our connections."""
    kept: dict[int, Connection] = {}
    for _ in range(60):
        connection = Connection(server)
        if connection.worker in kept:
            connection.http.close()
        else:
            kept[connection.worker] = connection
        if len(kept) == 2:
            return kept
    raise AssertionError(f"every connection went to the same worker: {list(kept)}")


def test_two_workers_scrape_the_same_totals_and_a_dead_workers_gauges_leave(
    tmp_path: Path, database_url: str
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = start_serve(
        tmp_path,
        database_url,
        workers=2,
        METRICS_ENABLED="true",
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE=str(POOL_MAX),
        TMPDIR=str(temp),
    )
    token = make_token(new_user_id())
    try:
        (directory,) = temp.glob("todo-api-metrics-*")  # made by the parent for this run
        first, second = _one_connection_per_worker(server).values()
        for connection, count in ((first, 3), (second, 2)):
            for _ in range(count):
                assert connection.get("/api/users/me", token)[0] == 200
        for connection in (first, second):
            samples = connection.scrape()
            assert requests(samples, "GET", "/api/users/me", 200) == 5
            assert value(samples, "todo_api_db_pool_max_connections") == 2 * POOL_MAX

        os.kill(second.worker, signal.SIGKILL)
        old = {first.worker, second.worker}
        replacement = _connect_to(server, lambda pid: pid not in old)
        survivor = _connect_to(server, lambda pid: pid == first.worker)  # a keep-alive ends in 5 s
        for connection in (survivor, replacement):
            samples = connection.scrape()
            # The dead worker's requests still count; its pool has left the sum.
            assert requests(samples, "GET", "/api/users/me", 200) == 5
            assert value(samples, "todo_api_db_pool_max_connections") == 2 * POOL_MAX
            connection.http.close()
        workers = _workers(server)
    finally:
        assert server.stop(signal.SIGTERM) == 0, server.stderr
    assert wait_gone(workers) == []
    assert not directory.exists()
    assert "Traceback" not in server.stderr + server.stdout


def _connect_to(server: Server, wanted: Callable[[int | None], bool]) -> Connection:
    """Connect until a worker that is `wanted` accepts (a new one has then finished starting)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        connection = Connection(server)
        if wanted(connection.worker):
            return connection
        connection.http.close()
        time.sleep(0.05)
    raise AssertionError(f"no such worker answered:\n{server.stderr}")
