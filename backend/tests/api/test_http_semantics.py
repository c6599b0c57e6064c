"""HTTP details a client relies on: strict integers, HEAD, request ids, preflights."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.tokens import Caller

ORIGIN = "http://localhost:3000"
_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _problem(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]  # type: ignore[attr-defined]
    return body


# --- integers in paths and queries are plain decimal digits ---------------------------------


@pytest.mark.parametrize(
    "spelling", ["{id}.0", "1_0", "+{id}", "%20{id}", "{id}%20", "0x1", "1e1", "-1", "٣", "\uff11"]
)
def test_a_task_id_that_is_not_plain_digits_is_422(
    client: TestClient, alice: Caller, spelling: str
) -> None:
    task = client.post("/api/tasks", headers=alice.headers, json={"title": "keep me"}).json()
    path = spelling.format(id=task["id"])
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        response = client.request(method, f"/api/tasks/{path}", headers=alice.headers, json={})
        body = _problem(response, 422, "validation_error")
        assert body["errors"]
    assert client.get(f"/api/tasks/{task['id']}", headers=alice.headers).status_code == 200


def test_leading_zeros_are_still_decimal_digits(client: TestClient, alice: Caller) -> None:
    task = client.post("/api/tasks", headers=alice.headers, json={"title": "zero"}).json()
    assert client.get(f"/api/tasks/000{task['id']}", headers=alice.headers).json() == task


@_settings
@given(text=st.text(min_size=1, max_size=12))
def test_limit_accepts_exactly_plain_decimal_digits(
    client: TestClient, alice: Caller, text: str
) -> None:
    response = client.get("/api/tasks", params={"limit": text}, headers=alice.headers)
    plain = text.isascii() and text.isdigit() and 1 <= int(text) <= 100
    assert response.status_code == (200 if plain else 422), (text, response.text)


@_settings
# Not "/", "?" or "%" (TestClient percent-decodes paths twice), nor dot segments (normalized away).
@given(
    text=st.text(min_size=1, max_size=25).filter(
        lambda s: not set(s) & set("/?%") and s not in (".", "..")
    )
)
def test_task_ids_accept_exactly_plain_decimal_digits(
    client: TestClient, alice: Caller, text: str
) -> None:
    response = client.get(f"/api/tasks/{_quote(text)}", headers=alice.headers)
    plain = text.isascii() and text.isdigit() and 1 <= int(text) < 2**63
    assert response.status_code == (404 if plain else 422), (text, response.text)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


# --- HEAD wherever GET ------------------------------------------------------------------------


def test_head_answers_every_get_route_like_get_without_a_body(
    client: TestClient, alice: Caller
) -> None:
    task = client.post("/api/tasks", headers=alice.headers, json={"title": "head"}).json()
    paths = [
        "/api/tasks",
        f"/api/tasks/{task['id']}",
        f"/api/{alice.id}/tasks",
        f"/api/{alice.id}/tasks/{task['id']}",
        "/api/users/me",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/api/tasks/999999999",
    ]
    for path in paths:
        got = client.get(path, headers=alice.headers)
        head = client.head(path, headers=alice.headers)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["content-length"] == got.headers["content-length"], path
        assert "x-request-id" in head.headers


def test_head_without_a_token_is_401(client: TestClient) -> None:
    response = client.head("/api/tasks")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_allow_header_names_head_where_get_is_served(client: TestClient, alice: Caller) -> None:
    response = client.put("/api/tasks", headers=alice.headers, json={"title": "x"})
    assert "HEAD" in {method.strip() for method in response.headers["allow"].split(",")}


# --- X-Request-ID -----------------------------------------------------------------------------


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_token_shaped_request_id_is_replaced_even_without_eyj(client: TestClient) -> None:
    # A header whose JSON starts with a space encodes to "IHsi...", not "eyJ...".
    header = _segment(b' {"alg":"HS256","typ":"JWT"}')
    shaped = f"{header}.{_segment(json.dumps({'sub': 'u'}).encode())}.{_segment(b'sig')}"
    assert not shaped.startswith("eyJ")
    response = client.get("/healthz", headers={"X-Request-ID": shaped})
    assert response.headers["x-request-id"] != shaped


def test_a_dotted_request_id_that_is_not_token_shaped_is_kept(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "trace:1.2"})
    assert response.headers["x-request-id"] == "trace:1.2"


def test_preflights_carry_a_request_id(client: TestClient) -> None:
    response = client.options(
        "/api/tasks",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "X-Request-ID": "preflight-1",
        },
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "preflight-1"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": ORIGIN, "Access-Control-Request-Method": "TRACE"},
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-not-allowed",
        },
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    ],
)
def test_a_refused_preflight_is_problem_json(client: TestClient, headers: dict[str, str]) -> None:
    response = client.options("/api/tasks", headers=headers)
    _problem(response, 400, "cors_refused")
    assert "access-control-allow-origin" not in response.headers


# --- cursors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a\x00b", "\ud800"])
def test_a_forged_cursor_postgres_cannot_compare_is_422_with_errors(
    client: TestClient, alice: Caller, key: str
) -> None:
    raw = json.dumps({"s": "title", "o": "asc", "k": key, "i": 1}).encode()
    response = client.get(
        "/api/tasks", params={"sort": "title", "cursor": _segment(raw)}, headers=alice.headers
    )
    body = _problem(response, 422, "validation_error")
    assert body["errors"] == [
        {"loc": ["query", "cursor"], "msg": "is not a cursor this API issued"}
    ]
