"""The OpenAPI document: every task and user route documents its errors, the Bearer scheme and
exact response models."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

TASK_ERRORS = {"401", "403", "404", "422", "503"}


def _schema(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def _operations(schema: dict[str, Any], prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
    ]


def test_every_task_route_documents_its_errors_as_problem_json(client: TestClient) -> None:
    schema = _schema(client)
    operations = _operations(schema, "/api/tasks") + _operations(schema, "/api/{user_id}/tasks")
    documented = {(m.upper(), p) for m, p, _ in operations}
    for path in ("/api/tasks", "/api/{user_id}/tasks"):
        assert {("GET", path), ("POST", path)} <= documented
        one = f"{path}/{{task_id}}"
        assert {("GET", one), ("PUT", one), ("PATCH", one), ("DELETE", one)} <= documented
        assert ("PATCH", f"{one}/complete") in documented
    for method, path, operation in operations:
        responses = operation["responses"]
        assert set(responses) >= TASK_ERRORS, (method, path)
        for status in TASK_ERRORS:
            content = responses[status]["content"]
            assert list(content) == ["application/problem+json"], (method, path, status)
            assert content["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }
        assert operation["security"] == [{"BearerAuth": []}], (method, path)


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
    parameters = _schema(client)["paths"]["/api/tasks"]["get"]["parameters"]
    by_name = {p["name"]: p for p in parameters}
    assert set(by_name) == {"status", "sort", "order", "sort_order", "q", "limit", "cursor"}
    assert set(by_name["status"]["schema"]["enum"]) == {"all", "pending", "incomplete", "completed"}
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
