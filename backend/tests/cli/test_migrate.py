"""`todo-api migrate [apply|status|rollback [--all]]` against DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import clean_env, one_error_line, run_cli
from tests.support.databases import create_scratch_database
from tests.support.network import free_port
from tests.support.postgres import PostgresServer
from todo_api import migrations


def _migrate(tmp_path: Path, url: str, *args: str) -> list[str]:
    result = run_cli("migrate", *args, cwd=tmp_path, env=clean_env(DATABASE_URL=url))
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_migrate_applies_reports_rolls_back_and_applies_again(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_cli_migrate")
    ids = [m.id for m in migrations.on_disk()]
    try:
        assert _migrate(tmp_path, url, "status") == [f"pending  {i}" for i in ids]
        assert _migrate(tmp_path, url) == ["applied: " + ", ".join(ids)]
        assert _migrate(tmp_path, url, "status") == [f"applied  {i}" for i in ids]
        assert _migrate(tmp_path, url, "apply") == ["applied: nothing (already at head)"]

        assert _migrate(tmp_path, url, "rollback") == [f"rolled back: {ids[-1]}"]
        assert _migrate(tmp_path, url, "status")[-1] == f"pending  {ids[-1]}"
        assert migrations.pending(url) == [ids[-1]]

        undone = _migrate(tmp_path, url, "rollback", "--all")
        assert undone == ["rolled back: " + ", ".join(reversed(ids[:-1]))]
        assert migrations.pending(url) == ids
        assert _migrate(tmp_path, url, "rollback") == ["rolled back: nothing"]

        assert _migrate(tmp_path, url, "apply") == ["applied: " + ", ".join(ids)]
        assert migrations.pending(url) == []
    finally:
        # Rolling back the first migration revokes todo_app from the (cluster-wide) login role;
        # re-applying grants it back, so the other tests' databases keep working.
        migrations.apply(url)


def test_migrate_against_an_unreachable_database_prints_one_line(tmp_path: Path) -> None:
    url = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/todo?connect_timeout=2"
    result = run_cli("migrate", "status", cwd=tmp_path, env=clean_env(DATABASE_URL=url))
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "database unreachable" in line
    assert "pw@" not in line


def test_migrate_without_a_postgres_url_names_the_variable(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path, env=clean_env(DATABASE_URL="mysql://u:p@h/db"))
    assert result.returncode == 2
    assert "DATABASE_URL" in one_error_line(result.stderr)
