"""Two `todo-api serve` replicas on one database: a revocation through one holds on the other.

Each replica remembers verified tokens (security.verifier); the revocation lives in Postgres and
is checked inside every request transaction, so the cache cannot let a revoked token through.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import Server, start_serve
from tests.support.tokens import make_token, new_user_id


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[list[Server]]:
    cwd: Path = tmp_path_factory.mktemp("replicas")
    servers: list[Server] = []
    try:
        for _ in range(2):
            servers.append(start_serve(cwd, database_url))
        yield servers
    finally:
        for server in servers:
            server.stop()


def _me(server: Server, token: str) -> httpx.Response:
    return server.get("/api/users/me", token)


def _delete(server: Server, path: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.delete(f"{server.base_url}{path}", headers=headers, timeout=10.0)


def _assert_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "token_revoked"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_token_revoked_on_one_replica_is_refused_by_the_other_at_once(
    replicas: list[Server],
) -> None:
    first, second = replicas
    user_id = new_user_id()
    revoked = make_token(user_id, jti="revoked-across-replicas")
    kept = make_token(user_id, jti="kept-across-replicas")
    for server in replicas:  # both replicas have verified and remembered both tokens
        for token in (revoked, kept):
            assert _me(server, token).status_code == 200

    assert _delete(first, "/api/users/me/token", revoked).status_code == 204

    _assert_revoked(_me(second, revoked))  # the very next request, no waiting
    _assert_revoked(_me(first, revoked))
    for server in replicas:
        assert _me(server, kept).status_code == 200


def test_revoke_all_on_one_replica_refuses_every_older_token_on_the_other(
    replicas: list[Server],
) -> None:
    first, second = replicas
    user_id = new_user_id()
    tokens = [make_token(user_id, jti=f"session-{n}") for n in range(3)]
    bystander = make_token(new_user_id())
    for server in replicas:
        for token in (*tokens, bystander):
            assert _me(server, token).status_code == 200

    assert _delete(second, "/api/users/me/tokens", tokens[0]).status_code == 204

    for token in tokens:
        _assert_revoked(_me(first, token))
        _assert_revoked(_me(second, token))
    assert _me(first, bystander).status_code == 200
    # Signing in again afterwards (a later iat) works on both replicas.
    time.sleep(1.05)  # iat has one-second resolution: "at or before the revoke-all" is refused
    fresh = make_token(user_id)
    for server in replicas:
        assert _me(server, fresh).status_code == 200
