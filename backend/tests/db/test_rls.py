"""Row-level security, proven at the database: SQL WITHOUT a user predicate, as the request role.

Each test enters a request the way the service does (`select todo_begin_request(...)`: role
todo_app, app.user_id transaction-local) and deliberately omits `where user_id = ...`, so only the
policies in sql/ stand between users.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tests.support.request_role import as_request_role
from tests.support.tokens import make_token, new_user_id
from todo_api.db import Database
from todo_api.safety import inspect_database
from todo_api.services.task_service import LIST_STATEMENTS, SortKey, SortOrder


def _seed(database_url: str, user_id: str, *titles: str) -> None:
    with as_request_role(database_url, user_id) as conn:
        for title in titles:
            conn.execute("insert into tasks (user_id, title) values (%s, %s)", (user_id, title))
        conn.commit()


def test_a_user_sees_only_their_rows_without_any_user_predicate(database_url: str) -> None:
    alice, bob = new_user_id(), new_user_id()
    _seed(database_url, alice, "a1", "a2")
    _seed(database_url, bob, "b1")
    with as_request_role(database_url, alice) as conn:
        rows = conn.execute("select user_id, title from tasks order by title").fetchall()
        assert rows == [(alice, "a1"), (alice, "a2")]
        assert conn.execute("select count(*) from tasks where title = 'b1'").fetchone() == (0,)


@contextmanager
def _request_role_without_a_user(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """todo_app entered by hand, app.user_id never set: no request looks like this (the entry
    point always sets a user), but the policies must hold even so."""
    with psycopg.connect(database_url) as conn:
        conn.execute("set local role todo_app")
        yield conn
        conn.rollback()


@pytest.mark.parametrize("setting", [None, ""])
def test_unset_or_empty_user_sees_and_changes_nothing(
    database_url: str, setting: str | None
) -> None:
    _seed(database_url, new_user_id(), "someone's")
    with (
        _request_role_without_a_user(database_url)
        if setting is None
        else as_request_role(database_url, setting)
    ) as conn:
        assert conn.execute("select count(*) from tasks").fetchone() == (0,)
        assert conn.execute("update tasks set title = 'x'").rowcount == 0
        assert conn.execute("delete from tasks").rowcount == 0
        with pytest.raises(psycopg.errors.Error):
            # The user_id default is NULL then, and any explicit owner fails WITH CHECK.
            conn.execute("insert into tasks (title) values ('orphan')")


def test_updates_and_deletes_of_other_users_rows_touch_nothing(database_url: str) -> None:
    alice, bob = new_user_id(), new_user_id()
    _seed(database_url, bob, "bob's")
    with as_request_role(database_url, alice) as conn:
        assert conn.execute("update tasks set completed = true").rowcount == 0
        assert conn.execute("delete from tasks").rowcount == 0
        conn.commit()
    with as_request_role(database_url, bob) as conn:
        assert conn.execute("select title, completed from tasks").fetchall() == [("bob's", False)]


def test_writing_a_row_for_another_user_is_refused_by_with_check(database_url: str) -> None:
    alice, bob = new_user_id(), new_user_id()
    _seed(database_url, alice, "mine")
    with (
        as_request_role(database_url, alice) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"),
    ):
        conn.execute("insert into tasks (user_id, title) values (%s, 'planted')", (bob,))
    with as_request_role(database_url, bob) as conn:
        assert conn.execute("select count(*) from tasks").fetchone() == (0,)


def test_a_task_cannot_be_handed_to_another_user(database_url: str) -> None:
    alice, bob = new_user_id(), new_user_id()
    _seed(database_url, alice, "mine")
    with (
        as_request_role(database_url, alice) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        # No UPDATE privilege on user_id at all; the trigger and WITH CHECK would stop it too.
        conn.execute("update tasks set user_id = %s", (bob,))


def _first_page_params(user_id: str) -> dict[str, Any]:
    """What the service binds for an unfiltered first page of `user_id`'s tasks."""
    return {
        "user_id": user_id,
        "completed": None,
        "q": None,
        "limit": 50,
        "after_key": None,
        "after_id": None,
    }


def test_the_list_statement_is_confined_even_with_another_users_id(database_url: str) -> None:
    # The services' explicit predicate is defense in depth: ask for Bob's rows as Alice.
    alice, bob = new_user_id(), new_user_id()
    _seed(database_url, bob, "bob's")
    params = _first_page_params(bob)
    with as_request_role(database_url, alice) as conn:
        rows = conn.execute(LIST_STATEMENTS[SortKey.CREATED, SortOrder.DESC, False], params)
        assert rows.fetchall() == []


def test_task_json_timestamps_are_utc_whatever_the_session_time_zone(database_url: str) -> None:
    alice = new_user_id()
    _seed(database_url, alice, "t")
    params = _first_page_params(alice)
    bodies = []
    for zone in ("UTC", "Asia/Kolkata", "America/St_Johns"):
        with as_request_role(database_url, alice) as conn:
            conn.execute(f"set local timezone = '{zone}'")
            rows = conn.execute(LIST_STATEMENTS[SortKey.CREATED, SortOrder.DESC, False], params)
            result = rows.fetchall()
            assert result != []
            bodies.append(",".join(body for (body,) in result))
    assert bodies[0] == bodies[1] == bodies[2]
    assert '"created_at":"' in bodies[0]
    assert 'Z","updated_at"' in bodies[0]


def test_every_user_data_table_has_forced_rls_and_a_policy_per_granted_command(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        report = inspect_database(conn)
        tables_with_user_id = {
            row[0]
            for row in conn.execute(
                "select c.relname from pg_attribute a join pg_class c on c.oid = a.attrelid"
                " join pg_namespace n on n.oid = c.relnamespace"
                " where a.attname = 'user_id' and not a.attisdropped and c.relkind in ('r', 'p')"
                " and n.nspname = current_schema()"
            )
        }
    assert {"tasks", "revoked_tokens", "user_token_revocations"} <= tables_with_user_id
    assert {t.name for t in report.tables} == tables_with_user_id
    for table in report.tables:
        assert table.rls_enabled, table.name
        assert table.rls_forced, table.name
        assert table.granted, table.name
        assert table.unguarded_commands == [], table.name
    assert report.safe, report.problems


@pytest.mark.anyio
async def test_after_a_request_the_pooled_connection_carries_no_user_or_role(
    async_app: FastAPI,
) -> None:
    user_id = new_user_id()
    headers = {"Authorization": f"Bearer {make_token(user_id)}"}
    transport = ASGITransport(app=async_app)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/api/tasks", json={"title": "t"}, headers=headers)
        assert response.status_code == 201
        assert (await http.get("/api/tasks", headers=headers)).status_code == 200
    database: Database = async_app.state.database
    login_role = None
    # Every connection the pool holds: none may still be todo_app or carry the user.
    for _ in range(database.pool.get_stats().get("pool_size", 1)):
        async with database.pool.connection() as conn:
            cursor = await conn.execute(
                "select current_user, session_user, current_setting('app.user_id', true)"
            )
            current, session, setting = await cursor.fetchone() or (None, None, None)
            login_role = session
            assert current == session
            assert current != "todo_app"
            assert setting in (None, "")
            # And it sees no rows, if someone were to enter the role without a user.
            await conn.execute("begin")
            await conn.execute("set local role todo_app")
            count = await (await conn.execute("select count(*) from tasks")).fetchone()
            await conn.execute("rollback")
            assert count == (0,)
    assert login_role is not None
