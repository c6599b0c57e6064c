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

The string goes out through the libpq connection psycopg wraps (`pgconn.send_query`), psycopg's
`execute` generator flushes it and collects the results, and the route's result comes back as the
raw text PostgreSQL sent, which the services read (the task JSON is passed on as it is).
psycopg's cursor, its query parser and its result loaders cost ~50 µs of client CPU per request
more (#8: 77 vs 24 µs for one sequential round trip).

Connections come from psycopg_pool (which opens, checks, replaces, sizes and retires them), and
`Database.execute` schedules the requests onto them (#10):
- while fewer than `DB_POOL_MAX_SIZE` are out, a request takes one from the pool; otherwise it
  queues (first come, first served) for at most `DB_POOL_TIMEOUT_SECONDS`;
- the `execute` generator is driven by the event loop's reader callback for the connection's
  socket (one registration for as long as the connection is out, no timer), not by
  `AsyncConnection.wait`, which registers and removes the reader and a timer at every wait;
- the callback that reads a request's last result hands the connection straight to the first
  queued request and sends its string, so the connection does not sit idle until either
  request's coroutine runs again, and the queued request suspends once (for its result) instead
  of twice (for a connection, then for its result), each time through the ~30 coroutine frames
  of the ASGI stack; when nobody is queued, the request returns the connection to the pool.
Under load, most requests then never touch the pool: in-process GET one task 1,053 k -> 907 k
instructions (callgrind, 32 concurrent requests on 20 connections; README, "What each change
bought").

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
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString, TypeAlias

import psycopg
from psycopg import abc, pq, sql
from psycopg import errors as pg_errors
from psycopg.adapt import Transformer
from psycopg.generators import execute
from psycopg.rows import TupleRow
from psycopg.waiting import Ready, Wait
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
# How many callers' begin lines `Database` keeps bound (as many as verified tokens are cached).
_BEGIN_LINES = 10_000
# psycopg's client-side placeholder syntax: %(name)s, and %% for a literal percent sign.
_PLACEHOLDER = re.compile(rb"%\((\w+)\)s|%%|%")

log = logging.getLogger(__name__)

_FATAL_ERROR = pq.ExecStatus.FATAL_ERROR
_CONNECTION_OK = pq.ConnStatus.OK
_WAIT_R, _WAIT_W = Wait.R, Wait.W
_READY_R, _READY_W = Ready.R, Ready.W


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


# `select todo_begin_request(user, token, issued_at, statement timeout);` in front of every
# request's statement: enters todo_app, sets app.user_id and the timeout, refuses a revoked token.
BEGIN_REQUEST = _template(_BEGIN_REQUEST)


@dataclass(frozen=True)
class Statement:
    """A route's statement, composed once at import into the three forms a request may send
    after its `BEGIN_REQUEST` line (`request_string`).

    `unprepared`: the statement. `preparing`: PREPARE (under the request role, so the plan is made
    for it) + EXECUTE, the first time on a connection. `prepared`: EXECUTE. Values are bound
    client-side into the placeholders, by psycopg's adapters.
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
            unprepared=_template(text),
            preparing=_template(prepare + execute),
            prepared=_template(execute),
        )


def bind(template: Template, values: Mapping[str, Any], adapters: abc.Transformer) -> bytes:
    """The query string: each placeholder replaced by its value as an SQL literal (psycopg's
    adapters: quoted and escaped text, numbers, `'…'::date`, NULL, …)."""
    literal = adapters.as_literal
    return b"".join(part if isinstance(part, bytes) else literal(values[part]) for part in template)


def begin_values(user: User, statement_timeout: str) -> dict[str, Any]:
    """The values of a request's `BEGIN_REQUEST` line."""
    return {
        "request_user_id": user.id,
        "request_token_id": user.token_id,
        "request_issued_at": user.issued_at,
        "request_timeout": statement_timeout,
    }


def request_string(
    template: Template, values: Mapping[str, Any], adapters: abc.Transformer
) -> bytes:
    """The whole string a request sends: its `BEGIN_REQUEST` line, then `template` (a form of its
    `Statement`); `values` holds both's (`begin_values`)."""
    return bind(BEGIN_REQUEST, values, adapters) + bind(template, values, adapters)


class Result:
    """What the route's statement returned: its rows, each value the text PostgreSQL sent (NULL
    is None), read from the result when asked for, and how many rows it affected."""

    __slots__ = ("_result", "rowcount")

    def __init__(self, result: pq.abc.PGresult) -> None:
        self._result = result
        count = result.command_tuples
        self.rowcount = -1 if count is None else count

    def __len__(self) -> int:
        return self._result.ntuples

    def row(self, number: int) -> Row:
        result = self._result
        return tuple(result.get_value(number, column) for column in range(result.nfields))

    @property
    def rows(self) -> list[Row]:
        return [self.row(number) for number in range(len(self))]

    def column(self, column: int, rows: int | None = None) -> list[bytes | None]:
        """The values of one column, of the first `rows` rows (all by default)."""
        get = self._result.get_value
        count = len(self) if rows is None else min(rows, len(self))
        return [get(number, column) for number in range(count)]

    def first(self) -> Row | None:
        return self.row(0) if len(self) else None

    def one(self) -> Row:
        """The row of a statement that always yields exactly one (an aggregate, INSERT VALUES)."""
        if len(self) != 1:
            raise RuntimeError(f"the statement returned {len(self)} rows, not one")
        return self.row(0)


class RequestConnection(psycopg.AsyncConnection[TupleRow]):
    """A pooled connection that carries the request driver's state for it (`Database.lane`).

    Kept on the connection itself, the state lives exactly as long as the connection does. (A
    `WeakKeyDictionary` keyed by the connection never let go: the psycopg `Transformer` in the
    value refers to its connection.)
    """

    todo_lane: _Lane | None = None


AsyncConn: TypeAlias = RequestConnection


class _Lane:
    """What the request driver keeps per connection: its value adapters, the statements
    PREPAREd on it, and the request whose string it is running (with psycopg's `execute`
    generator for it and what the event loop watches its socket for)."""

    __slots__ = ("conn", "fd", "gen", "job", "pgconn", "prepared", "reading", "transformer",
                 "wait", "writing")  # fmt: skip

    def __init__(self, conn: AsyncConn) -> None:
        self.conn = conn
        self.pgconn = conn.pgconn
        self.transformer: abc.Transformer = Transformer(conn)
        self.prepared: set[str] = set()
        self.fd = -1
        self.job: _Job | None = None
        self.gen: abc.PQGen[list[pq.abc.PGresult]] | None = None
        self.wait = 0  # what the generator waits for (psycopg's Wait)
        self.reading = False  # registered with the loop
        self.writing = False


Future: TypeAlias = "asyncio.Future[Result]"


class _Job:
    """One request's string: the statement and values, and the future its request awaits."""

    __slots__ = ("abandoned", "close", "future", "give_back", "lane", "params", "preparing",
                 "statement", "timer", "user")  # fmt: skip

    def __init__(self, statement: Statement, params: Params, user: User, future: Future) -> None:
        self.statement = statement
        self.params = params
        self.user = user
        self.future = future
        self.lane: _Lane | None = None  # while its string runs
        self.preparing = False
        self.timer: asyncio.TimerHandle | None = None  # while it is queued
        # The connection to return to the pool once the request's coroutine runs again (or at
        # once, from a task, when that coroutine is gone: `abandoned`); `close` it first.
        self.give_back: _Lane | None = None
        self.close = False
        self.abandoned = False


def create_pool(settings: Settings) -> AsyncConnectionPool[AsyncConn]:
    """A pool created closed; the application lifespan opens and closes it."""
    return AsyncConnectionPool(
        settings.database_url.get_secret_value(),
        connection_class=RequestConnection,
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
    """The pool, the settings every request transaction needs, and the requests' scheduling
    onto pooled connections (see the module docstring)."""

    # The loop it was opened in, kept: asyncio.get_running_loop() makes a getpid() system call
    # every time. Requests (and so the loop callbacks) run only once it is open.
    _loop: asyncio.AbstractEventLoop

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = create_pool(settings)
        self.statement_timeout = str(settings.db_statement_timeout_ms)
        self.prepared_statements = settings.db_prepared_statements
        self.pool_timeout = settings.db_pool_timeout_seconds
        # Connections requests have taken from the pool and not given back yet; at most
        # max_size, beyond that requests queue here (psycopg_pool's own queue, a Condition and
        # a wait_for task per waiting request, cost 130-280 µs more CPU per request: #8).
        self.max_in_use = settings.db_pool_max_size
        self.in_use = 0
        self.queue: deque[_Job] = deque()
        # Told of every exception a request transaction raises (metrics count them by SQLSTATE).
        self.on_error: Callable[[BaseException], None] | None = None
        self._check: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # returns of abandoned requests' connections
        # Each recent caller's BEGIN_REQUEST line, bound once: the same token comes back request
        # after request, and binding it costs more than the statement (its timestamp alone
        # 3.4 µs). Every connection has the same settings, so the same literals.
        self._begin_lines: dict[tuple[str, str, datetime | None], bytes] = {}

    @property
    def waiting(self) -> int:
        """Requests waiting for a connection now (metrics)."""
        return len(self.queue)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.pool.open(wait=False)

    async def close(self) -> None:
        if self._check is not None:
            self._check.cancel()
        while self.queue:  # none should be left: the server drained its requests first
            self._expire(self.queue[0], "the service is stopping")
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

    @staticmethod
    def lane(conn: AsyncConn) -> _Lane:
        lane = conn.todo_lane
        if lane is None:
            lane = conn.todo_lane = _Lane(conn)
        return lane

    async def execute(self, statement: Statement, params: Params, user: User) -> Result:
        """Run `user`'s request string (`request_string`) on a pooled connection and return its
        statement's rows.

        Raises what the string raised (`psycopg.Error`, or `UnicodeEncodeError` for a value
        PostgreSQL text cannot hold), or `PoolTimeout`; the transaction is then rolled back.
        """
        loop = self._loop
        job = _Job(statement, params, user, loop.create_future())
        if self.in_use < self.max_in_use:
            self.in_use += 1
            try:
                conn = await self.pool.getconn(self.pool_timeout)
            except BaseException:
                self.in_use -= 1
                raise
            self._start(job, self.lane(conn))
        else:
            self.queue.append(job)
            job.timer = loop.call_later(self.pool_timeout, self._expire, job)
        try:
            return await job.future
        finally:
            if job.give_back is not None:
                await self._give_back(job.give_back, job.close)
            elif job.lane is not None:
                job.abandoned = True  # cancelled while its string runs: see `_free`
            elif job.timer is not None:  # cancelled while queued
                job.timer.cancel()
                self.queue.remove(job)

    def _expire(self, job: _Job, reason: str = "") -> None:
        """A queued job gives up: no connection came within the pool timeout."""
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        self.queue.remove(job)
        job.future.set_exception(
            PoolTimeout(reason or f"no connection within {self.pool_timeout} s")
        )

    def _start(self, job: _Job, lane: _Lane, *, arm_later: bool = False) -> None:
        """Send the job's string on `lane`; the loop then calls `_ready` as its socket is.

        `arm_later`: called from the loop's callback for the same socket (see `_arm`).
        """
        statement = job.statement
        if not self.prepared_statements:
            template = statement.unprepared
        else:
            job.preparing = statement.name not in lane.prepared
            template = statement.preparing if job.preparing else statement.prepared
        job.lane = lane
        lane.job = job
        try:
            query = self._begin_line(job.user, lane.transformer) + bind(
                template, job.params, lane.transformer
            )
        except UnicodeEncodeError as exc:  # nothing was sent: the connection is as it was
            self._end(lane, job, exc, close=False)
            return
        pgconn = lane.pgconn
        try:
            pgconn.send_query(query)
            lane.gen = execute(pgconn)
            lane.wait = next(lane.gen)
        except BaseException as exc:  # noqa: BLE001 - the connection failed; the request says so
            self._end(lane, job, exc, close=True)
            return
        if arm_later:
            self._loop.call_soon(self._arm, lane, job)
        else:
            self._arm(lane, job)

    def _begin_line(self, user: User, adapters: abc.Transformer) -> bytes:
        key = (user.id, user.token_id, user.issued_at)
        line = self._begin_lines.get(key)
        if line is None:
            if len(self._begin_lines) >= _BEGIN_LINES:
                del self._begin_lines[next(iter(self._begin_lines))]  # the oldest
            values = begin_values(user, self.statement_timeout)
            line = self._begin_lines[key] = bind(BEGIN_REQUEST, values, adapters)
        return line

    def _arm(self, lane: _Lane, job: _Job) -> None:
        """Have the loop call `_ready` when the lane's socket is ready for what its generator
        waits for (`lane.wait`), unless the job is over by now.

        Adding a reader where one is registered only swaps its callback: a connection handed
        from one request to the next stays registered, no system call. But after an error event
        on the socket (POLLERR: the server reset the connection) uvloop runs the callback once
        and then closes its poll handle, leaving it registered and dead; adding to it raises
        RuntimeError, and it is then removed and made anew. The close comes right after the
        callback, so a callback never arms its own socket: it defers that with `call_soon`.
        """
        if lane.job is not job:
            return
        loop = self._loop
        if lane.fd < 0:
            lane.fd = lane.pgconn.socket
        reading, writing = bool(lane.wait & _WAIT_R), bool(lane.wait & _WAIT_W)
        if reading:
            _register(loop.add_reader, loop.remove_reader, lane.fd, self._ready, lane, _READY_R)
        elif lane.reading:
            loop.remove_reader(lane.fd)
        if writing:
            _register(loop.add_writer, loop.remove_writer, lane.fd, self._ready, lane, _READY_W)
        elif lane.writing:
            loop.remove_writer(lane.fd)
        lane.reading, lane.writing = reading, writing

    def _disarm(self, lane: _Lane) -> None:
        loop = self._loop
        if lane.reading:
            loop.remove_reader(lane.fd)
        if lane.writing:
            loop.remove_writer(lane.fd)
        lane.reading = lane.writing = False

    def _ready(self, lane: _Lane, ready: int) -> None:
        """The loop's callback: the socket is ready; drive the generator one step on."""
        job, gen = lane.job, lane.gen
        if job is None or gen is None:  # nothing in flight: only a lost connection says anything
            self._disarm(lane)
            return
        try:
            lane.wait = gen.send(ready)
        except StopIteration as done:
            self._done(lane, job, done.value)
        except BaseException as exc:  # noqa: BLE001 - the connection failed; the request says so
            self._end(lane, job, exc, close=True)
        else:
            self._loop.call_soon(self._arm, lane, job)

    def _done(self, lane: _Lane, job: _Job, results: list[pq.abc.PGresult]) -> None:
        """The string's results are in: the request's rows, or the error that rolled it back."""
        outcome: Result | BaseException
        close = False
        try:
            error = next((result for result in results if result.status == _FATAL_ERROR), None)
            if error is not None:
                outcome = pg_errors.error_from_result(error, encoding=lane.conn.info.encoding)
                # A PREPARE outlives the failed transaction it was sent in, unless the error
                # came before it; rather than guess, the connection is closed (the pool replaces
                # it) so the statement is prepared afresh on the next one.
                close = job.preparing
            elif results:
                outcome = Result(results[-1])
                if job.preparing:
                    lane.prepared.add(job.statement.name)
            else:
                outcome = psycopg.OperationalError("the connection ended without an answer")
                close = True
        except BaseException as exc:  # noqa: BLE001 - the request says so, the connection goes
            outcome, close = exc, True
        self._end(lane, job, outcome, close=close)

    def _end(self, lane: _Lane, job: _Job, outcome: Result | BaseException, *, close: bool) -> None:
        """The job's string is over: tell its request, and pass the connection on."""
        lane.job = lane.gen = None
        job.lane = None
        if not job.future.done():
            if isinstance(outcome, Result):
                job.future.set_result(outcome)
            else:
                job.future.set_exception(outcome)
        if close or lane.pgconn.status != _CONNECTION_OK:
            self._free(lane, job, close=True)
        elif not self._hand_on(lane):  # it stays registered with the loop for the next one
            self._free(lane, job, close=False)

    def _hand_on(self, lane: _Lane) -> bool:
        """Start the first queued request on the free `lane`; False when nobody is queued."""
        while self.queue:
            job = self.queue.popleft()
            if job.timer is not None:
                job.timer.cancel()
                job.timer = None
            if not job.future.cancelled():  # (a cancelled one's request is gone)
                self._start(job, lane, arm_later=True)  # ending at once, it passes the lane on
                return True
        return False

    def _free(self, lane: _Lane, job: _Job, *, close: bool) -> None:
        """Nobody is queued (or the connection is broken): back to the pool with it, from the
        coroutine of the request that used it last, or from a task when that one is gone."""
        self._disarm(lane)
        if job.abandoned:
            task = self._loop.create_task(self._give_back(lane, close))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            job.give_back, job.close = lane, close

    async def _give_back(self, lane: _Lane, close: bool) -> None:
        if not close and self._hand_on(lane):  # queued meanwhile: it goes to them instead
            return
        try:
            if close:
                await lane.conn.close()
            await self.pool.putconn(lane.conn)
        finally:
            self.in_use -= 1
        while self.queue and self.in_use < self.max_in_use:  # queued meanwhile, and room now
            self.in_use += 1
            try:
                conn = await self.pool.getconn(self.pool_timeout)
            except Exception:  # noqa: BLE001 - the queued requests time out on their own (503)
                self.in_use -= 1
                return
            if not self._hand_on(self.lane(conn)):  # they timed out or went meanwhile
                self.in_use -= 1
                await self.pool.putconn(conn)


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
        started = time.perf_counter_ns()
        try:
            return await database.execute(statement, params, self.user)
        except (psycopg.Error, PoolTimeout, UnicodeEncodeError) as exc:
            if database.on_error is not None:
                database.on_error(exc)
            error = database_error(exc)
            if isinstance(exc, psycopg.OperationalError):
                database.check_idle_connections()
            raise error from None
        finally:
            add_db_time(started)


def _register(
    add: Callable[..., None], remove: Callable[[int], object], fd: int, *args: Any
) -> None:
    """`loop.add_reader` (or `add_writer`), replacing a poll handle uvloop closed (see `_arm`)."""
    try:
        add(fd, *args)
    except RuntimeError:
        remove(fd)
        add(fd, *args)
