"""Behind PgBouncer in transaction mode, nothing of one request reaches the next.

Server connections are shared between clients at every transaction boundary, so a session-level
SET of role or user would leak. Ours are transaction-local; these tests prove it on a real PgBouncer
with fewer server connections than clients.
"""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support.request_role import as_request_role
from tests.support.tokens import Caller

pytestmark = pytest.mark.pgbouncer


def test_requests_through_pgbouncer_leave_no_role_or_user_behind(
    pgbouncer_client: TestClient, pgbouncer_database_url: str, alice: Caller
) -> None:
    for _ in range(12):  # more than psycopg's prepare threshold: prepared statements must be off
        response = pgbouncer_client.get("/api/users/me", headers=alice.headers)
        assert response.status_code == 200
        assert response.json()["id"] == alice.id
    with psycopg.connect(pgbouncer_database_url, prepare_threshold=None) as conn:
        for _ in range(6):  # each statement may land on another server connection
            user, role, app_user = conn.execute(
                "select current_user, current_setting('role'),"
                " coalesce(current_setting('app.user_id', true), '')"
            ).fetchone() or (None, None, None)
            conn.commit()
            assert user != "todo_app"
            assert role == "none"
            assert app_user == ""


def test_counts_stay_per_user_through_pgbouncer(
    pgbouncer_client: TestClient, database_url: str, alice: Caller, bob: Caller
) -> None:
    with as_request_role(database_url, alice.id) as conn:
        conn.execute("insert into tasks (user_id, title) values (%s, 'alice only')", (alice.id,))
        conn.commit()
    for caller, expected in ((alice, 1), (bob, 0), (alice, 1), (bob, 0)):
        body = pgbouncer_client.get("/api/users/me", headers=caller.headers).json()
        assert body["id"] == caller.id
        assert body["tasks"]["total"] == expected
