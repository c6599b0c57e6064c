"""All task SQL (T009, T010). Literal, parameterized statements; every one carries `user_id`.

Row-level security already confines each statement to the caller's rows; the explicit
`user_id = %(user_id)s` predicate is defense in depth and lets Postgres use the per-user indexes.

Each function is ONE statement (the request transaction runs exactly one), and Postgres builds the
response JSON itself, as PostgREST does: the API returns the text unchanged. Nothing here formats
user input into SQL: statements are composed once, at import, from the fixed `psycopg.sql`
fragments below, and list statements are picked from a map keyed by (sort, order, has_cursor).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, LiteralString, TypeAlias

from psycopg import sql

from todo_api.db import RequestTransaction

# The Task shape of the API. Timestamps are rendered in UTC by to_char, so the output does not
# depend on the session's TimeZone (PgBouncer may hand us any server session). JSON dates are
# always ISO 8601 in Postgres, whatever DateStyle says.
_TASK_JSON = sql.SQL(
    """json_build_object(
    'id', t.id,
    'user_id', t.user_id,
    'title', t.title,
    'description', t.description,
    'completed', t.completed,
    'due_date', t.due_date,
    'created_at', to_char(t.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'updated_at', to_char(t.updated_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
)"""
)


class SortKey(StrEnum):
    """The list orders, each served by one index of sql/0002_tasks.sql."""

    CREATED = "created"
    UPDATED = "updated"
    TITLE = "title"
    DUE_DATE = "due_date"


class SortOrder(StrEnum):
    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True)
class _Ordering:
    """Fixed fragments for one (sort, order): the index expression and its keyset bound."""

    key: sql.SQL  # the indexed expression the page is ordered by
    cursor_value: sql.SQL  # what the next cursor stores (a plain value psycopg can load)
    after_value: sql.SQL  # the cursor's value, as the indexed expression


_CREATED = _Ordering(
    sql.SQL("t.created_at"), sql.SQL("t.created_at"), sql.SQL("%(after_key)s::timestamptz")
)
_UPDATED = _Ordering(
    sql.SQL("t.updated_at"), sql.SQL("t.updated_at"), sql.SQL("%(after_key)s::timestamptz")
)
_TITLE = _Ordering(
    sql.SQL("lower(t.title)"), sql.SQL("lower(t.title)"), sql.SQL("%(after_key)s::text")
)
# Tasks without a due date come last in both orders: +infinity sorts last ascending, -infinity
# last descending (the check constraint keeps real due dates finite, and each coalesce has its own
# index, so both directions stay index scans).
_ORDERINGS: dict[tuple[SortKey, SortOrder], _Ordering] = {
    (SortKey.CREATED, SortOrder.ASC): _CREATED,
    (SortKey.CREATED, SortOrder.DESC): _CREATED,
    (SortKey.UPDATED, SortOrder.ASC): _UPDATED,
    (SortKey.UPDATED, SortOrder.DESC): _UPDATED,
    (SortKey.TITLE, SortOrder.ASC): _TITLE,
    (SortKey.TITLE, SortOrder.DESC): _TITLE,
    (SortKey.DUE_DATE, SortOrder.ASC): _Ordering(
        sql.SQL("coalesce(t.due_date, 'infinity'::date)"),
        sql.SQL("t.due_date"),
        sql.SQL("coalesce(%(after_key)s::date, 'infinity'::date)"),
    ),
    (SortKey.DUE_DATE, SortOrder.DESC): _Ordering(
        sql.SQL("coalesce(t.due_date, '-infinity'::date)"),
        sql.SQL("t.due_date"),
        sql.SQL("coalesce(%(after_key)s::date, '-infinity'::date)"),
    ),
}

# (direction, the keyset comparison that means "after" in that direction)
_DIRECTIONS: dict[SortOrder, tuple[sql.SQL, sql.SQL]] = {
    SortOrder.ASC: (sql.SQL("asc"), sql.SQL(">")),
    SortOrder.DESC: (sql.SQL("desc"), sql.SQL("<")),
}

# One page as a JSON array, plus whether more rows exist and the last row's keyset position.
# limit + 1 rows are read in index order; the extra row only says "there is a next page".
# The text search is strpos on lower(), not ILIKE: it has no wildcards to escape (% and _ are
# literal), and the planner cannot mistake it for a rare match and give up the ordered index walk
# for a scan of the whole table (RLS keeps a trigram index from helping anyway: ILIKE is not
# leakproof, so it may not become an index condition ahead of the policy).
_LIST_TEMPLATE = sql.SQL(
    """with page as (
    select t.*, {cursor_value} as cursor_key, row_number() over (order by {order_by}) as n
    from tasks t
    where t.user_id = %(user_id)s
      and (%(completed)s::boolean is null or t.completed = %(completed)s::boolean)
      and (%(q)s::text is null
           or strpos(lower(t.title), lower(%(q)s::text)) > 0
           or strpos(lower(t.description), lower(%(q)s::text)) > 0){keyset}
    order by {order_by}
    limit %(limit)s + 1
)
select coalesce(json_agg({task} order by t.n) filter (where t.n <= %(limit)s), '[]')::text,
       count(*) > %(limit)s,
       min(t.cursor_key) filter (where t.n = %(limit)s),
       min(t.id) filter (where t.n = %(limit)s)
from page t"""
)
_KEYSET = sql.SQL("\n      and ({key}, t.id) {comparison} ({after_value}, %(after_id)s)")


def _list_statement(sort: SortKey, order: SortOrder, has_cursor: bool) -> sql.Composed:
    ordering = _ORDERINGS[sort, order]
    direction, comparison = _DIRECTIONS[order]
    order_by = sql.SQL("{key} {direction}, t.id {direction}").format(
        key=ordering.key, direction=direction
    )
    keyset = (
        _KEYSET.format(key=ordering.key, comparison=comparison, after_value=ordering.after_value)
        if has_cursor
        else sql.SQL("")
    )
    return _LIST_TEMPLATE.format(
        cursor_value=ordering.cursor_value, order_by=order_by, keyset=keyset, task=_TASK_JSON
    )


# Every list statement there is, composed once from the fixed fragments above.
LIST_STATEMENTS: dict[tuple[SortKey, SortOrder, bool], sql.Composed] = {
    (sort, order, has_cursor): _list_statement(sort, order, has_cursor)
    for sort in SortKey
    for order in SortOrder
    for has_cursor in (False, True)
}

_GET_TASK = sql.SQL(
    "select {task}::text from tasks t where t.id = %(id)s and t.user_id = %(user_id)s"
).format(task=_TASK_JSON)

# The explicit user_id agrees with the column default (app.user_id) and the INSERT policy's
# WITH CHECK; a mismatch would be refused by the database.
_CREATE_TASK = sql.SQL(
    """insert into tasks as t (user_id, title, description, completed, due_date)
values (%(user_id)s, %(title)s, %(description)s, %(completed)s, %(due_date)s)
returning t.id, {task}::text"""
).format(task=_TASK_JSON)

# One UPDATE for PUT and PATCH: a field changes only when the request supplied it. title and
# completed are never NULL, so NULL means "not supplied"; description and due_date may be cleared
# with NULL, so they carry explicit flags.
_UPDATE_TASK = sql.SQL(
    """update tasks as t set
    title = coalesce(%(title)s, t.title),
    description = case when %(set_description)s then %(description)s::text else t.description end,
    completed = coalesce(%(completed)s::boolean, t.completed),
    due_date = case when %(set_due_date)s then %(due_date)s::date else t.due_date end
where t.id = %(id)s and t.user_id = %(user_id)s
returning {task}::text"""
).format(task=_TASK_JSON)

_TOGGLE_TASK = sql.SQL(
    """update tasks as t set completed = coalesce(%(completed)s::boolean, not t.completed)
where t.id = %(id)s and t.user_id = %(user_id)s
returning {task}::text"""
).format(task=_TASK_JSON)

_DELETE_TASK: LiteralString = "delete from tasks where id = %(id)s and user_id = %(user_id)s"

_COUNT_TASKS: LiteralString = """
select count(*), count(*) filter (where not completed), count(*) filter (where completed)
from tasks
where user_id = %(user_id)s
"""


CursorKey: TypeAlias = datetime | date | str | None


@dataclass(frozen=True)
class ListQuery:
    """A validated list request; `q` is a literal, case-insensitive substring."""

    sort: SortKey
    order: SortOrder
    limit: int
    completed: bool | None = None
    q: str | None = None
    after_key: CursorKey = None
    after_id: int | None = None


@dataclass(frozen=True)
class Page:
    """A page as JSON text, and the keyset position of its last row when more rows follow."""

    body: str
    has_more: bool
    last_key: CursorKey
    last_id: int | None


@dataclass(frozen=True)
class TaskChanges:
    """The fields a PUT or PATCH supplied; `None` title/completed mean "keep"."""

    title: str | None = None
    completed: bool | None = None
    set_description: bool = False
    description: str | None = None
    set_due_date: bool = False
    due_date: date | None = None

    @property
    def empty(self) -> bool:
        return (
            self.title is None
            and self.completed is None
            and not self.set_description
            and not self.set_due_date
        )


async def list_tasks(conn: RequestTransaction, user_id: str, query: ListQuery) -> Page:
    statement = LIST_STATEMENTS[query.sort, query.order, query.after_id is not None]
    params: dict[str, Any] = {
        "user_id": user_id,
        "completed": query.completed,
        "q": query.q,
        "limit": query.limit,
        "after_key": query.after_key,
        "after_id": query.after_id,
    }
    row = await conn.fetchone(statement, params)
    if row is None:  # an aggregate always returns a row
        return Page("[]", False, None, None)
    body, has_more, last_key, last_id = row
    return Page(str(body), bool(has_more), last_key, last_id)


async def get_task(conn: RequestTransaction, user_id: str, task_id: int) -> str | None:
    """The task as JSON text, or None when it is absent or not the user's."""
    row = await conn.fetchone(_GET_TASK, {"id": task_id, "user_id": user_id})
    return None if row is None else str(row[0])


async def create_task(
    conn: RequestTransaction,
    user_id: str,
    *,
    title: str,
    description: str | None,
    completed: bool,
    due_date: date | None,
) -> tuple[int, str]:
    """(id, task JSON text) of the new task."""
    row = await conn.fetchone(
        _CREATE_TASK,
        {
            "user_id": user_id,
            "title": title,
            "description": description,
            "completed": completed,
            "due_date": due_date,
        },
    )
    if row is None:  # INSERT ... RETURNING of one row returns it or raises
        raise RuntimeError("insert returned no row")
    return int(row[0]), str(row[1])


async def update_task(
    conn: RequestTransaction, user_id: str, task_id: int, changes: TaskChanges
) -> str | None:
    """Apply the supplied fields; the updated task as JSON text, or None when not found."""
    if changes.empty:  # nothing to change: don't touch updated_at
        return await get_task(conn, user_id, task_id)
    row = await conn.fetchone(
        _UPDATE_TASK,
        {
            "id": task_id,
            "user_id": user_id,
            "title": changes.title,
            "completed": changes.completed,
            "set_description": changes.set_description,
            "description": changes.description,
            "set_due_date": changes.set_due_date,
            "due_date": changes.due_date,
        },
    )
    return None if row is None else str(row[0])


async def toggle_task(
    conn: RequestTransaction, user_id: str, task_id: int, completed: bool | None
) -> str | None:
    """Set `completed`, or flip it when `completed` is None; None when not found."""
    row = await conn.fetchone(
        _TOGGLE_TASK, {"id": task_id, "user_id": user_id, "completed": completed}
    )
    return None if row is None else str(row[0])


async def delete_task(conn: RequestTransaction, user_id: str, task_id: int) -> bool:
    """Whether a task was deleted."""
    return await conn.execute(_DELETE_TASK, {"id": task_id, "user_id": user_id}) == 1


async def count_tasks(conn: RequestTransaction, user_id: str) -> tuple[int, int, int]:
    """(total, pending, completed) for the user."""
    row = await conn.fetchone(_COUNT_TASKS, {"user_id": user_id})
    if row is None:  # an aggregate always returns a row
        return 0, 0, 0
    return int(row[0]), int(row[1]), int(row[2])
