"""DELETE /api/users/me/token and /api/users/me/tokens: revoked tokens are refused everywhere."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.request_role import as_request_role
from tests.support.tokens import TEST_SECRET, Caller, make_token, new_user_id
from todo_api.security.verifier import token_id

EXPIRED_ID = token_id("", {"jti": "expired"})
LIVE_ID = token_id("", {"jti": "live"})

_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _raw_token(claims: dict[str, Any]) -> str:
    """A correctly signed token with exactly these claims (no iat added)."""
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def _escaped_token(claims: dict[str, Any]) -> str:
    """Signed over JSON written here, so a lone surrogate travels as its `\\ud800` escape."""
    payload = json.dumps(claims, ensure_ascii=True).encode()
    return jwt.PyJWS().encode(payload, TEST_SECRET, algorithm="HS256")


def _every_api_request(app: FastAPI, user_id: str) -> Iterator[tuple[str, str]]:
    """(method, path) of every authenticated route, with the caller's id in the path."""
    for template, operations in app.openapi()["paths"].items():
        if template.startswith("/api/"):
            path = template.replace("{user_id}", user_id).replace("{task_id}", "1")
            for method in operations:
                yield method.upper(), path


def _assert_revoked(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "token_revoked"
    assert response.headers["www-authenticate"].startswith('Bearer realm="todo-api"')


@pytest.mark.parametrize("jti", [None, "jti-of-the-revoked-token"])
def test_a_revoked_token_is_refused_on_every_route_while_another_token_works(
    client: TestClient, app: FastAPI, jti: str | None
) -> None:
    user_id = new_user_id()
    revoked = make_token(user_id, **({"jti": jti} if jti else {}))
    other = make_token(user_id, jti="jti-of-another-token")

    response = client.delete("/api/users/me/token", headers=_bearer(revoked))
    assert response.status_code == 204
    assert response.content == b""

    requests = list(_every_api_request(app, user_id))
    assert {"/api/users/me", "/api/users/me/token", "/api/users/me/tokens"} <= {
        path for _, path in requests
    }
    for method, path in requests:
        body = {"title": "refused"} if method in _BODY_METHODS else None
        _assert_revoked(client.request(method, path, headers=_bearer(revoked), json=body))

    me = client.get("/api/users/me", headers=_bearer(other))
    assert me.status_code == 200
    # The refusal aborts the request's transaction: nothing a revoked request sent was written.
    assert me.json()["tasks"]["total"] == 0


def test_revoking_a_token_does_not_touch_other_users(
    client: TestClient, alice: Caller, bob: Caller
) -> None:
    assert client.delete("/api/users/me/token", headers=alice.headers).status_code == 204
    assert client.delete("/api/users/me/tokens", headers=alice.headers).status_code == 401

    assert client.get("/api/users/me", headers=bob.headers).status_code == 200


def test_revoke_all_refuses_older_tokens_and_tokens_without_iat(
    client: TestClient, bob: Caller
) -> None:
    user_id = new_user_id()
    now = int(time.time())
    presented = make_token(user_id)
    older = _raw_token({"sub": user_id, "iat": now - 600, "exp": now + 3600})
    without_iat = _raw_token({"sub": user_id, "exp": now + 3600})
    assert client.get("/api/users/me", headers=_bearer(without_iat)).status_code == 200

    response = client.delete("/api/users/me/tokens", headers=_bearer(presented))
    assert response.status_code == 204

    for token in (presented, older, without_iat):
        _assert_revoked(client.get("/api/users/me", headers=_bearer(token)))
    # Signing in again: a token issued after the revoke-all works.
    newer = _raw_token({"sub": user_id, "iat": int(time.time()) + 1, "exp": now + 3600})
    assert client.get("/api/users/me", headers=_bearer(newer)).status_code == 200
    # Another user's tokens, with or without iat, are untouched.
    bob_without_iat = _raw_token({"sub": bob.id, "exp": now + 3600})
    assert client.get("/api/users/me", headers=bob.headers).status_code == 200
    assert client.get("/api/users/me", headers=_bearer(bob_without_iat)).status_code == 200


@pytest.mark.parametrize("exp", [2**70, 1e300, 253402300799])
def test_an_absurd_expiry_never_causes_a_server_error(client: TestClient, exp: float) -> None:
    user_id = new_user_id()
    token = _raw_token({"sub": user_id, "iat": int(time.time()), "exp": exp})

    response = client.delete("/api/users/me/token", headers=_bearer(token))

    assert response.status_code in (204, 401), response.text
    if response.status_code == 204:
        _assert_revoked(client.get("/api/users/me", headers=_bearer(token)))


def test_revocations_are_logged_as_security_events(
    client: TestClient, alice: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    second = Caller(alice.id, make_token(alice.id, jti="second"))
    with caplog.at_level(logging.INFO, logger="todo_api.security"):
        assert client.delete("/api/users/me/token", headers=alice.headers).status_code == 204
        assert client.delete("/api/users/me/tokens", headers=second.headers).status_code == 204

    events = {
        str(getattr(r, "event", "")): r
        for r in caplog.records
        if str(getattr(r, "event", "")).startswith("token")
    }
    for name, path in (
        ("token_revoked", "/api/users/me/token"),
        ("tokens_revoked_all", "/api/users/me/tokens"),
    ):
        record: Any = events[name]
        assert record.user_id == alice.id
        assert record.method == "DELETE"
        assert record.path == path
        assert record.request_id not in ("", "-")
    assert all(alice.token not in r.getMessage() for r in caplog.records)


def test_expired_revocations_of_every_user_are_purged(
    client: TestClient, database_url: str, alice: Caller, new_caller: Callable[[], Caller]
) -> None:
    other = new_caller()
    insert = (
        "insert into revoked_tokens (user_id, token_id, expires_at)"
        " values (%s, %s, now() - interval '1 minute'), (%s, %s, now() + interval '1 hour')"
    )
    with as_request_role(database_url, other.id) as conn:
        conn.execute(insert, (other.id, EXPIRED_ID, other.id, LIVE_ID))
        conn.commit()

    assert client.delete("/api/users/me/token", headers=alice.headers).status_code == 204

    with as_request_role(database_url, other.id) as conn:
        rows = conn.execute(
            "select token_id from revoked_tokens where user_id = %s", (other.id,)
        ).fetchall()
    assert [row[0] for row in rows] == [LIVE_ID]


def test_the_purge_function_reveals_nothing_and_deletes_only_expired_rows(
    database_url: str, new_caller: Callable[[], Caller]
) -> None:
    owner, intruder = new_caller(), new_caller()
    with as_request_role(database_url, owner.id) as conn:
        conn.execute(
            "insert into revoked_tokens (user_id, token_id, expires_at)"
            " values (%s, %s, now() + interval '1 hour')",
            (owner.id, LIVE_ID),
        )
        conn.commit()
    with as_request_role(database_url, intruder.id) as conn:
        # As the request role, another user's revocations stay invisible, and requests may not
        # delete revocations at all (sql/0006): only the purge function removes expired ones.
        visible = conn.execute(
            "select count(*) from revoked_tokens where user_id = %s", (owner.id,)
        ).fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("delete from revoked_tokens where user_id = %s", (owner.id,))
        purged = conn.execute("select todo_purge_expired_revocations()").fetchone()
        conn.commit()
        assert visible == (0,)
        assert purged is not None
    with as_request_role(database_url, owner.id) as conn:
        kept = conn.execute(
            "select token_id from revoked_tokens where user_id = %s", (owner.id,)
        ).fetchall()
    assert kept == [(LIVE_ID,)]


@pytest.mark.parametrize("length", [1, 255, 300, 301, 4000])
def test_a_jti_of_any_length_is_revocable_and_only_that_jti_is_refused(
    client: TestClient, length: int
) -> None:
    user_id = new_user_id()
    jti = "j" * length
    token = make_token(user_id, jti=jti)
    # Same length, differing in the last character: a prefix or a truncation must not collide.
    sibling = make_token(user_id, jti=jti[:-1] + "k")

    response = client.delete("/api/users/me/token", headers=_bearer(token))

    assert response.status_code == 204, response.text
    _assert_revoked(client.get("/api/users/me", headers=_bearer(token)))
    assert client.get("/api/users/me", headers=_bearer(sibling)).status_code == 200


@pytest.mark.parametrize(
    "jti", ["\x00", "nul\x00inside", "\ud800", "a\udfffb", "\U0001f600", "e\u0301", " \t\n"]
)
def test_a_jti_postgres_text_cannot_hold_is_still_revocable(client: TestClient, jti: str) -> None:
    user_id = new_user_id()
    now = int(time.time())
    token = _escaped_token({"sub": user_id, "iat": now, "exp": now + 3600, "jti": jti})
    other = _escaped_token({"sub": user_id, "iat": now, "exp": now + 3600, "jti": jti + "x"})
    assert client.get("/api/users/me", headers=_bearer(token)).status_code == 200

    assert client.delete("/api/users/me/token", headers=_bearer(token)).status_code == 204

    _assert_revoked(client.get("/api/users/me", headers=_bearer(token)))
    assert client.get("/api/users/me", headers=_bearer(other)).status_code == 200


def test_an_empty_jti_names_no_token_so_the_token_itself_is_revoked(client: TestClient) -> None:
    """Two tokens both carrying `jti: ""` are different tokens; revoking one spares the other."""
    user_id = new_user_id()
    now = int(time.time())
    token = _raw_token({"sub": user_id, "iat": now, "exp": now + 3600, "jti": ""})
    other = _raw_token({"sub": user_id, "iat": now, "exp": now + 3601, "jti": ""})

    assert client.delete("/api/users/me/token", headers=_bearer(token)).status_code == 204

    _assert_revoked(client.get("/api/users/me", headers=_bearer(token)))
    assert client.get("/api/users/me", headers=_bearer(other)).status_code == 200


def test_revocations_are_stored_as_fixed_size_digests_never_the_raw_jti(
    client: TestClient, database_url: str
) -> None:
    user_id = new_user_id()
    jti = "secret-looking-jti-" + "z" * 500
    tokens = [make_token(user_id, jti=jti), make_token(user_id)]
    for token in tokens:
        assert client.delete("/api/users/me/token", headers=_bearer(token)).status_code == 204

    with as_request_role(database_url, user_id) as conn:
        stored = {
            row[0]
            for row in conn.execute(
                "select token_id from revoked_tokens where user_id = %s", (user_id,)
            ).fetchall()
        }
    assert len(stored) == 2
    assert all(len(token_id) in (71, 75) for token_id in stored)
    assert not any(jti[:20] in token_id for token_id in stored)
    assert not any(token in token_id for token_id in stored for token in tokens)
