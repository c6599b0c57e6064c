"""Migrations apply, roll back and apply again, through the code `todo-api migrate` uses."""

from __future__ import annotations

import psycopg

from tests.support.databases import create_scratch_database
from tests.support.postgres import PostgresServer
from todo_api import migrations


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
            " and tablename not like '%yoyo%'"
        ).fetchall()
    return {row[0] for row in rows}


def test_apply_rollback_all_and_apply_again_on_a_fresh_database(
    postgres_server: PostgresServer,
) -> None:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_migrate")
    all_ids = [m.id for m in migrations.status(url)]

    assert migrations.apply(url) == all_ids
    assert migrations.pending(url) == []
    assert {"tasks", "revoked_tokens", "user_token_revocations"} <= _tables(url)

    assert migrations.rollback(url, everything=True) == list(reversed(all_ids))
    assert migrations.pending(url) == all_ids
    assert _tables(url) == set()

    assert migrations.apply(url) == all_ids
    assert migrations.pending(url) == []


def test_rollback_undoes_only_the_latest_migration(postgres_server: PostgresServer) -> None:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_migrate")
    all_ids = migrations.apply(url)

    assert migrations.rollback(url) == [all_ids[-1]]
    assert migrations.pending(url) == [all_ids[-1]]
    assert migrations.apply(url) == [all_ids[-1]]
