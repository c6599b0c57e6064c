"""Probes: /healthz needs nothing; /readyz needs the database at head."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.support.databases import create_scratch_database
from tests.support.postgres import PostgresServer
from todo_api import migrations
from todo_api.config import Settings
from todo_api.main import create_app


def test_healthz_is_ok_without_a_token(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_a_migrated_reachable_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok"}


def test_unknown_route_is_a_problem_json_404(client: TestClient) -> None:
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["request_id"] == response.headers["x-request-id"]


def _edit_content(sql: Path) -> None:
    latest = sql / f"{migrations.on_disk()[-1].id}.sql"
    latest.write_text(latest.read_text(encoding="utf-8") + "\n-- edited\n", encoding="utf-8")


def _add_migration(sql: Path) -> None:
    (sql / "9999_not_applied.sql").write_text("select 1;\n", encoding="utf-8")


def _rename_latest(sql: Path) -> None:
    latest = migrations.on_disk()[-1].id
    for suffix in (".sql", ".rollback.sql"):
        (sql / f"{latest}{suffix}").rename(sql / f"{latest}_renamed{suffix}")


@pytest.mark.parametrize(
    ("change", "at_head"),
    [
        (_add_migration, False),
        (_rename_latest, False),
        # yoyo names an applied migration by the hash of its id, not of its content.
        (_edit_content, True),
    ],
    ids=["added", "renamed", "edited"],
)
def test_readyz_and_migrate_status_agree_on_what_at_head_means(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Path], None],
    at_head: bool,
) -> None:
    sql = tmp_path / "sql"
    shutil.copytree(migrations.sql_dir(), sql)
    change(sql)
    monkeypatch.setenv("TODO_API_SQL_DIR", str(sql))

    pending = migrations.pending(settings.database_url.get_secret_value())
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")

    assert (pending == []) is at_head
    if at_head:
        assert response.status_code == 200
    else:
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "database": "migrations_pending"}


def test_readyz_says_migrations_pending_on_a_database_never_migrated(
    settings: Settings, postgres_server: PostgresServer
) -> None:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_unmigrated")
    with TestClient(create_app(settings.model_copy(update={"database_url": SecretStr(url)}))) as c:
        response = c.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "migrations_pending"}
