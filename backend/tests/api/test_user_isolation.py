"""T007: another user's task does not exist for you, and stays exactly as it was."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.tokens import Caller


@pytest.fixture(params=["direct", pytest.param("pgbouncer", marks=pytest.mark.pgbouncer)])
def client(request: pytest.FixtureRequest, client: TestClient) -> TestClient:
    """Every isolation test runs twice: straight to Postgres, and through PgBouncer in
    transaction mode, where server connections change hands between users at every commit."""
    if request.param == "pgbouncer":
        pgbouncer_client: TestClient = request.getfixturevalue("pgbouncer_client")
        return pgbouncer_client
    return client


@pytest.fixture
def bobs_task(client: TestClient, bob: Caller) -> dict[str, Any]:
    response = client.post(
        "/api/tasks",
        json={"title": "Bob's secret", "description": "only Bob", "due_date": "2026-03-01"},
        headers=bob.headers,
    )
    assert response.status_code == 201
    task: dict[str, Any] = response.json()
    return task


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"title": "pwned", "completed": True}),
        ("PATCH", "", {"title": "pwned", "description": None}),
        ("DELETE", "", None),
        ("PATCH", "/complete", None),
        ("PATCH", "/complete", {"completed": True}),
    ],
)
def test_other_users_task_is_not_found_and_unchanged(
    client: TestClient,
    alice: Caller,
    bob: Caller,
    bobs_task: dict[str, Any],
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    for prefix in ("/api/tasks", f"/api/{alice.id}/tasks"):
        url = f"{prefix}/{bobs_task['id']}{suffix}"
        response = client.request(method, url, json=body, headers=alice.headers)
        assert response.status_code == 404, (url, response.text)
        assert response.json()["code"] == "not_found"
        assert "Bob" not in response.text
    # Indistinguishable from a task that never existed.
    absent = client.request(method, f"/api/tasks/{2**62}{suffix}", json=body, headers=alice.headers)
    assert absent.status_code == 404
    assert absent.json()["detail"] == response.json()["detail"]
    after = client.get(f"/api/tasks/{bobs_task['id']}", headers=bob.headers)
    assert after.status_code == 200
    assert after.json() == bobs_task


def test_lists_and_counts_never_include_other_users_tasks(
    client: TestClient, alice: Caller, bob: Caller, bobs_task: dict[str, Any]
) -> None:
    mine = client.post("/api/tasks", json={"title": "Alice's"}, headers=alice.headers).json()
    queries = [
        "",
        "?status=pending",
        "?status=completed",
        "?q=secret",
        "?q=Bob",
        "?sort=title",
        "?sort=due_date&order=desc",
        "?sort=updated",
        "?limit=100",
    ]
    for query in queries:
        for prefix in ("/api/tasks", f"/api/{alice.id}/tasks"):
            tasks = client.get(f"{prefix}{query}", headers=alice.headers).json()
            assert all(task["user_id"] == alice.id for task in tasks), query
            assert bobs_task["id"] not in {task["id"] for task in tasks}
            assert len(tasks) == (0 if query in ("?status=completed", "?q=secret", "?q=Bob") else 1)
    me = client.get("/api/users/me", headers=alice.headers).json()
    assert me["tasks"] == {"total": 1, "pending": 1, "completed": 0}
    assert [t["id"] for t in client.get("/api/tasks", headers=alice.headers).json()] == [mine["id"]]


def test_hackathon_path_for_another_user_is_forbidden_and_logged(
    client: TestClient,
    alice: Caller,
    bob: Caller,
    bobs_task: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="todo_api.security")
    for method, suffix, body in [
        ("GET", "", None),
        ("POST", "", {"title": "planted"}),
        ("GET", f"/{bobs_task['id']}", None),
        ("PUT", f"/{bobs_task['id']}", {"title": "pwned"}),
        ("PATCH", f"/{bobs_task['id']}", {"title": "pwned"}),
        ("DELETE", f"/{bobs_task['id']}", None),
        ("PATCH", f"/{bobs_task['id']}/complete", None),
    ]:
        caplog.clear()
        url = f"/api/{bob.id}/tasks{suffix}"
        response = client.request(method, url, json=body, headers=alice.headers)
        assert response.status_code == 403, (method, url)
        assert response.json()["code"] == "forbidden"
        events = [r for r in caplog.records if getattr(r, "event", None) == "access_denied"]
        assert len(events) == 1
        assert events[0].__dict__["user_id"] == alice.id
        assert events[0].__dict__["path"] == url
        assert alice.token not in caplog.text
    assert client.get(f"/api/{bob.id}/tasks", headers=bob.headers).json() == [bobs_task]


def test_hackathon_paths_serve_the_callers_own_tasks(client: TestClient, alice: Caller) -> None:
    base = f"/api/{alice.id}/tasks"
    created = client.post(base, json={"title": "via hackathon path"}, headers=alice.headers)
    assert created.status_code == 201
    task = created.json()
    assert created.headers["location"] == f"{base}/{task['id']}"
    assert client.get(f"{base}/{task['id']}", headers=alice.headers).json() == task
    assert client.get(f"{base}/", headers=alice.headers).json() == [task]
    toggled = client.patch(f"{base}/{task['id']}/complete", headers=alice.headers).json()
    assert toggled["completed"] is True
    assert client.delete(f"{base}/{task['id']}", headers=alice.headers).status_code == 204
    assert client.get("/api/tasks", headers=alice.headers).json() == []
