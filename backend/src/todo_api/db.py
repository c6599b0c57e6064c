"""The connection pool and the one request-transaction helper (T003).

Every request that touches data runs as exactly one transaction, sent to Postgres in one round
trip (psycopg pipeline mode, then one Sync):

    select todo_begin_request(user_id, token_id, issued_at, statement_timeout)
        -- SET LOCAL ROLE todo_app, statement_timeout, app.user_id; refuses a revoked token
    <the route's one statement>
    Sync

Without an explicit BEGIN, the extended query protocol runs everything up to the Sync as one
implicit transaction: it commits at the Sync when every statement succeeded, and rolls back
entirely when one failed (the statements after it are skipped). That is BEGIN ... COMMIT without
the two extra statements. Role, timeout and user are transaction-local (`set_config(..., true)`),
so nothing carries over to the next user of a pooled connection, also behind PgBouncer in
transaction mode (which hands the server connection back only at the transaction's end).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, LiteralString, TypeAlias

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from todo_api.config import Settings
from todo_api.errors import Conflict, ServiceUnavailable, TokenRevoked, ValidationFailed
from todo_api.identity import User

REQUEST_ROLE = "todo_app"

Query: TypeAlias = LiteralString | sql.Composed | sql.SQL
Params: TypeAlias = Mapping[str, Any] | Sequence[Any] | None

_BEGIN_REQUEST: LiteralString = "select todo_begin_request(%s, %s, %s, %s)"

log = logging.getLogger(__name__)

AsyncConn: TypeAlias = psycopg.AsyncConnection[TupleRow]


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
            # We send BEGIN/COMMIT ourselves, inside the pipeline.
            "autocommit": True,
            "connect_timeout": settings.db_connect_timeout_seconds,
            # Behind PgBouncer (transaction mode) prepared statements must be off.
            "prepare_threshold": 5 if settings.db_prepared_statements else None,
            "application_name": "todo-api",
        },
    )


class Database:
    """The pool plus the settings every request transaction needs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = create_pool(settings)
        self.statement_timeout = str(settings.db_statement_timeout_ms)
        self._check: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._check is not None:
            self._check.cancel()
        await self.pool.close()

    async def recover(self, conn: AsyncConn) -> None:
        """Leave a connection whose pipeline failed fit for the next request, or closed.

        With prepared statements on, psycopg (3.3) keeps a statement marked as prepared when the
        pipeline that was to prepare it was aborted by an earlier error (a revoked token, say), and
        every later use on that connection fails with "prepared statement does not exist". Closing
        is the public way to drop that cache; the pool replaces a closed connection.
        """
        if conn.closed:
            return
        if self.settings.db_prepared_statements:
            await conn.close()
        elif conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.execute("ROLLBACK")

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
    revocation check) and the statement in one round trip, and returns only after the transaction
    committed, so a response never reports a write that was lost.
    """

    def __init__(self, database: Database, user: User) -> None:
        self._database = database
        self.user = user
        self._used = False

    async def fetchone(self, query: Query, params: Params = None) -> TupleRow | None:
        rows, _ = await self._run(query, params)
        return rows[0] if rows else None

    async def fetchall(self, query: Query, params: Params = None) -> list[TupleRow]:
        rows, _ = await self._run(query, params)
        return rows

    async def execute(self, query: Query, params: Params = None) -> int:
        """Run a statement without a result set; return its row count."""
        _, rowcount = await self._run(query, params)
        return rowcount

    async def _run(self, query: Query, params: Params) -> tuple[list[TupleRow], int]:
        if self._used:
            raise RuntimeError("a request transaction runs exactly one statement")
        self._used = True
        user = self.user
        try:
            async with self._database.pool.connection() as conn:
                try:
                    # Leaving the pipeline block sends the Sync that commits the implicit
                    # transaction and reads every result: one round trip. An error rolls the
                    # whole transaction back, skips the rest, and is raised here.
                    async with conn.pipeline():
                        await conn.execute(
                            _BEGIN_REQUEST,
                            (
                                user.id,
                                user.token_id,
                                user.issued_at,
                                self._database.statement_timeout,
                            ),
                        )
                        cursor = await conn.execute(query, params)
                    rows = await cursor.fetchall() if cursor.description else []
                    return rows, cursor.rowcount
                except psycopg.Error:
                    await self._database.recover(conn)
                    raise
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
            raise ValidationFailed(
                "The request violates a data constraint.",
                errors=[{"loc": ["body"], "msg": "violates a data constraint"}],
            ) from None
        except (PoolTimeout, psycopg.OperationalError) as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            if not isinstance(exc, PoolTimeout):
                self._database.check_idle_connections()
            raise ServiceUnavailable() from None
