"""0004 replaces the title constraint, and its rollback puts back exactly what was there."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from tests.support.databases import create_scratch_database
from tests.support.postgres import PostgresServer
from todo_api import migrations

MIGRATION = "0004_title_trimmed_portable"


def _title_constraint(url: str) -> tuple[str, str]:
    """The definition of tasks_title_trimmed and its comment."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint')"
            " from pg_constraint"
            " where conrelid = 'tasks'::regclass and conname = 'tasks_title_trimmed'"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_rolling_back_0004_restores_the_constraint_of_0002(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before_dir = tmp_path / "sql"
    before_dir.mkdir()
    for path in migrations.sql_dir().glob("000[123]_*.sql"):
        shutil.copy(path, before_dir)
    before_url = create_scratch_database(postgres_server.admin_url, prefix="todo_before_0004")
    with monkeypatch.context() as patch:
        patch.setenv("TODO_API_SQL_DIR", str(before_dir))
        migrations.apply(before_url)
    before = _title_constraint(before_url)

    url = create_scratch_database(postgres_server.admin_url, prefix="todo_0004")
    migrations.apply(url)
    assert _title_constraint(url) != before
    rolled_back: list[str] = []
    while MIGRATION not in rolled_back:
        undone = migrations.rollback(url)
        assert undone, f"{MIGRATION} was never applied"
        rolled_back += undone
    assert _title_constraint(url) == before

    migrations.apply(url)
    assert _title_constraint(url) != before
