"""GET /metrics: Prometheus metrics when METRICS_ENABLED is on, a plain 404 when it is off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.support.tokens import Caller, make_token
from todo_api.config import Settings
from todo_api.main import create_app
from todo_api.metrics import UNMATCHED_ROUTE as UNMATCHED

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by its name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series never observed (Prometheus shows none)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    return value(
        samples, "todo_api_http_requests_total", method=method, route=route, status=str(status)
    )


def _scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


@asynccontextmanager
async def asgi_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app (lifespan running) with these settings, in this event loop."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
def metrics_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_enabled": True})


@pytest.fixture
def metrics_client(metrics_settings: Settings) -> Iterator[TestClient]:
    """A fresh app with metrics on: its counts start at zero."""
    with TestClient(create_app(metrics_settings), raise_server_exceptions=False) as client:
        yield client


def test_metrics_are_off_by_default_and_then_metrics_is_an_unknown_path(
    client: TestClient,
) -> None:
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_a_scrape_counts_known_traffic_exactly_without_user_values_in_labels(
    metrics_client: TestClient, new_caller: Callable[[], Caller]
) -> None:
    client = metrics_client
    alice, bob = new_caller(), new_caller()
    created = [
        client.post("/api/tasks", json={"title": f"secret title {n}"}, headers=alice.headers)
        for n in range(2)
    ]
    assert [r.status_code for r in created] == [201, 201]
    task_id = created[0].json()["id"]
    for _ in range(3):
        assert client.get(f"/api/tasks/{task_id}", headers=alice.headers).status_code == 200
    assert client.get(f"/api/tasks/{task_id}", headers=bob.headers).status_code == 404
    hackathon = client.get(f"/api/{alice.id}/tasks/{task_id}", headers=alice.headers)
    assert hackathon.status_code == 200
    assert client.head(f"/api/tasks/{task_id}", headers=alice.headers).status_code == 200
    assert client.get("/api/tasks?q=needle-in-the-query&limit=7").status_code == 401  # no token
    assert client.get("/api/tasks", headers={"Authorization": "Basic abc"}).status_code == 401
    expired = make_token(alice.id, ttl_seconds=-120)
    assert (
        client.get("/api/tasks", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    )
    forged = make_token(alice.id)[:-4] + "AAAA"
    assert (
        client.get("/api/tasks", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    )
    for _ in range(2):
        assert client.get(f"/no/such/{alice.id}?token={alice.token}").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    assert client.delete("/api/users/me/token", headers=bob.headers).status_code == 204
    assert client.get("/api/tasks", headers=bob.headers).status_code == 401  # revoked

    response = client.get("/metrics")
    samples = parse(response.text)

    assert requests(samples, "POST", "/api/tasks", 201) == 2
    assert requests(samples, "GET", "/api/tasks/{task_id}", 200) == 3
    assert requests(samples, "GET", "/api/tasks/{task_id}", 404) == 1
    assert requests(samples, "GET", "/api/{user_id}/tasks/{task_id}", 200) == 1
    assert requests(samples, "HEAD", "/api/tasks/{task_id}", 200) == 1
    assert requests(samples, "GET", "/api/tasks", 401) == 5
    assert requests(samples, "GET", "unmatched", 404) == 2
    assert requests(samples, "DELETE", "/api/users/me/token", 204) == 1
    assert requests(samples, "GET", "/openapi.json", 200) == 1
    latency = "todo_api_http_request_duration_seconds"
    get_one = {"method": "GET", "route": "/api/tasks/{task_id}"}
    assert value(samples, f"{latency}_count", **get_one) == 4
    assert value(samples, f"{latency}_bucket", **get_one, le="+Inf") == 4
    assert 0 < value(samples, f"{latency}_sum", **get_one) < 4 * 5.0
    failures = "todo_api_authentication_failures_total"
    assert value(samples, failures, reason="no_header") == 1
    assert value(samples, failures, reason="wrong_scheme") == 1
    assert value(samples, failures, reason="expired") == 1
    assert value(samples, failures, reason="bad_signature") == 1
    assert value(samples, failures, reason="token_revoked") == 1
    # The database refused the revoked token: SQLSTATE 28000, class 28.
    assert value(samples, "todo_api_db_errors_total", sqlstate_class="28") == 1
    assert value(samples, "todo_api_db_pool_max_connections") == 8
    assert 1 <= value(samples, "todo_api_db_pool_connections") <= 8
    assert value(samples, "todo_api_db_pool_waiting_requests") == 0
    assert value(samples, "todo_api_db_connection_errors_total") == 0

    labels = {label for _, labelset in samples for label in labelset}
    label_text = " ".join(value for _, value in labels)
    for private in (alice.id, bob.id, alice.token, expired, "secret title", "needle", "/no/such"):
        assert private not in label_text
    assert str(task_id) not in {value for _, value in labels}
    # The scrape itself is counted by the next one.
    assert requests(parse(client.get("/metrics").text), "GET", "/metrics", 200) == 1


@pytest.fixture(scope="module")
def shared_metrics_client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"metrics_enabled": True}))
    with TestClient(app, raise_server_exceptions=False) as client:
        ALLOWED_ROUTES.update(client.get("/openapi.json").json()["paths"])
        yield client


# Every value `route` may take: the documented templates (added by the fixture) and these.
ALLOWED_ROUTES = {
    UNMATCHED,
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/static-offline-docs/{path}",
}
PREFLIGHT = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"}
# Path segments a client may send: ids, names, percent-escapes, dots, anything printable.
SEGMENTS = st.text(
    alphabet=st.characters(
        codec="ascii", categories=["L", "N", "P", "S"], exclude_characters="/?#"
    ),
    min_size=1,
    max_size=24,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(segment=SEGMENTS, query=SEGMENTS, with_token=st.booleans())
def test_route_labels_are_templates_whatever_the_path(
    shared_metrics_client: TestClient, alice: Caller, segment: str, query: str, with_token: bool
) -> None:
    client = shared_metrics_client
    headers = alice.headers if with_token else {}
    for path in (
        f"/api/tasks/{segment}",
        f"/api/{segment}/tasks",
        f"/{segment}",
        f"/api/{segment}",
    ):
        client.get(path, params={"q": query, "cursor": query}, headers=headers)
        client.options(path, headers=PREFLIGHT)
    routes = {
        dict(labels).get("route")
        for _, labels in parse(client.get("/metrics").text)
        if dict(labels).get("route") is not None
    }
    assert routes <= ALLOWED_ROUTES, routes - ALLOWED_ROUTES


@pytest.mark.anyio
async def test_requests_waiting_for_the_pool_and_timeouts_by_sqlstate_class(
    metrics_settings: Settings, alice: Caller, superuser_database_url: str
) -> None:
    # One connection; statements give up after a second.
    tight = metrics_settings.model_copy(
        update={"db_pool_min_size": 1, "db_pool_max_size": 1, "db_statement_timeout_ms": 1000}
    )
    async with asgi_client(tight) as client:

        async def scrape() -> Samples:
            return parse((await client.get("/metrics")).text)

        assert (await client.get("/api/tasks", headers=alice.headers)).status_code == 200
        with psycopg.connect(superuser_database_url) as locker:
            locker.execute("lock table tasks in access exclusive mode")
            both = [
                asyncio.create_task(client.get("/api/tasks", headers=alice.headers))
                for _ in range(2)
            ]
            # One request holds the connection (blocked on the lock), the other waits.
            deadline = time.monotonic() + 0.8
            waiting = 0.0
            while waiting < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                waiting = value(await scrape(), "todo_api_db_pool_waiting_requests")
            assert waiting == 1
            statuses = sorted(r.status_code for r in await asyncio.gather(*both))
            locker.rollback()
        samples = await scrape()
    assert statuses == [503, 503]  # both cancelled by the statement timeout, SQLSTATE 57014
    assert value(samples, "todo_api_db_errors_total", sqlstate_class="57") == 2
    assert requests(samples, "GET", "/api/tasks", 503) == 2
    assert value(samples, "todo_api_db_pool_waiting_requests") == 0
    assert value(samples, "todo_api_db_pool_max_connections") == 1


@pytest.mark.anyio
async def test_connection_errors_are_counted_while_the_database_cannot_be_reached(
    metrics_settings: Settings, alice: Caller
) -> None:
    unreachable = metrics_settings.model_copy(
        update={
            "database_url": SecretStr("postgresql://nobody@127.0.0.1:9/nothing"),
            "db_pool_min_size": 1,
            "db_pool_timeout_seconds": 0.5,
            "db_connect_timeout_seconds": 1,
        }
    )
    async with asgi_client(unreachable) as client:
        response = await client.get("/api/tasks", headers=alice.headers)
        samples = parse((await client.get("/metrics")).text)
    assert response.status_code == 503
    assert value(samples, "todo_api_db_connection_errors_total") >= 1
    assert value(samples, "todo_api_db_pool_connections") == 0
    assert requests(samples, "GET", "/api/tasks", 503) == 1
