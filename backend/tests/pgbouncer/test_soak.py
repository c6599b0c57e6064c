"""Soak: 20 users, over 10,000 mixed requests, PgBouncer in transaction mode, two workers.

One `todo-api serve --workers 2` talks to the test database through a real PgBouncer (a smaller
server pool than the app's connections, prepared statements off). Every user runs their own
sequence of requests, so each answer can be checked exactly against what that user did: no 5xx,
no row of anyone else, and the workers' memory flat after warm-up.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.cli import Server, start_serve
from tests.support.pgbouncer import running_pgbouncer
from tests.support.tokens import make_token, new_user_id

pytestmark = [pytest.mark.pgbouncer, pytest.mark.slow]

USERS = 20
WARM_UP_PER_USER = 60
MEASURED_PER_USER = 500  # 20 x 500 = 10,000 requests after the warm-up
MAX_LIVE_TASKS = 8
HARD_DEADLINE_SECONDS = 150.0  # a loop that stalls ends here and the test fails on the count
RSS_TOLERANCE = 0.10


@pytest.fixture(scope="module")
def server_through_pgbouncer(
    tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[Server]:
    cwd: Path = tmp_path_factory.mktemp("soak")
    with running_pgbouncer(database_url, pool_size=4) as bouncer_url:
        server = start_serve(cwd, bouncer_url, workers=2, DB_PREPARED_STATEMENTS="false")
        try:
            yield server
        finally:
            server.stop()


def _workers(server: Server) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


@dataclass
class User:
    """One user's client: a keep-alive connection and what the user has made so far."""

    port: int
    id: str = field(default_factory=new_user_id)
    live: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    done: int = 0

    def __post_init__(self) -> None:
        self.headers = {
            "Authorization": f"Bearer {make_token(self.id)}",
            "Content-Type": "application/json",
        }
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        self.random = random.Random(self.id)

    def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body)
        self.conn.request(method, path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        raw = response.read()
        self.statuses[response.status] += 1
        self.done += 1
        return response.status, (json.loads(raw) if raw else None)

    def expect(self, condition: bool, what: str) -> None:
        if not condition and len(self.problems) < 20:
            self.problems.append(what)

    def own_task(self, task: Any, task_id: int | None = None) -> None:
        self.expect(isinstance(task, dict) and task.get("user_id") == self.id, f"foreign {task}")
        if task_id is not None:
            self.expect(task.get("id") == task_id, f"asked for {task_id}, got {task}")

    def step(self) -> None:
        if not self.live:
            operation = "create"
        elif len(self.live) >= MAX_LIVE_TASKS:
            operation = "delete"
        else:
            operation = self.random.choice(
                ["create", "list", "get", "put", "patch", "toggle", "delete", "me"]
            )
        getattr(self, operation)()

    def create(self) -> None:
        status, task = self.request("POST", "/api/tasks", {"title": f"soak {self.done}"})
        self.expect(status == 201, f"create {status}")
        self.own_task(task)
        if status == 201:
            self.live[task["id"]] = task

    def list(self) -> None:
        status, tasks = self.request("GET", "/api/tasks?limit=100")
        self.expect(status == 200, f"list {status}")
        for task in tasks:
            self.own_task(task)
        self.expect({t["id"] for t in tasks} == set(self.live), "list differs from own tasks")

    def get(self) -> None:
        task_id = self.random.choice(list(self.live))
        status, task = self.request("GET", f"/api/tasks/{task_id}")
        self.expect(status == 200, f"get {status}")
        self.own_task(task, task_id)
        self.expect(task.get("title") == self.live[task_id]["title"], "get: stale title")

    def put(self) -> None:
        task_id = self.random.choice(list(self.live))
        title = f"put {self.done}"
        status, task = self.request("PUT", f"/api/tasks/{task_id}", {"title": title})
        self.expect(status == 200 and task.get("title") == title, f"put {status}")
        self.own_task(task, task_id)
        self.live[task_id] = task

    def patch(self) -> None:
        task_id = self.random.choice(list(self.live))
        description = f"patch {self.done}"
        status, task = self.request("PATCH", f"/api/tasks/{task_id}", {"description": description})
        self.expect(status == 200 and task.get("description") == description, f"patch {status}")
        self.own_task(task, task_id)
        self.live[task_id] = task

    def toggle(self) -> None:
        task_id = self.random.choice(list(self.live))
        before = self.live[task_id]["completed"]
        status, task = self.request("PATCH", f"/api/tasks/{task_id}/complete")
        self.expect(status == 200 and task.get("completed") is (not before), f"toggle {status}")
        self.own_task(task, task_id)
        self.live[task_id] = task

    def delete(self) -> None:
        task_id = self.random.choice(list(self.live))
        status, _ = self.request("DELETE", f"/api/tasks/{task_id}")
        self.expect(status == 204, f"delete {status}")
        del self.live[task_id]

    def me(self) -> None:
        status, body = self.request("GET", "/api/users/me")
        self.expect(status == 200 and body.get("id") == self.id, f"me {status}")
        self.expect(body["tasks"]["total"] == len(self.live), "me: wrong task count")


def _run(users: list[User], steps_per_user: int) -> float:
    """Every user takes `steps_per_user` steps, in parallel; the seconds it took."""
    deadline = time.monotonic() + HARD_DEADLINE_SECONDS

    def drive(user: User) -> None:
        target = user.done + steps_per_user
        try:
            while user.done < target and time.monotonic() < deadline:
                user.step()
        except (OSError, http.client.HTTPException) as exc:
            user.problems.append(f"transport: {type(exc).__name__}: {exc}")

    started = time.monotonic()
    threads = [threading.Thread(target=drive, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HARD_DEADLINE_SECONDS + 5)
    return time.monotonic() - started


def test_a_soak_through_pgbouncer_has_no_5xx_no_foreign_rows_and_flat_worker_memory(
    server_through_pgbouncer: Server,
) -> None:
    server = server_through_pgbouncer
    port = int(server.base_url.rsplit(":", 1)[1])
    workers = _workers(server)
    assert len(workers) == 2
    users = [User(port) for _ in range(USERS)]

    _run(users, WARM_UP_PER_USER)
    warm = {worker.pid: worker.memory_info().rss for worker in workers}
    elapsed = _run(users, MEASURED_PER_USER)
    end = {worker.pid: worker.memory_info().rss for worker in workers}
    for user in users:
        user.conn.close()

    statuses = sum((user.statuses for user in users), Counter[int]())
    problems = [problem for user in users for problem in user.problems]
    measured = sum(user.done for user in users) - USERS * WARM_UP_PER_USER
    print(f"soak: {measured} requests in {elapsed:.1f} s, statuses {dict(statuses)}")
    print(f"soak: worker RSS after warm-up {warm}, at the end {end}")
    assert measured >= USERS * MEASURED_PER_USER, f"only {measured} requests in {elapsed:.0f} s"
    assert not [status for status in statuses if status >= 500], statuses
    assert problems == []
    # Every kind of request really ran, for every user.
    assert set(statuses) == {200, 201, 204}
    for pid, rss in end.items():
        assert abs(rss - warm[pid]) <= RSS_TOLERANCE * warm[pid], (pid, warm[pid], rss)
    assert server.process.poll() is None
