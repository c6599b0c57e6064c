"""The OpenAPI document: every task and user route documents exactly its errors, the Bearer
scheme and exact response models."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

# The errors each task route can answer with, by the code paths: authentication (401), the
# store or the key set out of reach (503), a bug (500), invalid query/path/body (422); a task id
# that names no task of the caller (404); a body (413); If-Match (412); Idempotency-Key (409).
# 403 only where the path names a user.
_ALWAYS = {"401", "422", "500", "503"}
TASK_ERRORS: dict[tuple[str, str], set[str]] = {
    ("get", ""): _ALWAYS,
    ("post", ""): _ALWAYS | {"409", "413"},
    ("get", "/{task_id}"): _ALWAYS | {"404"},
    ("put", "/{task_id}"): _ALWAYS | {"404", "412", "413"},
    ("patch", "/{task_id}"): _ALWAYS | {"404", "412", "413"},
    ("delete", "/{task_id}"): _ALWAYS | {"404", "412"},
    ("patch", "/{task_id}/complete"): _ALWAYS | {"404", "412", "413"},
}
COLLECTIONS = {"/api/tasks": set(), "/api/{user_id}/tasks": {"403"}}


def _schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def test_every_task_route_documents_exactly_the_errors_it_can_answer_with(
    client: TestClient,
) -> None:
    schema = _schema(client)
    documented = {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith(tuple(COLLECTIONS))
    }
    expected = {
        (method, collection + tail): errors | extra
        for collection, extra in COLLECTIONS.items()
        for (method, tail), errors in TASK_ERRORS.items()
    }
    assert set(documented) == set(expected)
    for key, operation in documented.items():
        responses = operation["responses"]
        assert {status for status in responses if status[0] in "45"} == expected[key], key
        for status in expected[key]:
            content = responses[status]["content"]
            assert list(content) == ["application/problem+json"], (key, status)
            assert content["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }
        assert operation["security"] == [{"BearerAuth": []}], key


def test_problem_schema_matches_the_error_body(client: TestClient) -> None:
    schema = _schema(client)
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code", "request_id"}
    assert "errors" in problem["properties"]
    assert schema["components"]["securitySchemes"]["BearerAuth"]["scheme"].lower() == "bearer"
    body = client.get("/api/tasks").json()  # a real 401
    assert set(body) <= set(problem["properties"])
    assert set(problem["required"]) <= set(body)


def test_success_responses_have_exact_models(client: TestClient) -> None:
    schema = _schema(client)
    task_ref = {"$ref": "#/components/schemas/Task"}
    paths = schema["paths"]
    ok = paths["/api/tasks"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["type"] == "array"
    assert ok["items"] == task_ref
    created = paths["/api/tasks"]["post"]["responses"]["201"]["content"]["application/json"]
    assert created["schema"] == task_ref
    one = paths["/api/tasks/{task_id}"]
    for method in ("get", "put", "patch"):
        assert one[method]["responses"]["200"]["content"]["application/json"]["schema"] == task_ref
    assert "content" not in one["delete"]["responses"]["204"]
    task = schema["components"]["schemas"]["Task"]
    assert set(task["required"]) == {
        "id", "user_id", "title", "description", "completed", "due_date", "created_at",
        "updated_at",
    }  # fmt: skip
    # No untyped ("any") schema anywhere in the components the task routes use.
    for name in ("Task", "TaskCreate", "TaskUpdate", "TaskPatch", "TaskToggle", "Problem"):
        for field, spec in schema["components"]["schemas"][name]["properties"].items():
            assert {"type", "anyOf", "$ref"} & set(spec), (name, field)


def test_list_parameters_are_documented(client: TestClient) -> None:
    schema = _schema(client)
    parameters = schema["paths"]["/api/tasks"]["get"]["parameters"]
    by_name = {p["name"]: p for p in parameters}
    assert set(by_name) == {"status", "sort", "order", "sort_order", "q", "limit", "cursor"}
    status = by_name["status"]["schema"]["$ref"].rpartition("/")[2]
    assert set(schema["components"]["schemas"][status]["enum"]) == {
        "all", "pending", "incomplete", "completed"
    }  # fmt: skip
    assert by_name["limit"]["schema"]["maximum"] == 100
    assert by_name["limit"]["schema"]["default"] == 50


def test_retry_and_precondition_headers_and_errors_are_documented(client: TestClient) -> None:
    paths = _schema(client)["paths"]
    for collection in ("/api/tasks", "/api/{user_id}/tasks"):
        create = paths[collection]["post"]
        assert "Idempotency-Key" in {p["name"] for p in create["parameters"]}
        assert {"409", "422"} <= set(create["responses"])
        assert {"ETag", "Location"} <= set(create["responses"]["201"]["headers"])
        assert "Link" in paths[collection]["get"]["responses"]["200"]["headers"]
        item = paths[f"{collection}/{{task_id}}"]
        assert "If-None-Match" in {p["name"] for p in item["get"]["parameters"]}
        assert "ETag" in item["get"]["responses"]["304"]["headers"]
        writes = [item["put"], item["patch"], item["delete"]]
        writes.append(paths[f"{collection}/{{task_id}}/complete"]["patch"])
        for operation in writes:
            assert "If-Match" in {p["name"] for p in operation["parameters"]}
            assert "412" in operation["responses"]
            assert operation["responses"]["412"]["content"]["application/problem+json"]
        assert "WWW-Authenticate" in item["get"]["responses"]["401"]["headers"]
        assert "Retry-After" in item["get"]["responses"]["503"]["headers"]
