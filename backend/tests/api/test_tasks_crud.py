"""Create, read, update, delete and toggle one task: shapes, status codes and validation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.tokens import Caller

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def _create(client: TestClient, caller: Caller, **body: Any) -> dict[str, Any]:
    response = client.post("/api/tasks", json={"title": "A task", **body}, headers=caller.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def test_create_returns_201_the_task_and_its_location(client: TestClient, alice: Caller) -> None:
    response = client.post(
        "/api/tasks",
        json={"title": "  Buy milk \n", "description": "2 l", "due_date": "2026-12-01"},
        headers=alice.headers,
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    task = response.json()
    assert response.headers["location"] == f"/api/tasks/{task['id']}"
    assert set(task) == {
        "id", "user_id", "title", "description", "completed", "due_date", "created_at",
        "updated_at",
    }  # fmt: skip
    assert task["user_id"] == alice.id
    assert task["title"] == "Buy milk"
    assert task["description"] == "2 l"
    assert task["completed"] is False
    assert task["due_date"] == "2026-12-01"
    assert TIMESTAMP.match(task["created_at"])
    assert task["created_at"] == task["updated_at"]
    assert client.get(response.headers["location"], headers=alice.headers).json() == task


def test_task_and_page_json_is_compact_with_the_api_key_order(
    client: TestClient, alice: Caller
) -> None:
    task = _create(client, alice, description='Say "hi" : now', due_date="2026-12-01")
    other = _create(client, alice)

    one = client.get(f"/api/tasks/{task['id']}", headers=alice.headers).text
    page = client.get("/api/tasks", headers=alice.headers).text

    expected = (
        f'{{"id":{task["id"]},"user_id":"{alice.id}","title":"A task",'
        f'"description":"Say \\"hi\\" : now","completed":false,"due_date":"2026-12-01",'
        f'"created_at":"{task["created_at"]}","updated_at":"{task["updated_at"]}"}}'
    )
    assert one == expected
    assert page.startswith(f'[{{"id":{other["id"]},')
    assert page.endswith(f",{expected}]")
    assert "}, {" not in page
    assert "\n" not in page


def test_create_ignores_server_controlled_and_unknown_fields(
    client: TestClient, alice: Caller, bob: Caller
) -> None:
    task = _create(
        client,
        alice,
        id=999_999,
        user_id=bob.id,
        created_at="2000-01-01T00:00:00Z",
        updated_at="2000-01-01T00:00:00Z",
        colour="red",
    )
    assert task["id"] != 999_999
    assert task["user_id"] == alice.id
    assert not task["created_at"].startswith("2000")
    assert "colour" not in task


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": None}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"title": "nul \x00 byte"}, "title"),
        ({"title": "ok", "description": "d" * 1001}, "description"),
        ({"title": "ok", "completed": "yes"}, "completed"),
        ({"title": "ok", "completed": 1}, "completed"),
        ({"title": "ok", "due_date": "tomorrow"}, "due_date"),
        ({"title": "ok", "due_date": "2026-02-30"}, "due_date"),
        ({"title": "ok", "due_date": "2026-01-01T10:00:00"}, "due_date"),
        ({"title": "ok", "due_date": 1_700_000_000}, "due_date"),
    ],
)
def test_create_refuses_invalid_bodies_with_a_validation_problem(
    client: TestClient, alice: Caller, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/tasks", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert any(error["loc"][:2] == ["body", field] for error in problem["errors"])


def test_text_postgres_cannot_hold_is_a_validation_error_and_creates_nothing(
    client: TestClient, alice: Caller
) -> None:
    # A lone surrogate is valid JSON (\ud800) but not UTF-8, so no PostgreSQL text can hold it.
    response = client.post(
        "/api/tasks",
        content=b'{"title": "\\ud800"}',
        headers={**alice.headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert client.get("/api/tasks", headers=alice.headers).json() == []


def test_title_of_200_characters_after_trimming_is_accepted(
    client: TestClient, alice: Caller
) -> None:
    assert _create(client, alice, title=f"  {'x' * 200}  ")["title"] == "x" * 200


def test_create_refuses_a_body_that_is_not_a_json_object(client: TestClient, alice: Caller) -> None:
    for content in (b"[1, 2]", b"not json", b""):
        response = client.post(
            "/api/tasks",
            content=content,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, content
        assert response.json()["code"] == "validation_error"


def test_get_returns_the_task(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice)
    response = client.get(f"/api/tasks/{task['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == task


@pytest.mark.parametrize("task_id", ["abc", "0", "-1", "1.5", str(2**63), "9" * 30])
def test_invalid_task_ids_are_a_validation_error(
    client: TestClient, alice: Caller, task_id: str
) -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = client.request(
            method, f"/api/tasks/{task_id}", json={"title": "x"}, headers=alice.headers
        )
        assert response.status_code == 422, (method, response.text)
        assert response.json()["code"] == "validation_error"
    response = client.patch(f"/api/tasks/{task_id}/complete", headers=alice.headers)
    assert response.status_code == 422


def test_largest_bigint_id_is_simply_not_found(client: TestClient, alice: Caller) -> None:
    response = client.get(f"/api/tasks/{2**63 - 1}", headers=alice.headers)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_put_requires_a_title_and_keeps_omitted_fields(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice, description="keep me", due_date="2026-05-01", completed=True)
    url = f"/api/tasks/{task['id']}"
    missing = client.put(url, json={"description": "new"}, headers=alice.headers)
    assert missing.status_code == 422
    response = client.put(url, json={"title": " Renamed ", "id": 1}, headers=alice.headers)
    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == "Renamed"
    assert updated["id"] == task["id"]
    assert (updated["description"], updated["due_date"], updated["completed"]) == (
        "keep me",
        "2026-05-01",
        True,
    )
    assert updated["created_at"] == task["created_at"]
    assert updated["updated_at"] > task["updated_at"]


def test_put_with_every_field_replaces_them(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice, description="old", due_date="2026-05-01")
    response = client.put(
        f"/api/tasks/{task['id']}",
        json={"title": "new", "description": None, "completed": True, "due_date": None},
        headers=alice.headers,
    )
    body = response.json()
    assert (body["title"], body["description"], body["completed"], body["due_date"]) == (
        "new",
        None,
        True,
        None,
    )


def test_patch_changes_only_the_fields_sent(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice, description="d", due_date="2026-05-01")
    url = f"/api/tasks/{task['id']}"
    body = client.patch(url, json={"completed": True}, headers=alice.headers).json()
    assert (body["title"], body["description"], body["completed"], body["due_date"]) == (
        "A task",
        "d",
        True,
        "2026-05-01",
    )
    body = client.patch(url, json={"due_date": None}, headers=alice.headers).json()
    assert (body["description"], body["due_date"]) == ("d", None)
    body = client.patch(url, json={"description": None, "title": "t"}, headers=alice.headers).json()
    assert (body["title"], body["description"], body["completed"]) == ("t", None, True)


def test_patch_with_nothing_to_change_leaves_the_task_untouched(
    client: TestClient, alice: Caller
) -> None:
    task = _create(client, alice)
    response = client.patch(f"/api/tasks/{task['id']}", json={"x": 1}, headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == task


@pytest.mark.parametrize(
    "body",
    [{"title": None}, {"title": ""}, {"completed": None}, {"completed": "no"}, {"due_date": "x"}],
)
def test_patch_refuses_invalid_values(
    client: TestClient, alice: Caller, body: dict[str, Any]
) -> None:
    task = _create(client, alice)
    response = client.patch(f"/api/tasks/{task['id']}", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert client.get(f"/api/tasks/{task['id']}", headers=alice.headers).json() == task


def test_delete_returns_204_and_the_task_is_gone(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice)
    url = f"/api/tasks/{task['id']}"
    response = client.delete(url, headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(url, headers=alice.headers).status_code == 404
    assert client.delete(url, headers=alice.headers).status_code == 404


def test_toggle_flips_completed_without_a_body(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice)
    url = f"/api/tasks/{task['id']}/complete"
    assert client.patch(url, headers=alice.headers).json()["completed"] is True
    assert client.patch(url, headers=alice.headers).json()["completed"] is False
    assert client.patch(url, json={}, headers=alice.headers).json()["completed"] is True


def test_toggle_with_a_body_sets_completed(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice)
    url = f"/api/tasks/{task['id']}/complete"
    for value in (True, True, False, False):
        response = client.patch(url, json={"completed": value}, headers=alice.headers)
        assert response.status_code == 200
        assert response.json()["completed"] is value
    for bad in ({"completed": "true"}, {"completed": None}, [True]):
        assert client.patch(url, json=bad, headers=alice.headers).status_code == 422


def test_missing_task_is_404_for_every_route(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice)
    client.delete(f"/api/tasks/{task['id']}", headers=alice.headers)
    url = f"/api/tasks/{task['id']}"
    for method, path, body in [
        ("GET", url, None),
        ("PUT", url, {"title": "x"}),
        ("PATCH", url, {"title": "x"}),
        ("DELETE", url, None),
        ("PATCH", f"{url}/complete", None),
    ]:
        response = client.request(method, path, json=body, headers=alice.headers)
        assert response.status_code == 404, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"


def test_task_routes_need_a_token(client: TestClient, alice: Caller) -> None:
    task = _create(client, alice)
    for method, path in [
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", f"/api/tasks/{task['id']}"),
        ("PUT", f"/api/tasks/{task['id']}"),
        ("PATCH", f"/api/tasks/{task['id']}"),
        ("DELETE", f"/api/tasks/{task['id']}"),
        ("PATCH", f"/api/tasks/{task['id']}/complete"),
    ]:
        response = client.request(method, path, json={"title": "x"})
        assert response.status_code == 401, (method, path)
        assert response.json()["code"] == "missing_token"
    assert client.get(f"/api/tasks/{task['id']}", headers=alice.headers).json() == task
