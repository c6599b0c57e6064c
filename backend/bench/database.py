"""The benchmark's database: a scratch database, migrated, owned by a non-superuser login role,
seeded in SQL (generate_series, as the superuser) with light users and one heavy user.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql

from tests.support.databases import create_owned_database, url_for_database
from todo_api import migrations

LOGIN_ROLE = "bench_login"
LOGIN_PASSWORD = "bench-login-password-not-secret"  # noqa: S105 - a throwaway local role
HEAVY_USER_KEY = "bench-heavy"


def light_user_id(number: int) -> str:
    """The id of light user `number` (1-based): 32 hex characters, like Better Auth's."""
    return hashlib.md5(f"bench-user-{number}".encode(), usedforsecurity=False).hexdigest()


def heavy_user_id() -> str:
    return hashlib.md5(HEAVY_USER_KEY.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class BenchDatabase:
    admin_url: str  # superuser, this database
    login_url: str  # the service's login role, this database
    name: str


@dataclass(frozen=True)
class Seeded:
    users: int
    tasks_per_user: int
    heavy_tasks: int
    first_ids: list[int]  # first task id of light user n at index n-1 (ids are contiguous)


def create(server_admin_url: str) -> BenchDatabase:
    """A fresh, migrated database owned by a non-superuser login role (like the tests')."""
    name = f"todo_bench_{uuid.uuid4().hex[:8]}"
    login_url = create_owned_database(
        server_admin_url, name, role=LOGIN_ROLE, password=LOGIN_PASSWORD
    )
    admin_url = url_for_database(server_admin_url, name)
    migrations.apply(login_url)
    return BenchDatabase(admin_url=admin_url, login_url=login_url, name=name)


def drop(server_admin_url: str, database: BenchDatabase) -> None:
    with psycopg.connect(server_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database.name))
        )


# Light user n gets tasks_per_user tasks, then the heavy user gets heavy_tasks: ids are assigned in
# insertion order, so each user's ids are one contiguous range. Dates spread over ~4 months so every
# sort order has work to do; a third of the tasks have a description, half a due date.
_SEED = """
insert into tasks (user_id, title, description, completed, due_date, created_at, updated_at)
select s.user_id,
       'Task ' || s.n || ' for ' || left(s.user_id, 6),
       case when s.n %% 3 = 0 then 'Details of task ' || s.n end,
       s.n %% 4 = 0,
       case when s.n %% 2 = 0 then date '2026-01-01' + (s.n * 7 %% 120) end,
       timestamptz '2026-01-01' + make_interval(secs => s.n * 97 %% 10000000),
       timestamptz '2026-01-01' + make_interval(secs => s.n * 89 %% 10000000)
from (
    select md5('bench-user-' || u) as user_id, t as n, u as ord
    from generate_series(1, %(users)s) u, generate_series(1, %(tasks)s) t
    union all
    select md5(%(heavy)s), t, %(users)s + 1 from generate_series(1, %(heavy_tasks)s) t
    order by ord, n
) s
"""


def seed(database: BenchDatabase, users: int, tasks_per_user: int, heavy_tasks: int) -> Seeded:
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute(
            _SEED,
            {"users": users, "tasks": tasks_per_user, "heavy": HEAVY_USER_KEY,
             "heavy_tasks": heavy_tasks},
        )  # fmt: skip
        conn.execute("vacuum (analyze) tasks")
        rows = conn.execute(
            "select user_id, min(id), max(id), count(*) from tasks group by user_id"
        ).fetchall()
    ranges = {user_id: (int(low), int(high), int(count)) for user_id, low, high, count in rows}
    for user_id, (low, high, count) in ranges.items():
        if high - low + 1 != count:
            raise RuntimeError(f"seeded ids of {user_id} are not contiguous")
    first_ids = [ranges[light_user_id(n)][0] for n in range(1, users + 1)]
    return Seeded(users, tasks_per_user, heavy_tasks, first_ids)
