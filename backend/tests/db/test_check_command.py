"""`todo-api check`: a readable report, exit 0 on a safe database and 1 on an unsafe one."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import PostgresServer, create_scratch_database
from todo_api import migrations
from todo_api.cli import main


def _check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    return int(exit_info.value.code or 0), capsys.readouterr().out


def test_check_passes_a_migrated_database_and_names_everything(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _check(monkeypatch, capsys, database_url)
    assert code == 0, report
    for table in ("tasks", "revoked_tokens", "user_token_revocations"):
        assert f"  {table}: rls_enabled=True rls_forced=True" in report
    for policy in ("tasks_select (select", "tasks_insert (insert", "tasks_update (update",
                   "tasks_delete (delete"):  # fmt: skip
        assert f"policy {policy}, to todo_app)" in report
    for attribute in ("superuser: False", "bypassrls: False", "can_login: False"):
        assert attribute in report
    assert "SAFE" in report
    assert "Migrations: at head" in report


@pytest.fixture
def scratch_url(postgres_server: PostgresServer) -> str:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_check")
    migrations.apply(url)
    return url


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        (
            "alter table tasks no force row level security",
            "tasks: row-level security is not force",
        ),
        (
            "alter table tasks disable row level security",
            "tasks: row-level security is not enabled",
        ),
        ("drop policy tasks_delete on tasks", "tasks: delete is granted to todo_app without"),
        (
            # A policy for another role does not cover the request role's commands.
            "drop policy tasks_delete on tasks;"
            " create policy other_delete on tasks for delete to todo_maintenance using (true)",
            "tasks: delete is granted to todo_app without",
        ),
    ],
)
def test_check_fails_a_database_where_rls_could_be_bypassed(
    scratch_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    breakage: str,
    problem: str,
) -> None:
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(breakage)  # type: ignore[arg-type]
    code, report = _check(monkeypatch, capsys, scratch_url)
    assert code == 1
    assert "UNSAFE" in report
    assert problem in report


def test_check_fails_when_the_request_role_can_bypass_rls(
    scratch_url: str,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Roles are cluster-wide: restore the attribute whatever happens.
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
        admin.execute("alter role todo_app bypassrls")
        try:
            code, report = _check(monkeypatch, capsys, scratch_url)
        finally:
            admin.execute("alter role todo_app nobypassrls")
    assert code == 1
    assert "role todo_app has BYPASSRLS" in report
    assert "bypassrls: True" in report


def test_check_reports_an_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:pw@127.0.0.1:1/none")
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "database unreachable" in error
    assert "pw" not in error
