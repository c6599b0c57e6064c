"""The OpenAPI document as client generators read it (openapi-typescript, openapi-fetch,
openapi-python-client, orval...): explicit names, shared types, optional means optional,
documented headers, only the errors that really happen, and every documented one does happen.

tests/clients/ generates the clients themselves and runs them against a live server.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.tokens import Caller
from todo_api.shutdown import drain

OPERATION_IDS = {
    ("get", "/healthz"): "getHealth",
    ("get", "/readyz"): "getReadiness",
    ("get", "/api/tasks"): "listTasks",
    ("post", "/api/tasks"): "createTask",
    ("get", "/api/tasks/{task_id}"): "getTask",
    ("put", "/api/tasks/{task_id}"): "updateTask",
    ("patch", "/api/tasks/{task_id}"): "patchTask",
    ("delete", "/api/tasks/{task_id}"): "deleteTask",
    ("patch", "/api/tasks/{task_id}/complete"): "toggleTask",
    ("get", "/api/{user_id}/tasks"): "listUserTasks",
    ("post", "/api/{user_id}/tasks"): "createUserTask",
    ("get", "/api/{user_id}/tasks/{task_id}"): "getUserTask",
    ("put", "/api/{user_id}/tasks/{task_id}"): "updateUserTask",
    ("patch", "/api/{user_id}/tasks/{task_id}"): "patchUserTask",
    ("delete", "/api/{user_id}/tasks/{task_id}"): "deleteUserTask",
    ("patch", "/api/{user_id}/tasks/{task_id}/complete"): "toggleUserTask",
    ("get", "/api/users/me"): "getMe",
    ("delete", "/api/users/me/token"): "revokeToken",
    ("delete", "/api/users/me/tokens"): "revokeAllTokens",
}


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def test_every_operation_has_its_explicit_camel_case_id(document: dict[str, Any]) -> None:
    ids = {key: operation["operationId"] for key, operation in _operations(document).items()}
    assert ids == OPERATION_IDS


def test_list_filters_are_named_components_shared_by_both_path_styles(
    document: dict[str, Any],
) -> None:
    components = document["components"]["schemas"]
    refs = []
    for path in ("/api/tasks", "/api/{user_id}/tasks"):
        by_name = {p["name"]: p["schema"] for p in document["paths"][path]["get"]["parameters"]}
        refs.append({name: by_name[name]["$ref"] for name in ("status", "sort", "order")})
    assert (
        refs[0]
        == refs[1]
        == {
            "status": "#/components/schemas/StatusFilter",
            "sort": "#/components/schemas/SortField",
            "order": "#/components/schemas/SortOrder",
        }
    )
    assert components["StatusFilter"]["enum"] == ["all", "pending", "incomplete", "completed"]
    assert set(components["SortField"]["enum"]) == {
        "created", "created_at", "updated", "updated_at", "title", "due_date"
    }  # fmt: skip
    # No inline enum left in any parameter (each would become a class per operation).
    for key, operation in _operations(document).items():
        for parameter in operation.get("parameters", []):
            assert "enum" not in parameter["schema"], (key, parameter["name"])
            # A query value or header is never JSON null.
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), key


def test_optional_request_fields_are_optional_in_generated_types(
    document: dict[str, Any],
) -> None:
    """openapi-typescript makes a field with a `default` required: request bodies state none."""
    schemas = document["components"]["schemas"]
    create = schemas["TaskCreate"]
    assert create["required"] == ["title"]
    assert "default" not in create["properties"]["completed"]
    for name in ("TaskCreate", "TaskUpdate", "TaskPatch", "TaskToggle"):
        for field, spec in schemas[name]["properties"].items():
            assert "default" not in spec, (name, field)
    # `errors` is absent (not null) on most problems, so it is neither nullable nor defaulted.
    errors = schemas["Problem"]["properties"]["errors"]
    assert errors["type"] == "array"
    assert "default" not in errors
    assert "errors" not in schemas["Problem"]["required"]


def test_the_toggle_body_is_an_optional_task_toggle(
    document: dict[str, Any], client: TestClient, alice: Caller
) -> None:
    for path in ("/api/tasks/{task_id}/complete", "/api/{user_id}/tasks/{task_id}/complete"):
        body = document["paths"][path]["patch"]["requestBody"]
        assert body["required"] is False
        schema = body["content"]["application/json"]["schema"]
        assert schema["$ref"] == "#/components/schemas/TaskToggle"
        assert "anyOf" not in schema
    # What the server does with each way of sending no value: flip.
    created = client.post("/api/tasks", json={"title": "toggle"}, headers=alice.headers)
    url = f"/api/tasks/{created.json()['id']}/complete"
    expected = True
    for extra in ({}, {"json": {}}, {"content": b"null"}, {"content": b""}):
        headers = {**alice.headers, "Content-Type": "application/json"}
        response = client.patch(url, headers=headers, **extra)  # type: ignore[arg-type]
        assert response.status_code == 200, (extra, response.text)
        assert response.json()["completed"] is expected, extra
        expected = not expected


def test_public_routes_need_no_token_and_the_document_says_so(
    document: dict[str, Any], client: TestClient
) -> None:
    for path in ("/healthz", "/readyz"):
        assert document["paths"][path]["get"]["security"] == []
        assert client.get(path).status_code == 200
    protected = [key for key, op in _operations(document).items() if key[1].startswith("/api/")]
    for key in protected:
        assert _operations(document)[key]["security"] == [{"BearerAuth": []}], key


def test_servers_tags_and_license_are_declared(document: dict[str, Any]) -> None:
    assert document["servers"] == [{"url": "/", "description": "The origin serving this document."}]
    declared = {tag["name"] for tag in document["tags"]}
    used = {tag for operation in _operations(document).values() for tag in operation["tags"]}
    assert used == declared == {"tasks", "user-tasks", "users", "health"}
    assert all(tag["description"] for tag in document["tags"])
    assert document["info"]["license"]["identifier"] == "MIT"


def test_readiness_503_is_documented_as_the_plain_json_it_sends(
    document: dict[str, Any], client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    documented = document["paths"]["/readyz"]["get"]["responses"]["503"]
    assert list(documented["content"]) == ["application/json"]
    assert documented["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Readiness"
    }
    monkeypatch.setattr(drain, "started_at", 0.0)  # the drain of a shutdown has begun
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "shutting_down", "database": "not_checked"}
    _assert_headers_documented(document, "/readyz", "get", response)


def _assert_headers_documented(
    document: dict[str, Any], template: str, method: str, response: Any
) -> None:
    """Every header documented as required is sent, and every API header sent is documented."""
    documented = document["paths"][template][method]["responses"][str(response.status_code)]
    headers = {name.lower(): spec for name, spec in documented.get("headers", {}).items()}
    for name, spec in headers.items():
        if spec["required"]:
            assert name in response.headers, (template, method, response.status_code, name)
    api_headers = {"etag", "location", "link", "www-authenticate", "retry-after", "x-request-id"}
    for name in api_headers & set(response.headers):
        assert name in headers, (template, method, response.status_code, name)


def test_response_headers_are_documented_as_sent(
    document: dict[str, Any], client: TestClient, alice: Caller
) -> None:
    def check(template: str, method: str, path: str, **kwargs: Any) -> Any:
        response = client.request(method, path, **kwargs)
        _assert_headers_documented(document, template, method.lower(), response)
        return response

    auth = alice.headers
    created = check("/api/tasks", "POST", "/api/tasks", json={"title": "h"}, headers=auth)
    assert created.status_code == 201
    check(
        "/api/{user_id}/tasks", "POST", f"/api/{alice.id}/tasks", json={"title": "i"}, headers=auth
    )
    page = check("/api/tasks", "GET", "/api/tasks?limit=1", headers=auth)
    assert "link" in page.headers
    last = check("/api/tasks", "GET", "/api/tasks?limit=100", headers=auth)
    assert "link" not in last.headers
    one = f"/api/tasks/{created.json()['id']}"
    tag = check("/api/tasks/{task_id}", "GET", one, headers=auth).headers["etag"]
    not_modified = check("/api/tasks/{task_id}", "GET", one, headers={**auth, "If-None-Match": tag})
    assert not_modified.status_code == 304
    check("/api/tasks/{task_id}", "PATCH", one, json={}, headers=auth)
    check("/api/tasks/{task_id}/complete", "PATCH", f"{one}/complete", headers=auth)
    refused = check("/api/tasks", "GET", "/api/tasks")
    assert refused.status_code == 401
    assert check("/api/tasks/{task_id}", "DELETE", one, headers=auth).status_code == 204


def _elicit(
    client: TestClient, caller: Caller, method: str, template: str, status: str, task_id: int
) -> Any:
    """A request to `template` that the API answers with `status`."""
    path_user = "someone-else" if status == "403" else caller.id
    task = {"404": 9_000_000_000_000, "422": "not-a-number"}.get(status, task_id)
    if status == "422" and "{task_id}" not in template:
        task = task_id
    path = template.replace("{user_id}", path_user).replace("{task_id}", str(task))
    headers = {} if status == "401" else dict(caller.headers)
    body: dict[str, Any] | None = {"title": "elicited"} if method in ("post", "put") else {}
    if method in ("get", "delete"):
        body = None
    kwargs: dict[str, Any] = {}
    if status == "412":
        headers["If-Match"] = f'"{task_id}.0"'
    elif status == "413":
        kwargs["content"] = b'{"title": "' + b"x" * 70_000 + b'"}'
        headers["Content-Type"] = "application/json"
        body = None
    elif status == "422" and template.endswith("/tasks"):
        if method == "get":
            path += "?limit=0"
        else:
            body = {}
    if body is not None:
        kwargs["json"] = body
    return client.request(method.upper(), path, headers=headers, **kwargs)


def test_every_documented_client_error_really_happens(
    document: dict[str, Any], client: TestClient, alice: Caller
) -> None:
    """The other half of "only the errors a route can return": each documented 4xx is reached.

    409 (a create with the same Idempotency-Key still in flight) needs two concurrent requests:
    tests/api/test_idempotency_keys.py reaches it on both path styles.
    """
    reached = 0
    for (method, template), operation in _operations(document).items():
        if not template.startswith("/api/{user_id}/tasks") and not template.startswith(
            "/api/tasks"
        ):
            continue
        for status in sorted(operation["responses"]):
            if status[0] != "4" or status == "409":
                continue
            created = client.post("/api/tasks", json={"title": "target"}, headers=alice.headers)
            task_id = created.json()["id"]
            response = _elicit(client, alice, method, template, status, task_id)
            assert str(response.status_code) == status, (method, template, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            reached += 1
    assert reached >= 60
