"""T005/T006: a protected endpoint through the real app with a valid, an invalid and no token.

Also: authentication happens before any database work, so a refused request never takes a pooled
connection, and gets its 401 even while the database is unreachable.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.support.jwks_server import running_app
from tests.support.tokens import TEST_SECRET, make_token, new_user_id
from todo_api.config import Settings

ME = "/api/users/me"


def test_a_valid_token_reaches_the_protected_endpoint(client: TestClient) -> None:
    user_id = new_user_id()
    token = make_token(user_id, email="grace@example.com", name="Grace Hopper")
    response = client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["email"], body["name"]) == (
        user_id,
        "grace@example.com",
        "Grace Hopper",
    )


def test_an_invalid_token_is_refused_with_invalid_token(client: TestClient) -> None:
    token = make_token()[:-4] + "AAAA"
    response = client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_token"
    assert response.headers["www-authenticate"] == (
        'Bearer realm="todo-api", error="invalid_token", '
        'error_description="The token\'s signature is not valid."'
    )
    assert token not in response.text


def test_a_missing_token_is_refused_with_missing_token(client: TestClient) -> None:
    response = client.get(ME)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "missing_token"
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["www-authenticate"] == 'Bearer realm="todo-api"'


def test_a_refusal_keeps_its_cors_headers(client: TestClient) -> None:
    response = client.get(ME, headers={"Origin": "http://localhost:3000"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_openapi_documents_the_bearer_scheme_on_protected_routes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemes: dict[str, Any] = document["components"]["securitySchemes"]
    [(name, scheme)] = [(n, s) for n, s in schemes.items() if s.get("scheme") == "bearer"]
    assert scheme["type"] == "http"
    assert scheme["bearerFormat"] == "JWT"
    assert {name: []} in document["paths"][ME]["get"]["security"]
    assert document["paths"]["/healthz"]["get"]["security"] == []  # public, and says so


def _pool_requests(client: TestClient) -> int:
    stats: dict[str, int] = client.app.state.database.pool.get_stats()  # type: ignore[attr-defined]
    return stats.get("requests_num", 0)


def test_a_refused_request_takes_no_database_connection(client: TestClient) -> None:
    before = _pool_requests(client)
    expired = make_token(ttl_seconds=-3600)
    for headers in (
        {},
        {"Authorization": "Bearer garbage"},
        {"Authorization": f"Bearer {expired}"},
    ):
        assert client.get(ME, headers=headers).status_code == 401
    assert _pool_requests(client) == before
    # The counter does move for an authenticated request: the check above can fail.
    assert client.get(ME, headers={"Authorization": f"Bearer {make_token()}"}).status_code == 200
    assert _pool_requests(client) == before + 1


def test_authentication_answers_while_the_database_is_unreachable(settings: Settings) -> None:
    unreachable = settings.model_copy(
        update={
            "database_url": SecretStr("postgresql://todo_login:x@127.0.0.1:1/nowhere"),
            "better_auth_secret": SecretStr(TEST_SECRET),
            "db_pool_min_size": 0,
            "db_pool_timeout_seconds": 0.5,
        }
    )
    with running_app(unreachable) as client:
        assert client.get(ME).json()["code"] == "missing_token"
        bad = client.get(ME, headers={"Authorization": "Bearer not.a.token"})
        assert bad.json()["code"] == "invalid_token"
        expired = make_token(ttl_seconds=-3600)
        assert client.get(ME, headers={"Authorization": f"Bearer {expired}"}).json()["code"] == (
            "token_expired"
        )
        # A valid token gets as far as the database, which is really down.
        response = client.get(ME, headers={"Authorization": f"Bearer {make_token()}"})
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
