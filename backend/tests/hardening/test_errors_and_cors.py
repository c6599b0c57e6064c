"""Every error is problem+json with the request id, no internals leak, CORS survives errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.tokens import Caller
from todo_api.config import Settings
from todo_api.main import create_app

ORIGIN = "http://localhost:3000"
INTERNAL_DETAIL = "secret-internal-detail-from-the-database-layer"


@pytest.fixture(scope="module")
def failing_client(settings: Settings) -> Iterator[TestClient]:
    """A test-only app instance with a route that raises an unexpected exception."""
    app: FastAPI = create_app(settings)

    @app.get("/test-only/boom")
    async def boom() -> None:
        raise RuntimeError(INTERNAL_DETAIL)

    # raise_server_exceptions stays on: the test fails if the exception escapes the app.
    with TestClient(app) as client:
        yield client


def _assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_unexpected_exceptions_are_a_500_without_internals_and_logged_with_traceback(
    failing_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="todo_api"):
        response = failing_client.get(
            "/test-only/boom", headers={"X-Request-ID": "trace-me-500", "Origin": ORIGIN}
        )

    body = _assert_problem(response, 500, "internal_error")
    assert body["request_id"] == "trace-me-500"
    assert INTERNAL_DETAIL not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "internal_error"]
    assert record.request_id == "trace-me-500"  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert INTERNAL_DETAIL in caplog.text
    assert "Traceback" in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/no/such/route", {}, 404, "not_found"),
        ("POST", "/healthz", {}, 405, "method_not_allowed"),
        ("GET", "/api/tasks?limit=0", {}, 422, "validation_error"),
        ("GET", "/api/tasks/not-a-number", {}, 422, "validation_error"),
        ("POST", "/api/tasks", {"json": {"title": 5}}, 422, "validation_error"),
        ("POST", "/api/tasks", {"content": b'{"title": "broken', "json_type": True}, 422, None),
        ("POST", "/api/tasks", {"content": b'{"title": "\xff\xfe"}', "json_type": True}, 422, None),
        ("PATCH", "/api/tasks/1", {"content": b"\xc3\x28#", "json_type": True}, 422, None),
    ],
)
def test_every_error_is_problem_json_with_the_request_id(
    client: TestClient,
    alice: Caller,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    code: str | None,
) -> None:
    headers = {**alice.headers, "X-Request-ID": "client-id:1.2_3-4"}
    if kwargs.pop("json_type", False):
        headers["Content-Type"] = "application/json"
    response = client.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]

    body = _assert_problem(response, status, code or "validation_error")
    assert body["request_id"] == "client-id:1.2_3-4"
    if status == 422:
        errors = body["errors"]
        assert isinstance(errors, list)
        assert errors
        assert all(set(item) == {"loc", "msg"} for item in errors)
    if status == 405:
        assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    "supplied",
    ["", "x" * 129, "has space", "semi;colon", "ünïcode", "a\tb"],
)
def test_a_malformed_request_id_is_replaced(client: TestClient, supplied: str) -> None:
    response = client.get("/no/such/route", headers={"X-Request-ID": supplied.encode()})
    generated = response.headers["x-request-id"]
    assert generated != supplied
    assert 1 <= len(generated) <= 128
    assert response.json()["request_id"] == generated


def test_a_well_formed_request_id_of_128_characters_is_kept(client: TestClient) -> None:
    supplied = "A.b:c-d_" * 16
    response = client.get("/healthz", headers={"X-Request-ID": supplied})
    assert response.headers["x-request-id"] == supplied


def test_preflight_needs_no_token(client: TestClient) -> None:
    response = client.options(
        "/api/tasks",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-request-id",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/api/users/me", {}, 401),
        ("/no/such/route", {}, 404),
        ("/api/tasks?limit=0", None, 422),
    ],
)
def test_error_responses_keep_cors_headers_and_expose_ours(
    client: TestClient,
    alice: Caller,
    path: str,
    headers: dict[str, str] | None,
    status: int,
) -> None:
    sent = {**(alice.headers if headers is None else headers), "Origin": ORIGIN}
    response = client.get(path, headers=sent)
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"link", "location", "x-request-id", "retry-after"} <= exposed


def test_a_disallowed_origin_gets_no_cors_headers(client: TestClient, alice: Caller) -> None:
    evil = "https://evil.example"
    simple = client.get("/api/users/me", headers={**alice.headers, "Origin": evil})
    preflight = client.options(
        "/api/users/me",
        headers={"Origin": evil, "Access-Control-Request-Method": "GET"},
    )
    for response in (simple, preflight):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert simple.status_code == 200  # CORS is the browser's check; the API still answers
    _assert_problem(preflight, 400, "cors_refused")
    for response in (simple, preflight):
        assert "origin" in response.headers["vary"].lower()


def test_error_body_is_valid_json_even_for_hostile_paths(client: TestClient, alice: Caller) -> None:
    response = client.get("/api/tasks/1%27%20or%201=1--", headers=alice.headers)
    _assert_problem(response, 422, "validation_error")
    json.loads(response.text)


def test_405_lists_every_method_the_path_serves(client: TestClient, alice: Caller) -> None:
    response = client.put("/api/tasks", headers=alice.headers, json={"title": "x"})
    _assert_problem(response, 405, "method_not_allowed")
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "PUT" not in allowed
