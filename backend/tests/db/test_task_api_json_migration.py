"""sql/0009: each task keeps the JSON the API answers with, rendered by the database on every write.

The database is migrated as the service's login role (not a superuser, so RLS is forced on it too)
up to just before 0009, tasks are written the way requests wrote them, then 0009 is applied: every
existing row gets exactly the text the statements used to build on each read, without moving its
`updated_at` or `version` (an ETag a client holds stays valid). From then on every insert and
update, whatever it changes, leaves `api_json` equal to a fresh rendering of the row. Its rollback
gives the 0008 table back.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.databases import create_scratch_database
from tests.support.migrations import database_before, roll_back_through
from tests.support.postgres import PostgresServer
from tests.support.request_role import as_request_role, begin_request
from tests.support.tokens import new_user_id
from todo_api import migrations

API_JSON_MIGRATION = "0009_task_api_json"

# What the task statements built on every read before 0009 (services/task_service.py at 0008).
_RENDERED_BEFORE = """
select row_to_json(task)::text from (
    select t.id, t.user_id, t.title, t.description, t.completed, t.due_date,
    to_char(t.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as created_at,
    to_char(t.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as updated_at
) task
"""
_STATE = (
    "select t.id, t.version, t.updated_at, (" + _RENDERED_BEFORE + ") from tasks t order by t.id"
)

TASKS: list[dict[str, Any]] = [
    {"title": "plain", "description": None, "completed": False, "due_date": None},
    {
        "title": 'quotes " and \\ back',
        "description": "line\nbreak",
        "completed": True,
        "due_date": date(2026, 12, 31),
    },
    {
        "title": "用户 émoji 🎉",
        "description": "\u200b zero width",
        "completed": False,
        "due_date": date(1, 1, 1),
    },
]


@pytest.fixture
def database_before_api_json(postgres_server: PostgresServer) -> str:
    return database_before(postgres_server.admin_url, API_JSON_MIGRATION, prefix="todo_api_json")


def _write_tasks(url: str, user_id: str) -> None:
    with as_request_role(url, user_id) as conn:
        for task in TASKS:
            conn.execute(
                "insert into tasks (user_id, title, description, completed, due_date)"
                " values (%(user_id)s, %(title)s, %(description)s, %(completed)s, %(due_date)s)",
                {"user_id": user_id, **task},
            )
        # A task that was edited: version 3, updated_at after created_at.
        conn.execute("update tasks set completed = not completed where title = 'plain'")
        conn.execute("update tasks set completed = not completed where title = 'plain'")
        conn.commit()


def _state(url: str, user_id: str) -> list[tuple[Any, ...]]:
    with as_request_role(url, user_id) as conn:
        return conn.execute(_STATE).fetchall()


def _api_json(url: str, user_id: str) -> list[tuple[int, str]]:
    with as_request_role(url, user_id) as conn:
        return conn.execute("select id, api_json from tasks order by id").fetchall()


def test_existing_tasks_get_the_json_the_api_answered_with_and_keep_their_versions(
    database_before_api_json: str,
) -> None:
    url, user_id = database_before_api_json, new_user_id()
    _write_tasks(url, user_id)
    before = _state(url, user_id)
    assert [version for _, version, _, _ in before] == [3, 1, 1]

    migrations.apply(url)

    assert _state(url, user_id) == before  # versions, updated_at and the rendering unchanged
    assert _api_json(url, user_id) == [(task_id, text) for task_id, _, _, text in before]


def test_the_rollback_gives_the_0008_table_back(database_before_api_json: str) -> None:
    url, user_id = database_before_api_json, new_user_id()
    _write_tasks(url, user_id)
    before = _state(url, user_id)
    migrations.apply(url)

    roll_back_through(url, API_JSON_MIGRATION)

    assert _state(url, user_id) == before
    with as_request_role(url, user_id) as conn, pytest.raises(psycopg.errors.UndefinedColumn):
        conn.execute("select api_json from tasks")
    migrations.apply(url)  # and it applies again
    assert _api_json(url, user_id) == [(task_id, text) for task_id, _, _, text in before]


@pytest.fixture(scope="module")
def migrated(postgres_server: PostgresServer) -> str:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_api_json_writes")
    migrations.apply(url)
    return url


_titles = st.text(min_size=1, max_size=40).map(str.strip).filter(bool)
_texts = st.none() | st.text(max_size=60)
_dates = st.none() | st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
_writes = st.lists(
    st.fixed_dictionaries(
        {
            "title": st.none() | _titles,
            "description": st.just("keep") | _texts,
            "completed": st.none() | st.booleans(),
            "due_date": st.just("keep") | _dates,
        }
    ),
    max_size=4,
)


def _storable(value: str | None) -> bool:
    return value is None or (
        "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=_titles, description=_texts, due_date=_dates, writes=_writes)
def test_every_write_leaves_api_json_equal_to_a_fresh_rendering(
    migrated: str,
    title: str,
    description: str | None,
    due_date: date | None,
    writes: list[dict[str, Any]],
) -> None:
    values = [title, description, *(w["title"] for w in writes)]
    values += [w["description"] for w in writes if w["description"] != "keep"]
    if not all(_storable(v) for v in values):
        return  # the API refuses these before the database (tests/api/test_input_agrees_...)
    user_id = new_user_id()
    check = "select api_json = (" + _RENDERED_BEFORE + "), version from tasks t"
    # Each write in a transaction of its own, as requests make them: updated_at moves with each.
    with psycopg.connect(migrated) as conn:
        try:
            begin_request(conn, user_id).execute(
                "insert into tasks (user_id, title, description, due_date) values (%s, %s, %s, %s)",
                (user_id, title, description, due_date),
            )
        except psycopg.errors.CheckViolation:
            return  # a title the table's checks refuse (the API refuses it too)
        conn.commit()
        assert begin_request(conn, user_id).execute(check).fetchall() == [(True, 1)]
        conn.commit()
        for version, write in enumerate(writes, start=2):
            keep_description, keep_due_date = (
                write["description"] == "keep",
                write["due_date"] == "keep",
            )
            try:
                begin_request(conn, user_id).execute(
                    "update tasks set title = coalesce(%s, title),"
                    " description = case when %s then description else %s end,"
                    " completed = coalesce(%s, completed),"
                    " due_date = case when %s then due_date else %s::date end",
                    (
                        write["title"],
                        keep_description,
                        None if keep_description else write["description"],
                        write["completed"],
                        keep_due_date,
                        None if keep_due_date else write["due_date"],
                    ),
                )
            except psycopg.errors.CheckViolation:
                return
            conn.commit()
            assert begin_request(conn, user_id).execute(check).fetchall() == [(True, version)]
            conn.commit()
