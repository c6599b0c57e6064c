"""One database round trip per request (#6), counted on the wire.

The real app talks to PostgreSQL through a TCP proxy (bench/proxy.py) that counts round trips: a
burst of client bytes after a server reply. Every data route must cost exactly one:
`todo_begin_request` (role, user, revocation check) and the statement travel together, and the
Sync that ends the pipeline commits them as one transaction.
Each route is called past psycopg's prepare threshold, so both the first (unprepared) executions
and the prepared ones are counted, with prepared statements on and off (the PgBouncer setting).

A failing statement (a revoked token, a constraint the database enforces) still maps to its error,
and the pool's connection is fit for the next request, which again costs one round trip.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from bench.proxy import CountingProxy, Upstream, url_through
from tests.support.databases import create_scratch_database
from tests.support.postgres import PostgresServer
from tests.support.tokens import TEST_SECRET, make_token, new_user_id
from todo_api import migrations
from todo_api.config import Settings
from todo_api.main import create_app

pytestmark = pytest.mark.anyio

# psycopg prepares a statement on its 5th execution (prepare_threshold=5); 7 calls cover before,
# the preparing one, and after.
CALLS_PER_ROUTE = 7
REFUSED_TITLE = "Refused by the database"


@pytest.fixture(scope="module")
def scratch_url(postgres_server: PostgresServer) -> str:
    """A database of this module's own, so it may add a constraint the API does not know."""
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_round_trips")
    migrations.apply(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "alter table tasks add constraint round_trip_test_refused_title"
            f" check (title <> '{REFUSED_TITLE}') not valid"
        )
    return url


@dataclass
class Wire:
    """The app behind a counting proxy, with a one-connection pool."""

    client: httpx.AsyncClient
    proxy: CountingProxy
    pool: AsyncConnectionPool[Any]

    async def settle(self) -> None:
        """Wait until the pool's one connection is idle in the pool (replaced, if it was closed)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.pool.get_stats().get("pool_available", 0) >= 1:
                return
            await anyio.sleep(0.01)
        raise AssertionError("the pool did not get its connection back")

    async def counted(
        self, method: str, url: str, token: str, **kwargs: Any
    ) -> tuple[httpx.Response, int]:
        """The response and the round trips it cost."""
        await self.settle()
        before = self.proxy.round_trips
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        response = await self.client.request(method, url, headers=headers, **kwargs)
        return response, self.proxy.round_trips - before


@pytest.fixture(params=[True, False], ids=["prepared", "unprepared"])
async def wire(request: pytest.FixtureRequest, scratch_url: str) -> AsyncIterator[Wire]:
    proxy = CountingProxy(Upstream.from_url(scratch_url))
    port = await proxy.start()
    settings = Settings(
        database_url=SecretStr(url_through(scratch_url, port)),
        better_auth_secret=SecretStr(TEST_SECRET),
        db_pool_min_size=1,
        db_pool_max_size=1,
        db_prepared_statements=request.param,
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            pool = app.state.database.pool
            await pool.wait(timeout=10)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield Wire(client, proxy, pool)
    finally:
        await proxy.close()


async def _create(wire: Wire, token: str, title: str = "Probe") -> int:
    response, _ = await wire.counted("POST", "/api/tasks", token, json={"title": title})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


Call = Callable[[Wire, str, int], Awaitable[tuple[httpx.Response, int]]]

ROUTES: dict[str, tuple[Call, int]] = {
    "create": (lambda w, t, i: w.counted("POST", "/api/tasks", t, json={"title": "New"}), 201),
    "get": (lambda w, t, i: w.counted("GET", f"/api/tasks/{i}", t), 200),
    "list": (lambda w, t, i: w.counted("GET", "/api/tasks?limit=50", t), 200),
    "put": (lambda w, t, i: w.counted("PUT", f"/api/tasks/{i}", t, json={"title": "Put"}), 200),
    "patch": (
        lambda w, t, i: w.counted("PATCH", f"/api/tasks/{i}", t, json={"completed": True}),
        200,
    ),
    "toggle": (lambda w, t, i: w.counted("PATCH", f"/api/tasks/{i}/complete", t), 200),
    "users_me": (lambda w, t, i: w.counted("GET", "/api/users/me", t), 200),
    # A new key each call, then (below) replays of one key: both one round trip.
    "create_with_key": (
        lambda w, t, i: w.counted(
            "POST", "/api/tasks", t, json={"title": "Keyed"}, headers={"Idempotency-Key": _key()}
        ),
        201,
    ),
    "create_replayed": (
        lambda w, t, i: w.counted(
            "POST", "/api/tasks", t, json={"title": "Once"}, headers={"Idempotency-Key": "once"}
        ),
        201,
    ),
    "patch_if_match": (
        lambda w, t, i: w.counted(
            "PATCH", f"/api/tasks/{i}", t, json={"title": "If"}, headers={"If-Match": "*"}
        ),
        200,
    ),
    "patch_stale": (
        lambda w, t, i: w.counted(
            "PATCH", f"/api/tasks/{i}", t, json={"title": "If"}, headers={"If-Match": '"0.0"'}
        ),
        412,
    ),
    "toggle_if_match": (
        lambda w, t, i: w.counted(
            "PATCH", f"/api/tasks/{i}/complete", t, headers={"If-Match": "*"}
        ),
        200,
    ),
    "get_not_modified": (
        lambda w, t, i: w.counted("GET", f"/api/tasks/{i}", t, headers={"If-None-Match": "*"}),
        304,
    ),
}


def _key() -> str:
    return new_user_id()


@pytest.mark.parametrize("route", list(ROUTES))
async def test_route_costs_one_round_trip(wire: Wire, route: str) -> None:
    call, status = ROUTES[route]
    token = make_token(new_user_id())
    task_id = await _create(wire, token)

    counts = []
    for _ in range(CALLS_PER_ROUTE):
        response, round_trips = await call(wire, token, task_id)
        assert response.status_code == status, response.text
        counts.append(round_trips)

    assert counts == [1] * CALLS_PER_ROUTE


async def test_delete_costs_one_round_trip(wire: Wire) -> None:
    token = make_token(new_user_id())
    ids = [await _create(wire, token) for _ in range(CALLS_PER_ROUTE)]

    counts = []
    for task_id in ids:
        response, round_trips = await wire.counted("DELETE", f"/api/tasks/{task_id}", token)
        assert response.status_code == 204, response.text
        counts.append(round_trips)

    assert counts == [1] * CALLS_PER_ROUTE
    response, _ = await wire.counted("GET", f"/api/tasks/{ids[0]}", token)
    assert response.status_code == 404


async def test_conditional_delete_costs_one_round_trip(wire: Wire) -> None:
    token = make_token(new_user_id())
    task_id = await _create(wire, token)

    stale, stale_trips = await wire.counted(
        "DELETE", f"/api/tasks/{task_id}", token, headers={"If-Match": f'"{task_id}.9"'}
    )
    deleted, deleted_trips = await wire.counted(
        "DELETE", f"/api/tasks/{task_id}", token, headers={"If-Match": f'"{task_id}.1"'}
    )

    assert (stale.status_code, stale_trips) == (412, 1)
    assert (deleted.status_code, deleted_trips) == (204, 1)


async def test_missing_task_is_one_round_trip_and_not_found(wire: Wire) -> None:
    token = make_token(new_user_id())

    response, round_trips = await wire.counted("GET", "/api/tasks/999999999", token)

    assert (response.status_code, response.json()["code"], round_trips) == (404, "not_found", 1)


async def test_revoked_token_is_refused_and_the_connection_serves_the_next_request(
    wire: Wire,
) -> None:
    revoked = make_token(new_user_id())
    response, _ = await wire.counted("DELETE", "/api/users/me/token", revoked)
    assert response.status_code == 204, response.text

    response, _ = await wire.counted("GET", "/api/tasks", revoked)

    assert response.status_code == 401
    assert response.json()["code"] == "token_revoked"
    # The next requests (past the prepare threshold) run normally, one round trip each.
    other = make_token(new_user_id())
    follow_ups = [await wire.counted("GET", "/api/tasks", other) for _ in range(CALLS_PER_ROUTE)]
    assert [(r.status_code, trips) for r, trips in follow_ups] == [(200, 1)] * CALLS_PER_ROUTE


async def test_constraint_violation_rolls_back_maps_to_422_and_leaves_the_pool_clean(
    wire: Wire,
) -> None:
    token = make_token(new_user_id())

    response, _ = await wire.counted("POST", "/api/tasks", token, json={"title": REFUSED_TITLE})

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    follow_ups = [
        await wire.counted("POST", "/api/tasks", token, json={"title": f"Accepted {n}"})
        for n in range(CALLS_PER_ROUTE)
    ]
    assert [(r.status_code, trips) for r, trips in follow_ups] == [(201, 1)] * CALLS_PER_ROUTE
    listed, _ = await wire.counted("GET", "/api/tasks?limit=100", token)
    titles = {task["title"] for task in listed.json()}
    assert REFUSED_TITLE not in titles
    assert len(titles) == CALLS_PER_ROUTE
