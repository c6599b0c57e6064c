"""Server-Timing on every response: the total, the token check's and the database's share."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.tokens import Caller
from todo_api.config import Settings
from todo_api.main import create_app

ORIGIN = "http://localhost:3000"
_METRIC = re.compile(r"^(auth|db|total);dur=(\d+\.\d{3})$")


def timings(response: httpx.Response) -> dict[str, float]:
    """The Server-Timing metrics of a response, in milliseconds, in the order sent."""
    parts = [part.strip() for part in response.headers["server-timing"].split(",")]
    parsed = [_METRIC.match(part) for part in parts]
    assert all(parsed), response.headers["server-timing"]
    result = {match.group(1): float(match.group(2)) for match in parsed if match}
    assert list(result)[-1] == "total"
    assert sum(v for k, v in result.items() if k != "total") <= result["total"]
    return result


@pytest.fixture(scope="module")
def failing_client(settings: Settings) -> Iterator[TestClient]:
    app: FastAPI = create_app(settings)

    @app.get("/test-only/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_data_route_reports_auth_database_and_total(client: TestClient, alice: Caller) -> None:
    created = client.post("/api/tasks", json={"title": "timed"}, headers=alice.headers)
    assert list(timings(created)) == ["auth", "db", "total"]
    task = created.json()
    for response in (
        client.get(f"/api/tasks/{task['id']}", headers=alice.headers),
        client.get("/api/tasks", headers=alice.headers),
        client.head(f"/api/tasks/{task['id']}", headers=alice.headers),
        client.get(f"/api/{alice.id}/tasks", headers=alice.headers),
        client.get("/api/users/me", headers=alice.headers),
        client.delete(f"/api/tasks/{task['id']}", headers=alice.headers),
        client.get(f"/api/tasks/{task['id']}", headers=alice.headers),  # 404: asked the database
    ):
        assert list(timings(response)) == ["auth", "db", "total"], response.request.url


def test_a_304_carries_the_timing_of_the_read_that_decided_it(
    client: TestClient, alice: Caller
) -> None:
    created = client.post("/api/tasks", json={"title": "cached"}, headers=alice.headers)
    path = f"/api/tasks/{created.json()['id']}"
    response = client.get(path, headers={**alice.headers, "If-None-Match": created.headers["etag"]})
    assert response.status_code == 304
    assert list(timings(response)) == ["auth", "db", "total"]


def test_refused_requests_report_only_what_ran(client: TestClient, alice: Caller) -> None:
    refused = client.get("/api/tasks", headers={"Authorization": "Bearer not.a.token"})
    assert refused.status_code == 401
    assert list(timings(refused)) == ["auth", "total"]
    invalid = client.get("/api/tasks?limit=0", headers=alice.headers)
    assert invalid.status_code == 422
    assert list(timings(invalid)) == ["auth", "total"]
    for response in (client.get("/no/such/route"), client.get("/healthz"), client.get("/docs")):
        assert list(timings(response)) == ["total"], response.request.url
    too_large = client.post(
        "/api/tasks", content=b"x" * (70 * 1024), headers={**alice.headers, "Content-Type": "a/b"}
    )
    assert too_large.status_code == 413
    assert "total" in timings(too_large)


def test_an_unexpected_error_still_reports_its_total(failing_client: TestClient) -> None:
    response = failing_client.get("/test-only/boom")
    assert response.status_code == 500
    assert list(timings(response)) == ["total"]


def test_browsers_may_read_it_on_simple_requests_and_preflights_carry_it(
    client: TestClient, alice: Caller
) -> None:
    response = client.get("/api/tasks", headers={**alice.headers, "Origin": ORIGIN})
    exposed = {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}
    assert "Server-Timing" in exposed
    preflight = client.options(
        "/api/tasks", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 200
    assert list(timings(preflight)) == ["total"]


def test_time_spent_waiting_on_the_database_shows_as_its_share(
    client: TestClient, alice: Caller, superuser_database_url: str
) -> None:
    """A list that waits ~300 ms on a table lock: `db` holds that wait, `auth` does not."""
    assert client.get("/api/tasks", headers=alice.headers).status_code == 200  # token cached
    with psycopg.connect(superuser_database_url) as locker:
        locker.execute("lock table tasks in access exclusive mode")
        release = threading.Timer(0.3, locker.rollback)
        started = time.monotonic()
        release.start()
        response = client.get("/api/tasks", headers=alice.headers)
        elapsed_ms = (time.monotonic() - started) * 1000
        release.join()
    assert response.status_code == 200
    timing = timings(response)
    assert 250 <= timing["db"] <= timing["total"] <= elapsed_ms
    assert timing["auth"] < 50
