"""Many users at once through the real app and a small pool: nobody ever sees another's data."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tests.support.tokens import make_token, new_user_id
from todo_api.config import Settings
from todo_api.main import create_app

USERS = 24
REQUESTS = 500
POOL_SIZE = 4  # far below the concurrency, so connections are reused between users constantly


@pytest.fixture(params=["direct", pytest.param("pgbouncer", marks=pytest.mark.pgbouncer)])
async def small_pool_app(request: pytest.FixtureRequest) -> AsyncIterator[FastAPI]:
    """The app with a small pool, straight to Postgres and through PgBouncer (transaction mode)."""
    settings: Settings = request.getfixturevalue(
        "pgbouncer_settings" if request.param == "pgbouncer" else "settings"
    )
    application = create_app(
        settings.model_copy(
            update={"db_pool_min_size": POOL_SIZE, "db_pool_max_size": POOL_SIZE,
                    "db_pool_timeout_seconds": 30}
        )
    )  # fmt: skip
    async with application.router.lifespan_context(application):
        yield application


@pytest.mark.anyio
async def test_concurrent_mixed_requests_never_cross_users(small_pool_app: FastAPI) -> None:
    users = [new_user_id() for _ in range(USERS)]
    headers = {u: {"Authorization": f"Bearer {make_token(u)}"} for u in users}
    rng = random.Random(4)
    transport = ASGITransport(app=small_pool_app)
    failures: list[str] = []
    own_ids: dict[str, set[int]] = {u: set() for u in users}
    all_ids: dict[int, str] = {}

    async with AsyncClient(transport=transport, base_url="http://test") as http:
        # Every user starts with a task, so every id has a known owner.
        for user in users:
            response = await http.post(
                "/api/tasks", json={"title": f"seed {user}"}, headers=headers[user]
            )
            task_id = response.json()["id"]
            own_ids[user].add(task_id)
            all_ids[task_id] = user

        def check_tasks(user: str, tasks: list[dict[str, Any]], context: str) -> None:
            for task in tasks:
                if task["user_id"] != user or all_ids.get(task["id"], user) != user:
                    failures.append(f"{context}: {user} saw {task}")

        async def one_request(i: int) -> None:
            user = rng.choice(users)
            other = rng.choice([u for u in users if u != user])
            kind = i % 7
            h = headers[user]
            if kind == 0:
                r = await http.post("/api/tasks", json={"title": f"t{i} {user}"}, headers=h)
                if r.status_code == 201:
                    all_ids[r.json()["id"]] = user
                    own_ids[user].add(r.json()["id"])
                    check_tasks(user, [r.json()], "create")
            elif kind in (1, 2):
                r = await http.get("/api/tasks?limit=100", headers=h)
                if r.status_code == 200:
                    check_tasks(user, r.json(), "list")
            elif kind == 3:
                r = await http.get(f"/api/tasks/{min(own_ids[user])}", headers=h)
                if r.status_code == 200:
                    check_tasks(user, [r.json()], "get")
            elif kind == 4:
                r = await http.patch(f"/api/tasks/{min(own_ids[user])}/complete", headers=h)
                if r.status_code == 200:
                    check_tasks(user, [r.json()], "toggle")
            elif kind == 5:
                # Reaching for another user's task: must be a 404, never their data.
                r = await http.get(f"/api/tasks/{min(own_ids[other])}", headers=h)
                if r.status_code != 404:
                    failures.append(f"cross read answered {r.status_code}: {r.text}")
            else:
                r = await http.get("/api/users/me", headers=h)
                if r.status_code == 200 and r.json()["id"] != user:
                    failures.append(f"me: {user} got {r.text}")
            if r.status_code >= 500:
                failures.append(f"{r.request.method} {r.request.url.path}: {r.status_code}")
            for value in users:
                if value != user and value in r.text:
                    failures.append(f"{user} got a response naming {value}")

        await asyncio.gather(*(one_request(i) for i in range(REQUESTS)))

        for user in users:
            tasks = (await http.get("/api/tasks?limit=100", headers=headers[user])).json()
            check_tasks(user, tasks, "final list")
            assert {t["id"] for t in tasks} == own_ids[user]

    assert failures == []
