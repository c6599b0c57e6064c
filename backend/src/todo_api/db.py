"""The connection pool and the request's one transaction (T003).

Every request that touches data runs as exactly one transaction, sent to Postgres as ONE simple
query string (one round trip), its values bound client-side (psycopg's own adapters render each
value as an SQL literal):

    select todo_begin_request(user_id, token_id, issued_at, statement_timeout);
        -- SET LOCAL ROLE todo_app, statement_timeout, app.user_id; refuses a revoked token
    <the route's one statement>

The simple query protocol runs a string of several statements as one implicit transaction: it
commits after the last one when every statement succeeded, and rolls back entirely when one
failed (the statements after it are skipped). That is BEGIN ... COMMIT without the two extra
statements, and the same semantics the extended protocol gives a pipeline up to its Sync.
Role, timeout and user are transaction-local (`set_config(..., true)`), so nothing carries over to
the next user of a pooled connection, also behind PgBouncer in transaction mode (which hands the
server connection back only at the transaction's end).

The string goes out through the libpq connection psycopg wraps (`pgconn.send_query`, psycopg's
`execute` generator, `AsyncConnection.wait`), and the route's result comes back as the raw text
PostgreSQL sent, which the services read (the task JSON is passed on as it is). psycopg's
cursor, its query parser and its result loaders cost ~50 µs of client CPU per request more (#8:
77 vs 24 µs for one sequential round trip).

With `DB_PREPARED_STATEMENTS` on (no PgBouncer in transaction mode), each statement is PREPAREd
by SQL on a connection the first time it runs there (in the same string, after the role is
entered) and `EXECUTE`d from then on, so PostgreSQL parses and plans it once per connection
instead of once per request. Behind PgBouncer the statement text is sent instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, LiteralString, TypeAlias

import psycopg
from psycopg import abc, pq, sql
from psycopg import errors as pg_errors
from psycopg.adapt import Transformer
from psycopg.generators import execute
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from todo_api.config import Settings
from todo_api.errors import database_error
from todo_api.identity import User
from todo_api.timing import add_db_time

REQUEST_ROLE = "todo_app"

Params: TypeAlias = Mapping[str, Any]
# A row as PostgreSQL sent it: each value its text (NULL is None). The statements say in SQL
# what they return; the services read it (`int(value)`, `value == b"t"`, JSON passed on as is).
Row: TypeAlias = tuple[bytes | None, ...]
# A query string with its placeholders: literal SQL (bytes) and parameter names (str).
Template: TypeAlias = tuple[bytes | str, ...]

# The names todo_begin_request's values travel under; a statement may not use them itself.
_REQUEST_PARAMS = ("request_user_id", "request_token_id", "request_issued_at", "request_timeout")
_BEGIN_REQUEST = (
    b"select todo_begin_request("
    + b", ".join(b"%%(%s)s" % name.encode() for name in _REQUEST_PARAMS)
    + b");\n"
)
# psycopg's client-side placeholder syntax: %(name)s, and %% for a literal percent sign.
_PLACEHOLDER = re.compile(rb"%\((\w+)\)s|%%|%")

log = logging.getLogger(__name__)

_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR

AsyncConn: TypeAlias = psycopg.AsyncConnection[TupleRow]


def _template(text: bytes) -> Template:
    """Split a query with `%(name)s` placeholders into literal SQL and parameter names."""
    parts: list[bytes | str] = []
    literal = b""
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        literal += text[position : match.start()]
        position = match.end()
        if match.group(1) is not None:
            parts += [literal, match.group(1).decode()]
            literal = b""
        elif match.group(0) == b"%%":
            literal += b"%"
        else:
            raise ValueError(f"a lone % at byte {match.start()}: write %% for a percent sign")
    return (*parts, literal + text[position:])


@dataclass(frozen=True)
class Statement:
    """A route's statement, composed once at import into the three strings a request may send.

    `unprepared`: begin + the statement. `preparing`: begin + PREPARE (under the request role, so
    the plan is made for it) + EXECUTE, the first time on a connection. `prepared`: begin +
    EXECUTE. Values are bound client-side into the placeholders, by psycopg's adapters.
    """

    name: str
    params: tuple[str, ...]  # the statement's own parameter names, in order of first use
    unprepared: Template
    preparing: Template
    prepared: Template

    @classmethod
    def of(cls, query: LiteralString | sql.Composable) -> Statement:
        text = query.encode() if isinstance(query, str) else query.as_bytes(None)
        names = [str(part) for part in dict.fromkeys(_template(text)[1::2])]
        if any(name in _REQUEST_PARAMS for name in names):
            raise ValueError("a statement may not use todo_begin_request's parameter names")
        numbered = _PLACEHOLDER.sub(
            lambda m: b"$%d" % (names.index(m.group(1).decode()) + 1) if m.group(1) else b"%",
            text,
        )
        name = "todo_" + hashlib.sha256(text).hexdigest()[:16]
        execute = b"execute " + name.encode()
        if names:
            execute += b"(" + b", ".join(b"%%(%s)s" % n.encode() for n in names) + b")"
        prepare = b"prepare " + name.encode() + b" as " + numbered.replace(b"%", b"%%") + b";\n"
        return cls(
            name=name,
            params=tuple(names),
            unprepared=_template(_BEGIN_REQUEST + text),
            preparing=_template(_BEGIN_REQUEST + prepare + execute),
            prepared=_template(_BEGIN_REQUEST + execute),
        )


def bind(template: Template, values: Mapping[str, Any], adapters: abc.Transformer) -> bytes:
    """The query string: each placeholder replaced by its value as an SQL literal (psycopg's
    adapters: quoted and escaped text, numbers, `'…'::date`, NULL, …)."""
    literal = adapters.as_literal
    return b"".join(part if isinstance(part, bytes) else literal(values[part]) for part in template)


@dataclass(frozen=True)
class Result:
    """What the route's statement returned: its rows, and how many rows it affected."""

    rows: Sequence[Row]
    rowcount: int

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def one(self) -> Row:
        """The row of a statement that always yields exactly one (an aggregate, INSERT VALUES)."""
        if len(self.rows) != 1:
            raise RuntimeError(f"the statement returned {len(self.rows)} rows, not one")
        return self.rows[0]


@dataclass
class _Session:
    """What the service keeps per pooled connection: its value adapters, its prepared names."""

    transformer: abc.Transformer
    prepared: set[str] = field(default_factory=set)


def create_pool(settings: Settings) -> AsyncConnectionPool[AsyncConn]:
    """A pool created closed; the application lifespan opens and closes it."""
    return AsyncConnectionPool(
        settings.database_url.get_secret_value(),
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        timeout=settings.db_pool_timeout_seconds,
        # Broken connections are replaced quickly once the database is back.
        reconnect_timeout=0,
        max_idle=300,
        open=False,
        name="todo-api",
        kwargs={
            # Each request string is its own implicit transaction; psycopg must not add BEGIN.
            "autocommit": True,
            "connect_timeout": settings.db_connect_timeout_seconds,
            # Never psycopg's protocol-level prepared statements (PgBouncer in transaction mode
            # breaks them); request statements are prepared by SQL, see the module docstring.
            "prepare_threshold": None,
            "application_name": "todo-api",
        },
    )


class Database:
    """The pool plus the settings every request transaction needs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = create_pool(settings)
        self.statement_timeout = str(settings.db_statement_timeout_ms)
        self.prepared_statements = settings.db_prepared_statements
        self.pool_timeout = settings.db_pool_timeout_seconds
        # At most max_size requests ask the pool at a time; the others queue here. Under load
        # (more requests in flight than connections) psycopg_pool's own queue (a Condition and a
        # wait_for task per waiting request) cost 130-280 us more CPU per request (#8).
        self.slots = asyncio.Semaphore(settings.db_pool_max_size)
        self.waiting = 0  # requests waiting for a slot now (metrics)
        # Told of every exception a request transaction raises (metrics count them by SQLSTATE).
        self.on_error: Callable[[BaseException], None] | None = None
        # Per open connection (forgotten with it): its adapters and the statements PREPAREd on it.
        self.sessions: weakref.WeakKeyDictionary[AsyncConn, _Session] = weakref.WeakKeyDictionary()
        self._check: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._check is not None:
            self._check.cancel()
        await self.pool.close()

    def check_idle_connections(self) -> None:
        """After a connection-level failure, test the idle connections in the background.

        Requests take pooled connections unchecked (one round trip each), so after a database
        restart every idle connection is dead; `pool.check()` replaces them all at once instead of
        letting each fail one request. At most one check runs at a time.
        """
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._check_pool())

    async def _check_pool(self) -> None:
        try:
            await self.pool.check()
        except Exception as exc:  # noqa: BLE001 - a failed check only means the next one retries
            log.info("pool check failed: %s", type(exc).__name__)

    def transaction(self, user: User) -> OneStatementTransaction:
        return OneStatementTransaction(self, user)

    def session(self, conn: AsyncConn) -> _Session:
        session = self.sessions.get(conn)
        if session is None:
            session = self.sessions[conn] = _Session(Transformer(conn))
        return session


class OneStatementTransaction:
    """The request's one transaction, for `user`: it runs exactly one statement, once.

    `run` sends the role and user set-up (with the revocation check) and the statement in one
    string, one round trip, and returns only after the transaction committed, so a response
    never reports a write that was lost. A second `run` raises: there is no second statement in
    the same transaction to be had, by design (one round trip per request).
    """

    __slots__ = ("_database", "_used", "user")

    def __init__(self, database: Database, user: User) -> None:
        self._database = database
        self.user = user
        self._used = False

    async def run(self, statement: Statement, params: Params) -> Result:
        if self._used:
            raise RuntimeError("a request transaction runs exactly one statement")
        self._used = True
        database = self._database
        user = self.user
        values = {
            **params,
            "request_user_id": user.id,
            "request_token_id": user.token_id,
            "request_issued_at": user.issued_at,
            "request_timeout": database.statement_timeout,
        }
        started = time.perf_counter_ns()
        try:
            timeout = await self._take_slot()
            try:
                return await self._send(statement, values, timeout)
            finally:
                database.slots.release()
        except (psycopg.Error, PoolTimeout, UnicodeEncodeError) as exc:
            if database.on_error is not None:
                database.on_error(exc)
            error = database_error(exc)
            if isinstance(exc, psycopg.OperationalError):
                database.check_idle_connections()
            raise error from None
        finally:
            add_db_time(started)

    async def _take_slot(self) -> float:
        """Wait for one of the pool's `max_size` slots; return what is left of the pool timeout."""
        slots, timeout = self._database.slots, self._database.pool_timeout
        if not slots.locked():
            await slots.acquire()  # free: returns at once
            return timeout
        started = time.monotonic()
        self._database.waiting += 1
        try:
            async with asyncio.timeout(timeout):
                await slots.acquire()
        except TimeoutError:
            raise PoolTimeout(f"no connection within {timeout:.2f} s") from None
        finally:
            self._database.waiting -= 1
        return max(timeout - (time.monotonic() - started), 0.0)

    async def _send(self, statement: Statement, values: dict[str, Any], pool_wait: float) -> Result:
        database = self._database
        # getconn/putconn rather than `pool.connection()`: that context manager also enters the
        # connection's own (commit or roll back on exit), which has nothing to do for a string
        # that is its own implicit transaction; putconn still rolls back or replaces a
        # connection left in a bad state.
        pool = database.pool
        conn = await pool.getconn(pool_wait)
        try:
            session = database.session(conn)
            preparing = False
            if not database.prepared_statements:
                template = statement.unprepared
            else:
                preparing = statement.name not in session.prepared
                template = statement.preparing if preparing else statement.prepared
            query = bind(template, values, session.transformer)
            pgconn = conn.pgconn
            try:
                pgconn.send_query(query)
                results = await conn.wait(execute(pgconn))
                for result in results:
                    if result.status == _FATAL_ERROR:
                        raise pg_errors.error_from_result(result, encoding=conn.info.encoding)
            except BaseException:
                # A PREPARE outlives the failed transaction it was sent in, unless the error
                # came before it; rather than guess, drop the connection (the pool replaces
                # it) so the statement is prepared afresh on the next one.
                if preparing:
                    await conn.close()
                raise
            if preparing:
                session.prepared.add(statement.name)
            return _result(results[-1])
        finally:
            await pool.putconn(conn)


def _result(result: pq.abc.PGresult) -> Result:
    """The rows of the route's statement as PostgreSQL sent them (text), and its row count."""
    columns = range(result.nfields)
    rows = [
        tuple(result.get_value(row, column) for column in columns) for row in range(result.ntuples)
    ]
    count = result.command_tuples
    return Result(rows, -1 if count is None else count)
