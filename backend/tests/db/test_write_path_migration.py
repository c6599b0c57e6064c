"""sql/0011: cheaper writes to tasks, with the same rules and the same stored rows.

The title check names its code points as one literal instead of 25 chr() calls, and one BEFORE
trigger does what tasks_touch_updated_at and tasks_write_api_json did. What a client can observe
must not move: the same titles refused, existing rows untouched, and after every write the row
as the two old triggers left it (updated_at current, version bumped, created_at and user_id kept,
api_json a fresh rendering, byte for byte: tests/db/test_task_api_json_migration.py checks that
for any write on the fully migrated database). The rollback puts back exactly the 0010 objects.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.migrations import database_before, roll_back_through
from tests.support.postgres import PostgresServer
from tests.support.request_role import as_request_role, begin_request
from tests.support.title_constraint import database_title_whitespace
from tests.support.tokens import new_user_id
from todo_api import migrations

MIGRATION = "0011_tasks_write_path"

# Everything 0011 replaces, as the catalog describes it.
_DEFINITIONS = """
select 'constraint', pg_get_constraintdef(c.oid), obj_description(c.oid, 'pg_constraint')
from pg_constraint c where c.conrelid = 'tasks'::regclass and c.contype = 'c'
union all
select 'trigger', pg_get_triggerdef(t.oid), obj_description(t.oid, 'pg_trigger')
from pg_trigger t where t.tgrelid = 'tasks'::regclass and not t.tgisinternal
union all
select 'function', pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc')
from pg_proc p where p.prorettype = 'trigger'::regtype
  and p.pronamespace = 'public'::regnamespace
order by 1, 2
"""
_ROWS = "select id, user_id, version, created_at, updated_at, api_json from tasks order by id"


@pytest.fixture
def before_0011(postgres_server: PostgresServer) -> str:
    return database_before(postgres_server.admin_url, MIGRATION, prefix="todo_write_path")


def _definitions(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(_DEFINITIONS).fetchall()


def _write_some_tasks(url: str, user_id: str) -> list[tuple[Any, ...]]:
    with as_request_role(url, user_id) as conn:
        for title in ("plain", "vivid v", "用户 🎉"):
            conn.execute("insert into tasks (user_id, title) values (%s, %s)", (user_id, title))
        conn.execute("update tasks set completed = true where title = 'plain'")
        rows = conn.execute(_ROWS).fetchall()
        conn.commit()
    assert len(rows) == 3
    return rows


def test_existing_rows_and_refused_titles_stay_as_they_were(before_0011: str) -> None:
    url, user_id = before_0011, new_user_id()
    rows = _write_some_tasks(url, user_id)
    whitespace = database_title_whitespace(url)
    assert len(whitespace) == 25

    migrations.apply(url)

    with as_request_role(url, user_id) as conn:
        assert conn.execute(_ROWS).fetchall() == rows
    assert database_title_whitespace(url) == whitespace


def test_one_trigger_does_what_the_two_did(before_0011: str) -> None:
    migrations.apply(before_0011)
    url, user_id, other = before_0011, new_user_id(), new_user_id()
    with psycopg.connect(url) as conn:
        triggers = conn.execute(
            "select tgname from pg_trigger where tgrelid = 'tasks'::regclass and not tgisinternal"
        ).fetchall()
        assert triggers == [("tasks_before_write",)]
        begin_request(conn, user_id).execute(
            "insert into tasks (user_id, title) values (%s, 'one')", (user_id,)
        )
        conn.commit()
        ((task_id, created, updated, version),) = (
            begin_request(conn, user_id)
            .execute("select id, created_at, updated_at, version from tasks")
            .fetchall()
        )
        conn.commit()
        assert (created, version) == (updated, 1)
        # The owner of the table (not subject to the column grants) tries to move what the
        # trigger keeps: created_at, user_id and version are put back, updated_at moves on.
        conn.execute("alter table tasks no force row level security")
        conn.execute(
            "update tasks set created_at = '2000-01-01', user_id = %s, version = 99,"
            " title = 'two' where id = %s",
            (other, task_id),
        )
        row = conn.execute(
            "select user_id, created_at, updated_at > %s, version, api_json::json->>'title'"
            " from tasks where id = %s",
            (updated, task_id),
        ).fetchone()
        conn.rollback()
    assert row == (user_id, created, True, 2, "two")


def test_the_rollback_gives_the_0010_objects_back(before_0011: str) -> None:
    url, user_id = before_0011, new_user_id()
    before = _definitions(url)
    rows = _write_some_tasks(url, user_id)
    migrations.apply(url)
    assert _definitions(url) != before

    roll_back_through(url, MIGRATION)

    assert _definitions(url) == before
    with as_request_role(url, user_id) as conn:
        assert conn.execute(_ROWS).fetchall() == rows
    migrations.apply(url)  # and it applies again
    assert _definitions(url) != before
