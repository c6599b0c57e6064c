"""sql/0005: revocations recorded before it (raw `jti:<jti>` rows) stay in force after it.

The database is migrated as the service's login role (not a superuser, so RLS is forced on it too)
up to just before 0005, revocations are recorded the way the old code did, then 0005 is applied
and the real app is asked about those tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.support.migrations import database_before, roll_back_through
from tests.support.postgres import PostgresServer
from tests.support.request_role import as_request_role
from tests.support.tokens import make_token, new_user_id
from todo_api import migrations
from todo_api.config import Settings
from todo_api.main import create_app
from todo_api.security.verifier import token_id

DIGEST_MIGRATION = "0005_revocation_token_digest"
ME = "/api/users/me"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def database_before_digests(postgres_server: PostgresServer) -> str:
    return database_before(postgres_server.admin_url, DIGEST_MIGRATION, prefix="todo_digest")


def _app_client(settings: Settings, url: str) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update={"database_url": SecretStr(url)})),
        raise_server_exceptions=False,
    )


def _record_old_style(url: str, user_id: str, jti: str) -> None:
    with as_request_role(url, user_id) as conn:
        conn.execute(
            "insert into revoked_tokens (user_id, token_id, expires_at)"
            " values (%s, %s, now() + interval '1 hour')",
            (user_id, f"jti:{jti}"),
        )
        conn.commit()


def _stored_ids(url: str, user_id: str) -> set[str]:
    with as_request_role(url, user_id) as conn:
        rows = conn.execute(
            "select token_id from revoked_tokens where user_id = %s", (user_id,)
        ).fetchall()
    return {row[0] for row in rows}


def test_tokens_revoked_by_jti_before_the_digest_migration_stay_revoked(
    database_before_digests: str, settings: Settings
) -> None:
    url = database_before_digests
    user_id = new_user_id()
    revoked_jtis = ["plain", "ünïcødé-😀", "x" * 296]
    for jti in revoked_jtis:
        _record_old_style(url, user_id, jti)

    migrations.apply(url)

    assert _stored_ids(url, user_id) == {token_id("", {"jti": jti}) for jti in revoked_jtis}
    with _app_client(settings, url) as client:
        for jti in revoked_jtis:
            response = client.get(ME, headers=_bearer(make_token(user_id, jti=jti)))
            assert response.status_code == 401, response.text
            assert response.json()["code"] == "token_revoked"
        assert client.get(ME, headers=_bearer(make_token(user_id, jti="fresh"))).status_code == 200


def test_the_digest_column_refuses_anything_but_the_two_digest_shapes(
    database_before_digests: str,
) -> None:
    url = database_before_digests
    migrations.apply(url)
    user_id = new_user_id()
    for bad in ("jti:raw", "sha256:" + "0" * 63, "SHA256:" + "0" * 64, "jti-sha256:" + "g" * 64):
        with as_request_role(url, user_id) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "insert into revoked_tokens (user_id, token_id, expires_at)"
                " values (%s, %s, now() + interval '1 hour')",
                (user_id, bad),
            )


def test_rolling_back_the_digest_migration_fails_closed_with_a_revoke_all_marker(
    database_before_digests: str, settings: Settings
) -> None:
    """The raw jti cannot be recovered from its digest, so the older code could not recognise the
    token; the rollback refuses all the user's tokens up to then instead of letting it through."""
    url = database_before_digests
    migrations.apply(url)
    revoked_user, untouched_user = new_user_id(), new_user_id()
    revoked = make_token(revoked_user, jti="revoked-while-0005-was-applied")
    untouched = make_token(untouched_user, jti="never-revoked")
    with _app_client(settings, url) as client:
        assert client.delete("/api/users/me/token", headers=_bearer(revoked)).status_code == 204

    roll_back_through(url, DIGEST_MIGRATION)

    # Even a token of that user issued right now is refused at the request's entry point.
    with (
        pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="token revoked"),
        as_request_role(url, revoked_user, issued_at=datetime.now(UTC)),
    ):
        pass
    with as_request_role(url, untouched_user) as conn:
        assert conn.execute("select count(*) from user_token_revocations").fetchone() == (0,)

    # Applied again, the exact revocation is back, and the untouched user was never affected.
    migrations.apply(url)
    with _app_client(settings, url) as client:
        response = client.get(ME, headers=_bearer(revoked))
        assert response.json()["code"] == "token_revoked"
        assert client.get(ME, headers=_bearer(untouched)).status_code == 200
