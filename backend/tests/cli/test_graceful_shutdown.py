"""SIGTERM on `todo-api serve`: requests in flight are answered, then the process exits in time.

Requests are held in flight by the database itself: a superuser transaction locks the rows that
the requests update, so each PUT waits inside Postgres until the test lets it go.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.cli import Server, start_serve
from tests.support.tokens import make_token, new_user_id

IN_FLIGHT = 4


def _create_tasks(server: Server, token: str, count: int) -> list[int]:
    headers = {"Authorization": f"Bearer {token}"}
    ids = []
    for number in range(count):
        response = httpx.post(
            f"{server.base_url}/api/tasks", headers=headers, json={"title": f"before {number}"}
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


@contextmanager
def _rows_locked(admin_url: str, ids: list[int]) -> Iterator[psycopg.Connection[Any]]:
    """Hold row locks on `ids` until the block's end (or until the test commits)."""
    with psycopg.connect(admin_url) as conn:
        locked = conn.execute("select id from tasks where id = any(%s) for update", (ids,))
        assert len(locked.fetchall()) == len(ids)
        yield conn
        conn.commit()


def _wait_for_lock_waiters(admin_url: str, count: int, timeout: float = 10.0) -> None:
    """Until `count` of the app's backends wait on a lock: the requests are truly in flight."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from pg_stat_activity"
                " where application_name = 'todo-api' and wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] >= count:
                return
            time.sleep(0.05)
    raise AssertionError(f"{count} requests did not reach the database lock in {timeout} s")


def _put_titles(
    pool: ThreadPoolExecutor, server: Server, token: str, ids: list[int]
) -> list[Future[httpx.Response]]:
    headers = {"Authorization": f"Bearer {token}"}
    return [
        pool.submit(
            httpx.put,
            f"{server.base_url}/api/tasks/{task_id}",
            headers=headers,
            json={"title": f"after {task_id}"},
            timeout=30.0,
        )
        for task_id in ids
    ]


def _titles(admin_url: str, ids: list[int]) -> dict[int, str]:
    with psycopg.connect(admin_url) as conn:
        rows = conn.execute("select id, title from tasks where id = any(%s)", (ids,)).fetchall()
    return {row[0]: row[1] for row in rows}


def _connection_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_every_request_in_flight_and_refuses_new_connections(
    tmp_path: Path, superuser_database_url: str, database_url: str, workers: int
) -> None:
    grace, delay = 8.0, 2.0
    server = start_serve(
        tmp_path,
        database_url,
        workers=workers,
        SHUTDOWN_GRACE_SECONDS=str(grace),
        SHUTDOWN_DELAY_SECONDS=str(delay),
    )
    port = int(server.base_url.rsplit(":", 1)[1])
    admin_url = superuser_database_url
    token = make_token(new_user_id())
    ids = _create_tasks(server, token, IN_FLIGHT)
    try:
        with ThreadPoolExecutor(IN_FLIGHT) as pool, _rows_locked(admin_url, ids) as locks:
            in_flight = _put_titles(pool, server, token, ids)
            _wait_for_lock_waiters(admin_url, IN_FLIGHT)

            server.process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()

            # During the delay the port still accepts, and readiness says "stop sending".
            readiness: list[httpx.Response] = []
            while time.monotonic() - stopped_at < delay - 0.3:
                readiness.append(httpx.get(f"{server.base_url}/readyz", timeout=2.0))
                if readiness[-1].status_code == 503:
                    break
                time.sleep(0.05)
            assert readiness, "no readiness probe answered during the delay"
            assert readiness[-1].status_code == 503, [r.status_code for r in readiness]
            assert readiness[-1].json() == {"status": "shutting_down", "database": "not_checked"}
            assert readiness[-1].headers["connection"] == "close"
            assert readiness[-1].headers["retry-after"]

            # Then the listener closes: new connections are refused, the old ones still wait.
            refused_at = None
            while time.monotonic() - stopped_at < delay + 4.0:
                if _connection_refused(port):
                    refused_at = time.monotonic() - stopped_at
                    break
                time.sleep(0.05)
            assert refused_at is not None, "new connections were still accepted"
            assert refused_at >= delay - 0.1, refused_at
            assert not any(future.done() for future in in_flight)
            assert server.process.poll() is None

            locks.commit()  # the held requests go on and commit
            answers = [future.result(timeout=10.0) for future in in_flight]

        for task_id, answer in zip(ids, answers, strict=True):
            assert answer.status_code == 200, answer.text
            assert answer.json()["id"] == task_id
            assert answer.json()["title"] == f"after {task_id}"
        assert _titles(admin_url, ids) == {task_id: f"after {task_id}" for task_id in ids}
        assert server.process.wait(grace) == 0, server.stderr
        assert time.monotonic() - stopped_at < grace
    finally:
        if server.process.poll() is None:
            server.kill()
    assert "Traceback" not in server.stderr


@pytest.mark.slow
def test_requests_still_running_at_the_end_of_the_grace_period_are_answered_503(
    tmp_path: Path, superuser_database_url: str, database_url: str
) -> None:
    grace = 3.0
    server = start_serve(tmp_path, database_url, workers=2, SHUTDOWN_GRACE_SECONDS=str(grace))
    admin_url = superuser_database_url
    token = make_token(new_user_id())
    ids = _create_tasks(server, token, 2)
    try:
        with ThreadPoolExecutor(2) as pool, _rows_locked(admin_url, ids):
            in_flight = _put_titles(pool, server, token, ids)
            _wait_for_lock_waiters(admin_url, 2)
            server.process.send_signal(signal.SIGTERM)
            stopped_at = time.monotonic()
            # The rows stay locked: these requests cannot finish within the grace period.
            exit_code = server.process.wait(grace + 1.0)
            exited_after = time.monotonic() - stopped_at
            answers = [future.result(timeout=5.0) for future in in_flight]
        assert exit_code == 0, server.stderr
        assert exited_after < grace, exited_after
        for answer in answers:
            # In doubt, never a bare 500: the commit may have happened or not.
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["code"] == "service_unavailable"
        # All or nothing: each task holds its old title or its new one, nothing in between.
        for task_id, title in _titles(admin_url, ids).items():
            assert title in (f"before {ids.index(task_id)}", f"after {task_id}")
        assert "Traceback" not in server.stdout + server.stderr
    finally:
        if server.process.poll() is None:
            server.kill()
