"""The order of the checks (401, then 403, then 422) and the request-body limit (413).

These drive the ASGI app directly with a `receive` that counts what the app read, so "the body
is never read" is observed, not assumed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.live_server import live_server
from tests.support.tokens import Caller
from todo_api.config import Settings
from todo_api.main import create_app

pytestmark = pytest.mark.anyio

FIFTY_MB = 50 * 1024 * 1024


@dataclass
class AsgiResult:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks_read: int = 0
    bytes_read: int = 0
    problem: dict[str, object] = field(default_factory=dict)


async def call(
    app: FastAPI,
    method: str,
    path: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    chunks: Sequence[bytes] = (),
    content_length: int | None = None,
) -> AsgiResult:
    """One request straight into the app; the body is served chunk by chunk and counted."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers]
    if content_length is not None:
        raw_headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    result = AsgiResult(0, {}, b"")
    pending = list(chunks)

    async def receive() -> dict[str, object]:
        result.chunks_read += 1
        chunk = pending.pop(0) if pending else b""
        result.bytes_read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            result.status = int(message["status"])  # type: ignore[call-overload]
            pairs = message.get("headers", [])
            result.headers = {k.decode(): v.decode() for k, v in pairs}  # type: ignore[attr-defined]
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")  # type: ignore[operator]

    await app(scope, receive, send)
    if result.headers.get("content-type") == "application/problem+json":
        result.problem = json.loads(result.body)
    return result


def _json_headers(caller: Caller | None = None) -> list[tuple[str, str]]:
    headers = [("content-type", "application/json")]
    if caller is not None:
        headers.append(("authorization", f"Bearer {caller.token}"))
    return headers


async def test_a_missing_token_is_401_before_a_malformed_body_is_read(async_app: FastAPI) -> None:
    result = await call(async_app, "POST", "/api/tasks", headers=_json_headers(), chunks=[b"{bad"])
    assert result.status == 401
    assert result.problem["code"] == "missing_token"
    assert result.bytes_read == 0


async def test_another_users_path_is_403_before_a_malformed_body_is_read(
    async_app: FastAPI, alice: Caller, bob: Caller
) -> None:
    result = await call(
        async_app, "POST", f"/api/{bob.id}/tasks", headers=_json_headers(alice), chunks=[b"{bad"]
    )
    assert result.status == 403
    assert result.problem["code"] == "forbidden"
    assert result.bytes_read == 0


async def test_a_malformed_body_with_a_valid_token_is_422(
    async_app: FastAPI, alice: Caller
) -> None:
    result = await call(
        async_app, "POST", f"/api/{alice.id}/tasks", headers=_json_headers(alice), chunks=[b"{bad"]
    )
    assert result.status == 422
    assert result.problem["code"] == "validation_error"
    assert result.problem["errors"]


@pytest.mark.parametrize(
    "route",
    [
        ("POST", "/api/tasks"),
        ("PUT", "/api/tasks/1"),
        ("PATCH", "/api/tasks/1"),
        ("PATCH", "/api/tasks/1/complete"),
    ],
)
async def test_a_huge_body_without_a_token_is_refused_with_401_unread(
    async_app: FastAPI, route: tuple[str, str]
) -> None:
    method, path = route
    result = await call(
        async_app,
        method,
        path,
        headers=_json_headers(),
        chunks=[b"x" * 1024] * 4,
        content_length=FIFTY_MB,
    )
    assert result.status == 401
    assert result.bytes_read == 0


async def test_a_declared_length_over_the_limit_is_413_without_reading_it(
    async_app: FastAPI, alice: Caller
) -> None:
    result = await call(
        async_app,
        "POST",
        "/api/tasks",
        headers=_json_headers(alice),
        chunks=[b"x" * 1024],
        content_length=FIFTY_MB,
    )
    assert result.status == 413
    assert result.problem["code"] == "payload_too_large"
    assert result.problem["request_id"] == result.headers["x-request-id"]
    assert result.bytes_read == 0


async def test_a_streamed_body_is_cut_off_at_the_limit(
    async_app: FastAPI, alice: Caller, settings: Settings
) -> None:
    chunk = b" " * 16 * 1024
    chunks = [chunk] * 1000  # 16 MB offered, no Content-Length (chunked)
    result = await call(
        async_app, "POST", "/api/tasks", headers=_json_headers(alice), chunks=chunks
    )
    assert result.status == 413
    assert result.problem["code"] == "payload_too_large"
    # It stops at the first chunk past the limit.
    assert result.bytes_read <= settings.max_body_bytes + len(chunk)


def test_a_body_at_the_limit_is_accepted_and_one_byte_more_is_not(
    settings: Settings, new_caller: Callable[[], Caller]
) -> None:
    small = settings.model_copy(update={"max_body_bytes": 300})
    caller = new_caller()
    with TestClient(create_app(small), raise_server_exceptions=False) as client:
        body = json.dumps({"title": "fits"}).encode()
        padded = body[:-1] + b" " * (300 - len(body)) + b"}"
        assert len(padded) == 300
        headers = {**caller.headers, "Content-Type": "application/json"}
        accepted = client.post("/api/tasks", content=padded, headers=headers)
        refused = client.post("/api/tasks", content=padded + b" ", headers=headers)
        assert accepted.status_code == 201, accepted.text
        assert refused.status_code == 413
        assert refused.json()["code"] == "payload_too_large"
        assert refused.headers["content-type"] == "application/problem+json"
        listed = client.get("/api/tasks", headers=caller.headers).json()
        assert [task["title"] for task in listed] == ["fits"]


def test_a_real_server_answers_401_before_a_50_mb_body_arrives(settings: Settings) -> None:
    """Over a socket: headers promising 50 MB and only a few bytes sent; the 401 comes at once."""
    with live_server(create_app(settings)) as base_url:
        host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
        assert host is not None
        assert port is not None
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(
                b"POST /api/tasks HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {FIFTY_MB}\r\n\r\n".encode()
                + b'{"title": "'
            )
            answer = sock.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 401 "), answer
    assert "application/problem+json" in answer
