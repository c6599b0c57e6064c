"""Chaos: the durability contract holds while backends are killed and the cluster crashes.

README "Durability and retries": a 2xx means committed, a 4xx means nothing changed, a 503 means
in doubt (all or nothing), and there is no other 5xx. Here users work in parallel against a real
`todo-api serve` while a background thread terminates the app's database backends at random and
the cluster is crashed once (immediate stop, then crash recovery) with fsync and synchronous
commit on. Each user works on their own tasks, one request at a time, so every answer tells what
the database must hold afterwards: the table, read as a superuser, is then held against them.
Creates carry an Idempotency-Key and are resent with it until they get a definitive answer, so
each logical create must have made exactly one task.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.cli import Server, start_serve
from tests.support.crashable_cluster import DurableEmbeddedCluster
from tests.support.databases import create_scratch_database, url_for_database
from tests.support.tokens import make_token, new_user_id
from todo_api import migrations

pytestmark = pytest.mark.slow

USERS = 6
RUN_SECONDS = 20.0
CRASH_AFTER_SECONDS = 6.0
# Seconds into the run (clear of the crash) when commits are made to lose their answer.
LOST_COMMIT_WINDOWS = [(1.5, 3.0), (9.0, 10.5), (13.0, 14.5)]
RECOVERY_DEADLINE_SECONDS = 15.0
# A create is resent (same key, same body) until it is answered definitively, this long at most.
CREATE_RETRY_SECONDS = 20.0
# Longer than any request can last on the server (statement and pool timeouts below): a request
# the client gave up on could still commit later and break the order of one user's requests.
CLIENT_TIMEOUT_SECONDS = 30.0
MAX_LIVE_TASKS = 6


@dataclass
class LogicalTask:
    """One create the user asked for, and every state the answers allow the database to hold."""

    tag: str  # the description, which no later request changes: finds the row(s) of this create
    key: str
    titles: set[str]
    completed: set[bool] = field(default_factory=lambda: {False})
    id: int | None = None  # known once the create is acknowledged
    refused: bool = False  # a 4xx: nothing may exist
    deleted: str = "no"  # "no", "yes" (204) or "maybe" (in doubt)


@dataclass
class ChaosUser:
    base_url: str
    id: str = field(default_factory=new_user_id)
    tasks: list[LogicalTask] = field(default_factory=list)
    answers: list[tuple[str, int | str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {make_token(self.id)}"},
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
        self.random = random.Random(self.id)
        self.writes = 0

    def problem(self, text: str) -> None:
        self.problems.append(f"user {self.id[:8]}: {text}")

    def send(self, op: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """The answer, or None when in doubt (a 503 or a dropped connection)."""
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            self.answers.append((op, "timeout"))
            self.problem(f"{op}: no answer in {CLIENT_TIMEOUT_SECONDS} s")
            return None
        except httpx.TransportError as exc:
            self.answers.append((op, type(exc).__name__))
            return None
        self.answers.append((op, response.status_code))
        if response.status_code == 503:
            if response.json().get("code") != "service_unavailable":
                self.problem(f"{op}: a 503 that is not service_unavailable: {response.text}")
            return None
        if response.status_code >= 500:
            self.problem(f"{op}: {response.status_code} {response.text}")
            return None
        return response

    def own(self, op: str, body: Any, task: LogicalTask) -> bool:
        if body.get("user_id") != self.id or body.get("description") != task.tag:
            self.problem(f"{op}: answered another task: {body}")
            return False
        return True

    # --- the four operations -----------------------------------------------------------------

    def create(self, give_up_at: float) -> None:
        number = len(self.tasks)
        task = LogicalTask(
            tag=f"chaos {self.id} #{number}", key=f'"{uuid.uuid4()}"', titles={f"t{number}"}
        )
        self.tasks.append(task)
        body = {"title": f"t{number}", "description": task.tag}
        while time.monotonic() < give_up_at:
            headers = {"Idempotency-Key": task.key}
            response = self.send("create", "POST", "/api/tasks", json=body, headers=headers)
            if response is None or response.status_code == 409:  # in doubt, or still running
                time.sleep(0.1)
                continue
            if response.status_code == 201 and self.own("create", response.json(), task):
                task.id = response.json()["id"]
            else:
                task.refused = True
                self.problem(f"create: {response.status_code} {response.text}")
            return
        # Never answered definitively: the create happened once or not at all.

    def retitle(self, task: LogicalTask) -> None:
        self.writes += 1
        title = f"{next(iter(task.titles)).split('.')[0]}.{self.writes}"
        response = self.send("retitle", "PUT", f"/api/tasks/{task.id}", json={"title": title})
        if response is None:
            task.titles.add(title)
        elif response.status_code != 200:
            self.problem(f"retitle: {response.status_code} {response.text}")
        elif self.own("retitle", body := response.json(), task):
            if body["title"] != title or body["completed"] not in task.completed:
                self.problem(f"retitle: answered {body}, expected {title}, {task.completed}")
            task.titles, task.completed = {body["title"]}, {body["completed"]}

    def toggle(self, task: LogicalTask) -> None:
        flipped = {not value for value in task.completed}
        response = self.send("toggle", "PATCH", f"/api/tasks/{task.id}/complete")
        if response is None:
            task.completed |= flipped
        elif response.status_code != 200:
            self.problem(f"toggle: {response.status_code} {response.text}")
        elif self.own("toggle", body := response.json(), task):
            if body["completed"] not in flipped or body["title"] not in task.titles:
                self.problem(f"toggle: answered {body}, expected {flipped}, {task.titles}")
            task.titles, task.completed = {body["title"]}, {body["completed"]}

    def delete(self, task: LogicalTask) -> None:
        response = self.send("delete", "DELETE", f"/api/tasks/{task.id}")
        if response is None:
            task.deleted = "maybe"
        elif response.status_code == 204:
            task.deleted = "yes"
        else:
            self.problem(f"delete: {response.status_code} {response.text}")

    def run(self, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            live = [t for t in self.tasks if t.id is not None and t.deleted == "no"]
            if len(live) < 2:
                self.create(give_up_at=max(stop_at, time.monotonic()) + CREATE_RETRY_SECONDS)
                continue
            if len(live) >= MAX_LIVE_TASKS:
                self.delete(self.random.choice(live))
                continue
            operation = self.random.choices(
                ["create", "retitle", "toggle", "delete"], weights=[2, 3, 3, 2]
            )[0]
            if operation == "create":
                self.create(give_up_at=time.monotonic() + CREATE_RETRY_SECONDS)
            else:
                getattr(self, operation)(self.random.choice(live))
            time.sleep(0.005)  # leave the shared machine some room

    # --- the check against the table ---------------------------------------------------------

    def check(self, rows: list[tuple[int, str, str, bool]]) -> None:
        by_tag: dict[str, list[tuple[int, str, bool]]] = {}
        for task_id, title, tag, completed in rows:
            by_tag.setdefault(tag, []).append((task_id, title, completed))
        for task in self.tasks:
            found = by_tag.pop(task.tag, [])
            if len(found) > 1:
                self.problem(f"{task.tag}: one create made {len(found)} tasks")
                continue
            if task.refused or task.deleted == "yes":
                if found:
                    self.problem(f"{task.tag}: refused or deleted, yet present: {found}")
                continue
            if not found:
                if task.id is not None and task.deleted == "no":
                    self.problem(f"{task.tag}: acknowledged create {task.id} is missing")
                continue
            task_id, title, completed = found[0]
            if task.id is not None and task_id != task.id:
                self.problem(f"{task.tag}: id {task_id}, the create answered {task.id}")
            if title not in task.titles or completed not in task.completed:
                self.problem(
                    f"{task.tag}: holds ({title!r}, {completed}), the answers allow"
                    f" {task.titles} and {task.completed}"
                )
        for tag, found in by_tag.items():
            self.problem(f"a task nobody created: {tag} {found}")


class Chaos(threading.Thread):
    """Terminates the app's database backends at random intervals, until halted.

    Most terminations hit an idle pooled connection or a transaction that has not committed:
    the request's answer is a 503 and nothing happened. The dangerous case, a commit whose answer
    is lost, is rare by chance, so windows make it common: a synchronous standby is required
    that does not exist (`synchronous_standby_names`), every commit is then flushed locally and
    waits for it, and those waiting backends are terminated. Their transactions stay committed
    while the client gets a 503: in doubt, and in fact done.
    """

    def __init__(self, admin_url: str, windows: list[tuple[float, float]]) -> None:
        super().__init__(name="chaos", daemon=True)
        self.admin_url = admin_url
        self.windows = windows
        self.halt = threading.Event()
        self.terminated = 0
        self.committed_then_terminated = 0
        self.random = random.Random(12)
        self.started = time.monotonic()

    def _in_window(self) -> bool:
        elapsed = time.monotonic() - self.started
        return any(start <= elapsed < end for start, end in self.windows)

    def run(self) -> None:
        holding = False
        try:
            while not self.halt.wait(self.random.uniform(0.05, 0.3)):
                try:
                    with psycopg.connect(
                        self.admin_url, autocommit=True, connect_timeout=2
                    ) as conn:
                        if self._in_window() != holding:
                            holding = not holding
                            _require_phantom_standby(conn, holding)
                        self._terminate(conn)
                except psycopg.Error:  # the cluster is down (crashed) for a moment
                    continue
        finally:
            if holding:
                with psycopg.connect(self.admin_url, autocommit=True) as conn:
                    _require_phantom_standby(conn, False)

    def _terminate(self, conn: psycopg.Connection[Any]) -> None:
        app = "application_name = 'todo-api' and backend_type = 'client backend'"
        waiting = conn.execute(
            f"select count(pg_terminate_backend(pid)) from pg_stat_activity where {app}"
            " and wait_event = 'SyncRep'"
        ).fetchone()
        self.committed_then_terminated += waiting[0] if waiting else 0
        row = conn.execute(
            f"select pg_terminate_backend(pid) from pg_stat_activity where {app}"
            " order by random() limit 1"
        ).fetchone()
        self.terminated += bool(row and row[0])


def _require_phantom_standby(conn: psycopg.Connection[Any], on: bool) -> None:
    """Make every commit wait for a standby that never answers (or stop doing so)."""
    conn.execute(f"alter system set synchronous_standby_names = '{'phantom' if on else ''}'")
    conn.execute("select pg_reload_conf()")


@dataclass
class ChaosRig:
    cluster: DurableEmbeddedCluster
    admin_url: str  # superuser, the app's database
    server: Server


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ChaosRig]:
    # Not under tmp_path: pgserver opens the data directory's parents to its system user and
    # puts their modes back when it stops, and /tmp/pytest-of-<user> is shared with every other
    # pytest run on the machine, whose clusters would close it under ours (and ours under theirs).
    with tempfile.TemporaryDirectory(prefix="todo-api-chaos-") as private:
        yield from _rig(Path(private) / "data", tmp_path)


def _rig(data_dir: Path, cwd: Path) -> Iterator[ChaosRig]:
    cluster = DurableEmbeddedCluster(data_dir)
    cluster_url = cluster.start()
    try:
        url = create_scratch_database(cluster_url, prefix="todo_chaos")
        migrations.apply(url)
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        server = start_serve(
            cwd,
            url,
            DB_POOL_MIN_SIZE="2",
            DB_POOL_MAX_SIZE="8",
            DB_POOL_TIMEOUT_SECONDS="2",
            DB_CONNECT_TIMEOUT_SECONDS="2",
            DB_STATEMENT_TIMEOUT_MS="5000",
        )
        try:
            yield ChaosRig(cluster, url_for_database(cluster_url, str(name)), server)
        finally:
            server.stop()
    finally:
        cluster.stop()


def _serves_again_within(server: Server, deadline: float) -> float:
    """Seconds until the server answers an authenticated data request with 200 again."""
    token = make_token(new_user_id())
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        try:
            if server.get("/api/users/me", token).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server did not serve again within {deadline} s of the recovery")


def test_every_answer_matches_the_table_after_killed_backends_and_a_crash(rig: ChaosRig) -> None:
    server_pid = rig.server.process.pid
    users = [ChaosUser(rig.server.base_url) for _ in range(USERS)]
    chaos = Chaos(rig.admin_url, LOST_COMMIT_WINDOWS)
    stop_at = time.monotonic() + RUN_SECONDS
    threads = [threading.Thread(target=user.run, args=(stop_at,)) for user in users]
    for thread in [*threads, chaos]:
        thread.start()
    try:
        time.sleep(CRASH_AFTER_SECONDS)
        rig.cluster.crash()
        time.sleep(0.5)  # requests meet a database that is gone
        rig.cluster.start()  # crash recovery from the WAL
        recovered_in = _serves_again_within(rig.server, RECOVERY_DEADLINE_SECONDS)
    finally:
        for thread in threads:
            thread.join(RUN_SECONDS + CREATE_RETRY_SECONDS + CLIENT_TIMEOUT_SECONDS)
        chaos.halt.set()
        chaos.join(10)
    assert not any(thread.is_alive() for thread in threads), "a user did not stop"

    with psycopg.connect(rig.admin_url) as conn:
        for user in users:
            rows = conn.execute(
                "select id, title, description, completed from tasks where user_id = %s",
                (user.id,),
            ).fetchall()
            user.check(rows)

    answers = [answer for user in users for answer in user.answers]
    tally: dict[str, dict[int | str, int]] = {}
    for op, status in answers:
        tally.setdefault(op, {}).setdefault(status, 0)
        tally[op][status] += 1
    print(
        f"chaos: {len(answers)} answers {tally}; {chaos.terminated} backends terminated"
        f" at random, {chaos.committed_then_terminated} after their commit"
    )
    print(f"chaos: served again {recovered_in:.1f} s after crash recovery")

    assert [problem for user in users for problem in user.problems] == []
    assert rig.server.process.poll() is None
    assert rig.server.process.pid == server_pid
    assert '"event": "internal_error"' not in rig.server.stdout
    # The chaos really happened, and every kind of request got through it.
    assert chaos.terminated >= 10
    assert chaos.committed_then_terminated >= 5
    assert any(status == 503 for _, status in answers)
    for op in ("create", "retitle", "toggle", "delete"):
        assert tally[op].get(201 if op == "create" else 204 if op == "delete" else 200, 0) >= 10
