"""The connection pool and the one request-transaction helper (T003).

Every request that touches data runs as exactly one transaction, sent to Postgres as ONE simple
query string (one round trip), its values bound client-side by psycopg's `AsyncClientCursor`:

    select todo_begin_request(user_id, token_id, issued_at, statement_timeout);
        -- SET LOCAL ROLE todo_app, statement_timeout, app.user_id; refuses a revoked token
    <the route's one statement>

The simple query protocol runs a string of several statements as one implicit transaction: it
commits after the last one when every statement succeeded, and rolls back entirely when one
failed (the statements after it are skipped). That is BEGIN ... COMMIT without the two extra
statements, and the same semantics the extended protocol gives a pipeline up to its Sync; but
psycopg's pipeline machinery cost ~130 µs more client CPU per request than this string (#8).
Role, timeout and user are transaction-local (`set_config(..., true)`), so nothing carries over to
the next user of a pooled connection, also behind PgBouncer in transaction mode (which hands the
server connection back only at the transaction's end).

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, LiteralString, TypeAlias

import psycopg
from psycopg import AsyncClientCursor, sql
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from todo_api.config import Settings
from todo_api.errors import Conflict, ServiceUnavailable, TokenRevoked, ValidationFailed
from todo_api.identity import User

REQUEST_ROLE = "todo_app"

Params: TypeAlias = Mapping[str, Any]

# The names todo_begin_request's values travel under; a statement may not use them itself.
_REQUEST_PARAMS = ("request_user_id", "request_token_id", "request_issued_at", "request_timeout")
_BEGIN_REQUEST = (
    b"select todo_begin_request("
    + b", ".join(b"%%(%s)s" % name.encode() for name in _REQUEST_PARAMS)
    + b");\n"
)
_PLACEHOLDER = re.compile(rb"%\((\w+)\)s")

log = logging.getLogger(__name__)

AsyncConn: TypeAlias = psycopg.AsyncConnection[TupleRow]


@dataclass(frozen=True)
class Statement:
    """A route's statement, composed once at import into the three strings a request may send.

    `unprepared`: begin + the statement. `preparing`: begin + PREPARE (under the request role, so
    the plan is made for it) + EXECUTE, the first time on a connection. `prepared`: begin +
    EXECUTE. Values are bound client-side into the `%(name)s` placeholders.
    """

    name: str
    unprepared: bytes
    preparing: bytes
    prepared: bytes

    @classmethod
    def of(cls, query: LiteralString | sql.Composable) -> Statement:
        text = query.encode() if isinstance(query, str) else query.as_bytes(None)
        names: list[bytes] = []
        for name in _PLACEHOLDER.findall(text):
            if name not in names:
                names.append(name)
        if any(name.decode() in _REQUEST_PARAMS for name in names):
            raise ValueError("a statement may not use todo_begin_request's parameter names")
        numbered = _PLACEHOLDER.sub(lambda m: b"$%d" % (names.index(m.group(1)) + 1), text)
        name = "todo_" + hashlib.sha256(text).hexdigest()[:16]
        execute = b"execute " + name.encode()
        if names:
            execute += b"(" + b", ".join(b"%%(%s)s" % n for n in names) + b")"
        prepare = b"prepare " + name.encode() + b" as " + numbered + b";\n"
        return cls(
            name=name,
            unprepared=_BEGIN_REQUEST + text,
            preparing=_BEGIN_REQUEST + prepare + execute,
            prepared=_BEGIN_REQUEST + execute,
        )


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
        # The statements PREPAREd on each open connection (forgotten with the connection).
        self.prepared: weakref.WeakKeyDictionary[AsyncConn, set[str]] = weakref.WeakKeyDictionary()
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

    def transaction(self, user: User) -> RequestTransaction:
        return RequestTransaction(self, user)


class RequestTransaction:
    """The request's one transaction: a single statement, run as `todo_app` for `user`.

    It is used once: `fetchone`, `fetchall` or `execute` sends the role and user set-up (with the
    revocation check) and the statement in one string, one round trip, and returns only after the
    transaction committed, so a response never reports a write that was lost.
    """

    def __init__(self, database: Database, user: User) -> None:
        self._database = database
        self.user = user
        self._used = False

    async def fetchone(self, statement: Statement, params: Params) -> TupleRow | None:
        rows, _ = await self._run(statement, params)
        return rows[0] if rows else None

    async def fetchall(self, statement: Statement, params: Params) -> list[TupleRow]:
        rows, _ = await self._run(statement, params)
        return rows

    async def execute(self, statement: Statement, params: Params) -> int:
        """Run a statement without a result set; return its row count."""
        _, rowcount = await self._run(statement, params)
        return rowcount

    async def _run(self, statement: Statement, params: Params) -> tuple[list[TupleRow], int]:
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
        try:
            timeout = await self._take_slot()
            try:
                return await self._send(statement, values, timeout)
            finally:
                database.slots.release()
        except pg_errors.InvalidAuthorizationSpecification:
            raise TokenRevoked() from None
        except pg_errors.UniqueViolation as exc:
            # Only an idempotency key can collide (task ids are generated): a twin request with
            # the same key committed while this one ran. Nothing of this one was kept.
            log.info("unique violation: %s", exc.diag.constraint_name)
            raise Conflict() from None
        except (pg_errors.CheckViolation, pg_errors.NotNullViolation, pg_errors.DataError) as exc:
            # API validation should have caught it; the database is the last line.
            log.info("constraint refused a write: %s", exc.diag.constraint_name or exc.sqlstate)
            raise _constraint_refused() from None
        except UnicodeEncodeError:
            # A value PostgreSQL text cannot hold (a lone surrogate): binding it client-side
            # fails before anything is sent, where the server would have refused it.
            log.info("constraint refused a write: not encodable")
            raise _constraint_refused() from None
        except (PoolTimeout, psycopg.OperationalError) as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            if not isinstance(exc, PoolTimeout):
                self._database.check_idle_connections()
            raise ServiceUnavailable() from None

    async def _take_slot(self) -> float:
        """Wait for one of the pool's `max_size` slots; return what is left of the pool timeout."""
        slots, timeout = self._database.slots, self._database.pool_timeout
        if not slots.locked():
            await slots.acquire()  # free: returns at once
            return timeout
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                await slots.acquire()
        except TimeoutError:
            raise PoolTimeout(f"no connection within {timeout:.2f} s") from None
        return max(timeout - (time.monotonic() - started), 0.0)

    async def _send(
        self, statement: Statement, values: dict[str, Any], pool_wait: float
    ) -> tuple[list[TupleRow], int]:
        database = self._database
        async with database.pool.connection(pool_wait) as conn:
            preparing = False
            if not database.prepared_statements:
                query = statement.unprepared
            else:
                prepared = database.prepared.setdefault(conn, set())
                preparing = statement.name not in prepared
                query = statement.preparing if preparing else statement.prepared
            cursor = AsyncClientCursor(conn)
            try:
                await cursor.execute(query, values)
            except BaseException:
                # A PREPARE outlives the failed transaction it was sent in, unless the error
                # came before it; rather than guess, drop the connection (the pool replaces
                # it) so the statement is prepared afresh on the next one.
                if preparing:
                    await conn.close()
                raise
            if preparing:
                prepared.add(statement.name)
                cursor.nextset()  # past PREPARE
            cursor.nextset()  # past todo_begin_request, to the route's statement
            rows = await cursor.fetchall() if cursor.description else []
            return rows, cursor.rowcount


def _constraint_refused() -> ValidationFailed:
    return ValidationFailed(
        "The request violates a data constraint.",
        errors=[{"loc": ["body"], "msg": "violates a data constraint"}],
    )
