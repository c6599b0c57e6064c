"""A session of hostile requests: no token, secret or database password in any log or response."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from tests.support.tokens import TEST_SECRET, Caller, make_token
from todo_api.config import Settings
from todo_api.log import configure_logging
from todo_api.main import _secrets_of, create_app

JWT_MARK = "eyJ"  # every JWT starts with the base64 of '{"'


@pytest.fixture
def captured_log(settings: Settings) -> Iterator[io.StringIO]:
    """The root logger exactly as `todo-api serve` configures it, writing into a buffer."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging("DEBUG", secrets=_secrets_of(settings), stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved
        logging.getLogger("uvicorn.access").disabled = False


def _hostile_session(client: TestClient, victim: Caller) -> list[tuple[str, httpx.Response]]:
    now = int(time.time())
    forged = jwt.encode({"sub": victim.id, "exp": now + 60}, "not-the-secret-" * 4, "HS256")
    expired = make_token(victim.id, ttl_seconds=-3600)
    none_alg = jwt.encode({"sub": victim.id, "exp": now + 60}, "", algorithm="none")
    oversized = make_token(victim.id, padding="p" * 9000)
    future = make_token(victim.id, nbf=now + 3600)
    hostile_tokens = [forged, expired, none_alg, oversized, future, victim.token + "x"]
    bearer = victim.headers
    sent: list[tuple[str, httpx.Response]] = []

    def send(label: str, method: str, url: str, **kwargs: object) -> None:
        sent.append((label, client.request(method, url, **kwargs)))  # type: ignore[arg-type]

    for token in hostile_tokens:
        send("bad token", "GET", "/api/users/me", headers={"Authorization": f"Bearer {token}"})
        send("odd scheme", "GET", "/api/tasks", headers={"Authorization": f"Token {token}"})
        send("token in query", "GET", f"/api/tasks?access_token={token}&q={token}")
        send("token as request id", "GET", "/api/tasks", headers={"X-Request-ID": token})
        send("token in cookie", "GET", "/api/users/me", headers={"Cookie": f"session={token}"})
        send("token in path", "GET", f"/api/tasks/{token}", headers=bearer)
        send("token in path, no auth", "GET", f"/api/{token}/tasks")
        send("token in body", "POST", "/api/tasks", headers=bearer, json={"title": 5, "x": token})
    two_headers = [("authorization", f"Bearer {victim.token}"), ("authorization", "Bearer x")]
    send("two Authorization headers", "GET", "/api/users/me", headers=two_headers)
    send("sql in path", "GET", "/api/tasks/1;drop table tasks--", headers=bearer)
    send("sql in query", "GET", "/api/tasks?q=%27%20or%201=1--&sort=title;drop", headers=bearer)
    send("sql in user path", "GET", "/api/' or '1'='1/tasks", headers=bearer)
    send("wrong method", "PUT", "/api/users/me", headers=bearer)
    send("wrong method on token", "GET", "/api/users/me/token", headers=bearer)
    send("huge body", "POST", "/api/tasks", headers=bearer, content=b"{" + b'"a":1,' * 200_000)
    json_headers = {**bearer, "Content-Type": "application/json"}
    send("broken json", "POST", "/api/tasks", headers=json_headers, content=b'{"title": "')
    send("bad request id", "GET", "/healthz", headers={"X-Request-ID": "a b<script>" * 20})
    send("other user's path", "GET", "/api/someone-else/tasks", headers=bearer)
    return sent


def test_hostile_requests_leak_no_token_secret_or_password(
    settings: Settings, victim_password: str, captured_log: io.StringIO, new_caller: object
) -> None:
    victim = new_caller()  # type: ignore[operator]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        sent = _hostile_session(client, victim)

    secrets = {"BETTER_AUTH_SECRET": TEST_SECRET, "database password": victim_password}
    for label, response in sent:
        assert response.status_code < 500, (label, response.status_code, response.text)
        text = response.text + json.dumps(dict(response.headers))
        assert JWT_MARK not in text, f"a token is echoed in the response to: {label}"
        for name, value in secrets.items():
            assert value not in text, f"{name} in the response to: {label}"

    log = captured_log.getvalue()
    lines = [json.loads(line) for line in log.splitlines()]
    assert JWT_MARK not in log, "a token reached the log"
    for name, value in secrets.items():
        assert value not in log, f"{name} reached the log"
    # The lines are there and say what happened, without the secrets.
    events = [line.get("event") for line in lines]
    assert events.count("authentication_failed") >= 20
    assert "access_denied" in events
    (startup,) = [line for line in lines if line.get("event") == "startup_configuration"]
    assert startup["config"]["better_auth_secret"] == "***"
    assert ":***@" in startup["config"]["database_url"]
    for line in lines:
        if line.get("event") in ("authentication_failed", "access_denied"):
            assert {"event", "reason", "method", "path", "client", "request_id"} <= set(line)


@pytest.fixture
def victim_password(settings: Settings) -> str:
    password = urlsplit(settings.database_url.get_secret_value()).password
    assert password
    return password
