"""Every list query is an index scan: no sequential scan on tasks, whatever the sort and filter.

The table is seeded with one heavy user among many light ones and analyzed, so the planner has
real statistics. Plans are checked as custom plans (what a fresh statement gets) and as generic
plans (what a prepared statement may switch to after five executions).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.support.databases import create_scratch_database, url_for_database
from tests.support.postgres import PostgresServer
from tests.support.request_role import as_request_role
from tests.support.tokens import new_user_id
from todo_api import migrations
from todo_api.services.task_service import LIST_STATEMENTS, SortKey, SortOrder

HEAVY_TASKS = 20_000
LIGHT_USERS = 2_000
LIGHT_TASKS = 20

# As a superuser (which bypasses RLS) so the whole table is seeded in one statement. The heavy user
# owns a quarter of the rows: enough to tempt the planner, and far from a single-tenant table.
_SEED = """
insert into tasks (user_id, title, description, completed, due_date)
select owner, 'Task ' || n, case when mod(n, 3) = 0 then 'note ' || n end, mod(n, 2) = 0,
       case when mod(n, 4) <> 0 then date '2026-01-01' + mod(n, 365) end
from (select %(heavy)s as owner, n from generate_series(1, %(heavy_tasks)s) n
      union all
      select 'light-' || u, n
      from generate_series(1, %(light_users)s) u, generate_series(1, %(light_tasks)s) n) seed
"""


@pytest.fixture(scope="module")
def seeded_database(postgres_server: PostgresServer) -> tuple[str, str]:
    """(database url, heavy user id) on a database of its own, so other tests' rows don't matter."""
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_plans")
    migrations.apply(url)
    heavy = new_user_id()
    admin_url = url_for_database(postgres_server.admin_url, conninfo_to_dict(url)["dbname"])
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            _SEED,
            {
                "heavy": heavy,
                "heavy_tasks": HEAVY_TASKS,
                "light_users": LIGHT_USERS,
                "light_tasks": LIGHT_TASKS,
            },
        )
        conn.execute("analyze tasks")
    return url, heavy


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


_CURSOR_KEYS: dict[SortKey, object] = {
    SortKey.CREATED: datetime(2026, 1, 1, tzinfo=UTC),
    SortKey.UPDATED: datetime(2026, 1, 1, tzinfo=UTC),
    SortKey.TITLE: "task 5000",
    SortKey.DUE_DATE: date(2026, 6, 1),
}

CASES = list(
    itertools.product(
        SortKey,
        SortOrder,
        [False, True],  # with a cursor
        [None, False, True],  # status: all, pending, completed
        [None, "task 1"],  # q
    )
)


INDEX_ACCESS = {"Index Scan", "Index Only Scan"}


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
def test_every_list_query_reads_tasks_through_an_index(
    seeded_database: tuple[str, str], plan_cache_mode: str
) -> None:
    url, heavy = seeded_database
    failures = []
    with as_request_role(url, heavy) as conn:
        conn.execute(sql.SQL("set local plan_cache_mode = {}").format(sql.Literal(plan_cache_mode)))
        for sort, order, has_cursor, completed, q in CASES:
            params = {
                "user_id": heavy,
                "completed": completed,
                "q": q,
                "limit": 50,
                "after_key": _CURSOR_KEYS[sort] if has_cursor else None,
                "after_id": 1000 if has_cursor else None,
            }
            statement = sql.SQL("explain (format json) {}").format(
                LIST_STATEMENTS[sort, order, has_cursor]
            )
            row = conn.execute(statement, params).fetchone()
            assert row is not None
            nodes = list(_nodes(row[0][0]["Plan"]))
            case = (sort.value, order.value, has_cursor, completed, q)
            on_tasks = {n["Node Type"] for n in nodes if n.get("Relation Name") == "tasks"}
            if not on_tasks or not on_tasks <= INDEX_ACCESS:
                failures.append((*case, sorted(on_tasks)))
            # The page is a walk along the index from the cursor, stopping after limit + 1 rows:
            # no sort, so its cost does not depend on how many tasks the user has.
            if any(n["Node Type"] == "Sort" for n in nodes):
                failures.append((*case, "not an ordered index walk"))
    assert failures == [], "\n".join(map(str, failures))
