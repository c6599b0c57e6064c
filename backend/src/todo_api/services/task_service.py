"""All task SQL (T009, T010). Literal, parameterized statements; every one carries `user_id`.

Row-level security already confines each statement to the caller's rows; the explicit
`user_id = %(user_id)s` predicate is defense in depth and lets Postgres use the per-user indexes.

Each function is ONE statement (the request transaction runs exactly one), and Postgres builds the
response JSON itself, as PostgREST does: the API returns each task's text unchanged, and a page
is its tasks' texts joined into a JSON array. Nothing here formats user input into SQL:
statements are composed once, at import, from the fixed `psycopg.sql` fragments below into
`db.Statement`s (the exact strings a request sends, values bound client-side), and list
statements are picked from a map keyed by (sort, order, has_cursor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum, StrEnum
from typing import Any, TypeAlias, cast

from psycopg import sql

from todo_api.db import OneStatementTransaction, Row, Statement

# The Task shape of the API, as compact JSON: each row keeps it in `api_json`, rendered by the
# database on every insert and update (sql/0009_task_api_json.sql: row_to_json of exactly the
# API's columns, timestamps in UTC), so reads only pass it on.
_TASK_JSON = sql.SQL("t.api_json")


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
    after_value: sql.SQL  # the cursor's value, as the indexed expression
    # Where the next cursor's key comes from, for the page's last row: a field of its api_json
    # (timestamps in UTC to the microsecond, dates in ISO 8601: the trigger renders them so,
    # whatever the session's TimeZone or DateStyle), or an extra column the page returns.
    json_field: str | None = None
    key_column: sql.SQL | None = None


_TIMESTAMP_AFTER = sql.SQL("%(after_key)s::timestamptz")
_CREATED = _Ordering(sql.SQL("t.created_at"), _TIMESTAMP_AFTER, json_field="created_at")
_UPDATED = _Ordering(sql.SQL("t.updated_at"), _TIMESTAMP_AFTER, json_field="updated_at")
# lower() as PostgreSQL computes it (its collation's case mapping), so the page returns it.
_TITLE = _Ordering(
    sql.SQL("lower(t.title)"), sql.SQL("%(after_key)s::text"), key_column=sql.SQL("lower(t.title)")
)
# Tasks without a due date come last in both orders: +infinity sorts last ascending, -infinity
# last descending (the check constraint keeps real due dates finite, and each coalesce has its own
# index, so both directions stay index scans). The cursor keeps the due date itself (null for
# none), which the bound coalesces the same way.
_ORDERINGS: dict[tuple[SortKey, SortOrder], _Ordering] = {
    (SortKey.CREATED, SortOrder.ASC): _CREATED,
    (SortKey.CREATED, SortOrder.DESC): _CREATED,
    (SortKey.UPDATED, SortOrder.ASC): _UPDATED,
    (SortKey.UPDATED, SortOrder.DESC): _UPDATED,
    (SortKey.TITLE, SortOrder.ASC): _TITLE,
    (SortKey.TITLE, SortOrder.DESC): _TITLE,
    (SortKey.DUE_DATE, SortOrder.ASC): _Ordering(
        sql.SQL("coalesce(t.due_date, 'infinity'::date)"),
        sql.SQL("coalesce(%(after_key)s::date, 'infinity'::date)"),
        json_field="due_date",
    ),
    (SortKey.DUE_DATE, SortOrder.DESC): _Ordering(
        sql.SQL("coalesce(t.due_date, '-infinity'::date)"),
        sql.SQL("coalesce(%(after_key)s::date, '-infinity'::date)"),
        json_field="due_date",
    ),
}

# (direction, the keyset comparison that means "after" in that direction)
_DIRECTIONS: dict[SortOrder, tuple[sql.SQL, sql.SQL]] = {
    SortOrder.ASC: (sql.SQL("asc"), sql.SQL(">")),
    SortOrder.DESC: (sql.SQL("desc"), sql.SQL("<")),
}

# One page: limit + 1 rows' JSON in index order, the extra row only saying "there is a next
# page". The service joins them into the JSON array it answers with. An aggregate building the
# array in the statement cost PostgreSQL more than the rows themselves: the row_number() window
# that told the extra row apart copied every row into a tuplestore, and the Agg node's set-up
# came on top (#8: 182 vs 152 µs of backend CPU per first page, the median of seven alternating
# runs, sequential).
# The text search is strpos on lower(), not ILIKE: it has no wildcards to escape (% and _ are
# literal), and the planner cannot mistake it for a rare match and give up the ordered index walk
# for a scan of the whole table (RLS keeps a trigram index from helping anyway: ILIKE is not
# leakproof, so it may not become an index condition ahead of the policy).
_LIST_TEMPLATE = sql.SQL(
    """select t.api_json{key_column}
from tasks t
where t.user_id = %(user_id)s
  and (%(completed)s::boolean is null or t.completed = %(completed)s::boolean)
  and (%(q)s::text is null
       or strpos(lower(t.title), lower(%(q)s::text)) > 0
       or strpos(lower(t.description), lower(%(q)s::text)) > 0){keyset}
order by {order_by}
limit %(limit)s + 1"""
)
_KEYSET = sql.SQL("\n  and ({key}, t.id) {comparison} ({after_value}, %(after_id)s)")


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
    key_column = sql.SQL(", {}").format(ordering.key_column) if ordering.key_column else sql.SQL("")
    return _LIST_TEMPLATE.format(key_column=key_column, order_by=order_by, keyset=keyset)


# Every list statement there is, composed once from the fixed fragments above.
LIST_STATEMENTS: dict[tuple[SortKey, SortOrder, bool], sql.Composed] = {
    (sort, order, has_cursor): _list_statement(sort, order, has_cursor)
    for sort in SortKey
    for order in SortOrder
    for has_cursor in (False, True)
}
_LIST = {key: Statement.of(statement) for key, statement in LIST_STATEMENTS.items()}

_GET_TASK = Statement.of(
    sql.SQL(
        "select {task}, t.version from tasks t where t.id = %(id)s and t.user_id = %(user_id)s"
    ).format(task=_TASK_JSON)
)

# The explicit user_id agrees with the column default (app.user_id) and the INSERT policy's
# WITH CHECK; a mismatch would be refused by the database.
_CREATE_TASK = Statement.of(
    sql.SQL(
        """insert into tasks as t (user_id, title, description, completed, due_date)
values (%(user_id)s, %(title)s, %(description)s, %(completed)s, %(due_date)s)
returning t.id, {task}, t.version"""
    ).format(task=_TASK_JSON)
)

# A create with an Idempotency-Key, still one statement. A transaction-scoped advisory lock on
# (user, key) tells a request whose twin is still running (lock not acquired: 409) from one that
# may go ahead. A key already recorded (and not expired) is answered from its row: replay, or
# reuse with another body. Otherwise the task and its key are inserted together, so the key
# exists exactly when the task was created. A twin that committed after this statement's snapshot
# was taken is invisible to `prior` but not to the primary key: the key insert then fails with a
# unique violation, the whole transaction rolls back, and the client is told to retry (409).
_CREATE_TASK_WITH_KEY = Statement.of(
    sql.SQL(
        """with lock as materialized (
    select pg_try_advisory_xact_lock(hashtextextended(%(user_id)s || ' ' || %(key)s, 0)) as acquired
),
prior as materialized (
    select k.fingerprint, k.task_id, k.response
    from idempotency_keys k
    where k.user_id = %(user_id)s and k.key = %(key)s and k.expires_at > now()
),
purged as materialized (
    select todo_purge_expired_idempotency_keys()
    from lock
    where lock.acquired and not exists (select from prior)
),
created as (
    insert into tasks as t (user_id, title, description, completed, due_date)
    select %(user_id)s, %(title)s, %(description)s, %(completed)s, %(due_date)s from purged
    returning t.id, {task} as body, t.version
),
remembered as (
    insert into idempotency_keys (user_id, key, fingerprint, task_id, response)
    select %(user_id)s, %(key)s, %(fingerprint)s, c.id, c.body from created c
)
select l.acquired, p.fingerprint, p.task_id, p.response, c.id, c.body, c.version
from lock l left join prior p on true left join created c on true"""
    ).format(task=_TASK_JSON)
)

# One UPDATE for PUT and PATCH: a field changes only when the request supplied it. title and
# completed are never NULL, so NULL means "not supplied"; description and due_date may be cleared
# with NULL, so they carry explicit flags.
_UPDATE_SET = sql.SQL(
    """update tasks as t set
    title = coalesce(%(title)s, t.title),
    description = case when %(set_description)s then %(description)s::text else t.description end,
    completed = coalesce(%(completed)s::boolean, t.completed),
    due_date = case when %(set_due_date)s then %(due_date)s::date else t.due_date end"""
)
_TOGGLE_SET = sql.SQL(
    "update tasks as t set completed = coalesce(%(completed)s::boolean, not t.completed)"
)
_WHERE_OWN = sql.SQL("where t.id = %(id)s and t.user_id = %(user_id)s")
# If-Match, checked by the write itself: under concurrent writes Postgres re-checks the WHERE
# against the newest row version, so a write never lands on a version the client did not name.
_WHERE_OWN_AND_VERSION = sql.SQL(
    "where t.id = %(id)s and t.user_id = %(user_id)s"
    " and (%(any_version)s or t.version = any(%(versions)s::bigint[]))"
)
_RETURNING_TASK = sql.SQL("returning {task} as body, t.version").format(task=_TASK_JSON)
# With a precondition the statement also says whether the task exists, so a refused write is
# told apart from an absent task (412 vs 404) in the same round trip.
_CONDITIONAL = sql.SQL(
    """with target as (
    {write}
)
select target.body, target.version,
       exists (select from tasks t where t.id = %(id)s and t.user_id = %(user_id)s)
from (select) as one left join target on true"""
)


def _write(set_clause: sql.SQL, where: sql.SQL) -> sql.Composed:
    return sql.SQL("{set}\n{where}\n{returning}").format(
        set=set_clause, where=where, returning=_RETURNING_TASK
    )


_UPDATE_TASK = Statement.of(_write(_UPDATE_SET, _WHERE_OWN))
_UPDATE_TASK_IF = Statement.of(
    _CONDITIONAL.format(write=_write(_UPDATE_SET, _WHERE_OWN_AND_VERSION))
)
_TOGGLE_TASK = Statement.of(_write(_TOGGLE_SET, _WHERE_OWN))
_TOGGLE_TASK_IF = Statement.of(
    _CONDITIONAL.format(write=_write(_TOGGLE_SET, _WHERE_OWN_AND_VERSION))
)

_DELETE_TASK = Statement.of("delete from tasks where id = %(id)s and user_id = %(user_id)s")
_DELETE_TASK_IF = Statement.of(
    _CONDITIONAL.format(
        write=sql.SQL(
            "delete from tasks as t {where} returning null::text as body, t.version"
        ).format(where=_WHERE_OWN_AND_VERSION)
    )
)

_COUNT_TASKS = Statement.of("""
select count(*), count(*) filter (where not completed), count(*) filter (where completed)
from tasks
where user_id = %(user_id)s
""")


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
    """A page as JSON, and the keyset position of its last row (text) when more rows follow."""

    body: bytes
    has_more: bool
    last_key: str | None
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


async def list_tasks(tx: OneStatementTransaction, user_id: str, query: ListQuery) -> Page:
    statement = _LIST[query.sort, query.order, query.after_id is not None]
    params: dict[str, Any] = {
        "user_id": user_id,
        "completed": query.completed,
        "q": query.q,
        "limit": query.limit,
        "after_key": query.after_key,
        "after_id": query.after_id,
    }
    result = await tx.run(statement, params)
    shown = result.column(0, query.limit)
    if None in shown:
        raise RuntimeError("the statement returned NULL where a task was due")
    body = b"[" + b",".join(cast(list[bytes], shown)) + b"]"
    if len(result) <= query.limit:
        return Page(body, has_more=False, last_key=None, last_id=None)
    last_key, last_id = _position(_ORDERINGS[query.sort, query.order], result.row(len(shown) - 1))
    return Page(body, has_more=True, last_key=last_key, last_id=last_id)


def _position(ordering: _Ordering, row: Row) -> tuple[str | None, int]:
    """The keyset position of a page's last row: its sort key as the cursor keeps it, its id."""
    task = json.loads(_bytes(row[0]))
    if ordering.json_field is None:
        return _text(row[1]), int(task["id"])
    key = task[ordering.json_field]
    if isinstance(key, str) and key.endswith("Z"):
        key = key[:-1] + "+00:00"  # the offset the cursor has always written
    return key, int(task["id"])


@dataclass(frozen=True)
class StoredTask:
    """A task as the API answers it (JSON built by Postgres, as it sent it) and its version."""

    body: bytes
    version: int


@dataclass(frozen=True)
class VersionCondition:
    """The versions of a task an If-Match admits: any existing one, or those listed."""

    any_version: bool
    versions: tuple[int, ...]

    def admits(self, version: int) -> bool:
        return self.any_version or version in self.versions


class Refusal(Enum):
    """Why a write of one task did not happen."""

    NOT_FOUND = "not_found"  # absent or another user's: indistinguishable
    STALE = "stale"  # the precondition admits no current version


async def get_task(tx: OneStatementTransaction, user_id: str, task_id: int) -> StoredTask | None:
    """The task, or None when it is absent or not the user's."""
    row = (await tx.run(_GET_TASK, {"id": task_id, "user_id": user_id})).first()
    return None if row is None else _stored(row[0], row[1])


@dataclass(frozen=True)
class NewTask:
    title: str
    description: str | None
    completed: bool
    due_date: date | None


@dataclass(frozen=True)
class IdempotencyKey:
    """An Idempotency-Key and the fingerprint of the request body it came with."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class Created:
    task_id: int
    task: StoredTask
    replayed: bool = False  # the original answer to an earlier request with the same key


class KeyOutcome(Enum):
    REUSED = "reused"  # the key was used with another body
    IN_FLIGHT = "in_flight"  # the first request with the key is still running


async def create_task(
    tx: OneStatementTransaction,
    user_id: str,
    new: NewTask,
    idempotency: IdempotencyKey | None = None,
) -> Created | KeyOutcome:
    """Create a task; with a key, at most once per (user, key)."""
    params: dict[str, Any] = {
        "user_id": user_id,
        "title": new.title,
        "description": new.description,
        "completed": new.completed,
        "due_date": new.due_date,
    }
    if idempotency is None:
        task_id, body, version = (await tx.run(_CREATE_TASK, params)).one()
        return Created(_int(task_id), _stored(body, version))
    params |= {"key": idempotency.key, "fingerprint": idempotency.fingerprint}
    row = (await tx.run(_CREATE_TASK_WITH_KEY, params)).one()
    _, fingerprint, prior_id, prior_body, new_id, new_body, new_version = row
    if fingerprint is not None:
        if fingerprint.decode() != idempotency.fingerprint:
            return KeyOutcome.REUSED
        return Created(_int(prior_id), StoredTask(_bytes(prior_body), 1), replayed=True)
    if new_id is None:  # the advisory lock was not acquired
        return KeyOutcome.IN_FLIGHT
    return Created(_int(new_id), _stored(new_body, new_version))


async def update_task(
    tx: OneStatementTransaction,
    user_id: str,
    task_id: int,
    changes: TaskChanges,
    condition: VersionCondition | None = None,
) -> StoredTask | Refusal:
    """Apply the supplied fields when `condition` (If-Match) admits the current version."""
    if changes.empty:  # nothing to change: don't touch updated_at or the version
        task = await get_task(tx, user_id, task_id)
        if task is None:
            return Refusal.NOT_FOUND
        return task if condition is None or condition.admits(task.version) else Refusal.STALE
    params = {
        "id": task_id,
        "user_id": user_id,
        "title": changes.title,
        "completed": changes.completed,
        "set_description": changes.set_description,
        "description": changes.description,
        "set_due_date": changes.set_due_date,
        "due_date": changes.due_date,
    }
    return await _write_task(tx, _UPDATE_TASK, _UPDATE_TASK_IF, params, condition)


async def toggle_task(
    tx: OneStatementTransaction,
    user_id: str,
    task_id: int,
    completed: bool | None,
    condition: VersionCondition | None = None,
) -> StoredTask | Refusal:
    """Set `completed`, or flip it when `completed` is None."""
    params = {"id": task_id, "user_id": user_id, "completed": completed}
    return await _write_task(tx, _TOGGLE_TASK, _TOGGLE_TASK_IF, params, condition)


async def delete_task(
    tx: OneStatementTransaction,
    user_id: str,
    task_id: int,
    condition: VersionCondition | None = None,
) -> Refusal | None:
    """Delete the task; None when it was deleted."""
    params: dict[str, Any] = {"id": task_id, "user_id": user_id}
    if condition is None:
        deleted = (await tx.run(_DELETE_TASK, params)).rowcount
        return None if deleted == 1 else Refusal.NOT_FOUND
    row = (await tx.run(_DELETE_TASK_IF, _with_condition(params, condition))).one()
    _, version, exists = row
    if version is not None:
        return None
    return Refusal.STALE if exists == b"t" else Refusal.NOT_FOUND


async def _write_task(
    tx: OneStatementTransaction,
    unconditional: Statement,
    conditional: Statement,
    params: dict[str, Any],
    condition: VersionCondition | None,
) -> StoredTask | Refusal:
    if condition is None:
        row = (await tx.run(unconditional, params)).first()
        return Refusal.NOT_FOUND if row is None else _stored(row[0], row[1])
    body, version, exists = (await tx.run(conditional, _with_condition(params, condition))).one()
    if version is not None:
        return _stored(body, version)
    return Refusal.STALE if exists == b"t" else Refusal.NOT_FOUND


# Reading a row as PostgreSQL sent it (text; db.Row): each statement above says what it returns.
def _bytes(value: bytes | None) -> bytes:
    if value is None:
        raise RuntimeError("the statement returned NULL where a value was due")
    return value


def _int(value: bytes | None) -> int:
    return int(_bytes(value))


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _stored(body: bytes | None, version: bytes | None) -> StoredTask:
    return StoredTask(_bytes(body), _int(version))


def _with_condition(params: dict[str, Any], condition: VersionCondition) -> dict[str, Any]:
    return {**params, "any_version": condition.any_version, "versions": list(condition.versions)}


async def count_tasks(tx: OneStatementTransaction, user_id: str) -> tuple[int, int, int]:
    """(total, pending, completed) for the user."""
    total, pending, completed = (await tx.run(_COUNT_TASKS, {"user_id": user_id})).one()
    return _int(total), _int(pending), _int(completed)
