"""Database down or pool exhausted: quick 503s, probes that tell, 401s first, recovery alone.

The outage tests stop and restart a PostgreSQL of their own (not the session's), so the rest of
the suite never sees the outage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.support.databases import create_scratch_database
from tests.support.postgres import Cluster, running_cluster
from tests.support.tokens import TEST_SECRET, Caller, make_token, new_user_id
from todo_api import migrations
from todo_api.config import Settings
from todo_api.main import create_app

POOL_TIMEOUT = 1.0
RECOVERY_DEADLINE = 15.0


class Outage:
    """An app on a private Postgres that the test can stop and start."""

    def __init__(self, cluster: Cluster, client: TestClient) -> None:
        self.cluster = cluster
        self.client = client

    def stop_database(self) -> None:
        self.cluster.stop()

    def start_database(self) -> None:
        self.cluster.start()


@pytest.fixture(scope="module")
def outage() -> Iterator[Outage]:
    # Of the same kind as the session's (TEST_PG_BIN or the embedded one), so the outage is
    # proven on every major the suite runs on.
    with running_cluster() as (cluster, admin_url):
        url = create_scratch_database(admin_url, prefix="todo_outage")
        migrations.apply(url)
        settings = Settings(
            database_url=SecretStr(url),
            better_auth_secret=SecretStr(TEST_SECRET),
            db_pool_min_size=2,
            db_pool_max_size=4,
            db_pool_timeout_seconds=POOL_TIMEOUT,
            db_connect_timeout_seconds=2,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield Outage(cluster, client)


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "service_unavailable"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_requests_fail_fast_while_the_database_is_down_and_recover_alone(outage: Outage) -> None:
    client = outage.client
    caller = Caller(new_user_id(), make_token())
    caller = Caller(caller.id, make_token(caller.id))
    for _ in range(4):  # every pooled connection has been used
        assert client.get("/api/users/me", headers=caller.headers).status_code == 200

    outage.stop_database()
    try:
        for _ in range(3):
            started = time.monotonic()
            response = client.get("/api/users/me", headers=caller.headers)
            _assert_unavailable(response)
            assert time.monotonic() - started < POOL_TIMEOUT + 2.0
        # Authentication comes first: no database needed to refuse a bad token.
        missing = client.get("/api/users/me")
        assert missing.status_code == 401
        assert missing.json()["code"] == "missing_token"
        forged = client.get("/api/users/me", headers={"Authorization": "Bearer abc.def.ghi"})
        assert forged.status_code == 401
        assert forged.json()["code"] == "invalid_token"
        # The probes tell the operator which is which.
        assert client.get("/healthz").status_code == 200
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.headers["retry-after"]
    finally:
        outage.start_database()

    started = time.monotonic()
    statuses: list[int] = []
    while time.monotonic() - started < RECOVERY_DEADLINE:
        statuses.append(client.get("/api/users/me", headers=caller.headers).status_code)
        if statuses[-1] == 200:
            break
        time.sleep(0.2)
    assert statuses[-1] == 200, f"no recovery within {RECOVERY_DEADLINE} s: {statuses}"
    assert set(statuses) <= {200, 503}
    # Stale connections from before the restart cost at most a brief burst, then all is well.
    assert len(statuses) <= 5, statuses
    for _ in range(6):
        assert client.get("/api/users/me", headers=caller.headers).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_a_restart_while_idle_costs_at_most_one_failed_request(outage: Outage) -> None:
    client = outage.client
    caller_id = new_user_id()
    headers = {"Authorization": f"Bearer {make_token(caller_id)}"}
    for _ in range(4):
        assert client.get("/api/users/me", headers=headers).status_code == 200

    # Every idle pooled connection now points at a server that is gone.
    outage.stop_database()
    outage.start_database()

    statuses = [client.get("/api/users/me", headers=headers).status_code for _ in range(6)]
    assert statuses.count(503) <= 1, statuses
    assert statuses[-5:] == [200] * 5, statuses


@pytest.mark.anyio
async def test_an_exhausted_pool_answers_503_within_the_pool_timeout(
    settings: Settings, alice: Caller
) -> None:
    tight = settings.model_copy(
        update={"db_pool_min_size": 1, "db_pool_max_size": 1, "db_pool_timeout_seconds": 0.5}
    )
    app = create_app(tight)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/api/users/me", headers=alice.headers)).status_code == 200
            async with app.state.database.pool.connection():  # the only connection is busy
                started = time.monotonic()
                response = await client.get("/api/users/me", headers=alice.headers)
                elapsed = time.monotonic() - started
            _assert_unavailable(response)
            assert elapsed < 0.5 + 1.0
            assert (await client.get("/api/users/me", headers=alice.headers)).status_code == 200
