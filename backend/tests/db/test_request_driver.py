"""How `db.Database` runs request strings on pooled connections (#10), under uvloop as served.

More requests than connections queue and are handed connections in order, straight from the
callback that read the previous answer; a request that fails, times out, is cancelled or loses
its server ends alone, and the connections it held go back for the next ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import pytest
import uvloop
from psycopg_pool import PoolTimeout

from tests.support.dying_server import DyingServer
from tests.support.tokens import new_user_id
from todo_api.config import Settings
from todo_api.db import Database, Result, Statement
from todo_api.identity import User

T = TypeVar("T")

_BACKEND = Statement.of("select pg_backend_pid()::text, pg_sleep(%(seconds)s::float8)::text")
_ECHO = Statement.of("select %(value)s::text")
_DIVIDE = Statement.of("select (1 / %(divisor)s::int)::text")


def _user() -> User:
    now = datetime.now(UTC)
    token_id = "sha256:" + "0" * 64
    return User(new_user_id(), None, None, token_id, (token_id,), now, now + timedelta(hours=1))


def _run(database: Database, statement: Statement, **params: Any) -> Awaitable[Result]:
    return database.execute(statement, params, _user())


def _with_database(settings: Settings, scenario: Callable[[Database], Awaitable[T]]) -> T:
    """Run `scenario` on an open `Database` in uvloop, the loop `todo-api serve` runs."""

    async def main() -> T:
        database = Database(settings)
        await database.open()
        try:
            async with asyncio.timeout(30):
                return await scenario(database)
        finally:
            await database.close()

    return uvloop.run(main())


def _small(settings: Settings, connections: int, **update: Any) -> Settings:
    return settings.model_copy(
        update={"db_pool_min_size": 1, "db_pool_max_size": connections, **update}
    )


def test_more_requests_than_connections_all_complete_on_at_most_that_many_backends(
    settings: Settings,
) -> None:
    async def scenario(database: Database) -> tuple[list[Result], int]:
        results = await asyncio.gather(*(_run(database, _BACKEND, seconds=0.01) for _ in range(40)))
        return results, database.in_use

    results, still_out = _with_database(_small(settings, 2), scenario)
    assert len(results) == 40
    assert len({result.one()[0] for result in results}) <= 2
    assert still_out == 0  # every connection went back to the pool


def test_queued_requests_are_served_in_arrival_order(settings: Settings) -> None:
    async def scenario(database: Database) -> list[str]:
        finished: list[str] = []

        async def one(value: str) -> None:
            await _run(database, _ECHO, value=value)
            finished.append(value)

        first = asyncio.create_task(one("0"))
        await asyncio.sleep(0)  # the first takes the only connection
        others = [asyncio.create_task(one(str(n))) for n in range(1, 20)]
        await asyncio.gather(first, *others)
        return finished

    assert _with_database(_small(settings, 1), scenario) == [str(n) for n in range(20)]


def test_a_failing_statement_fails_its_request_alone_and_the_next_one_gets_the_connection(
    settings: Settings,
) -> None:
    async def scenario(database: Database) -> list[object]:
        outcomes = await asyncio.gather(
            _run(database, _BACKEND, seconds=0.05),
            _run(database, _DIVIDE, divisor=0),
            _run(database, _ECHO, value="after"),
            return_exceptions=True,
        )
        return [*outcomes, database.in_use]

    first, failed, after, out = _with_database(_small(settings, 1), scenario)
    assert isinstance(first, Result)
    assert isinstance(failed, psycopg.errors.DivisionByZero)
    assert isinstance(after, Result)
    assert after.one() == (b"after",)
    assert out == 0


def test_a_value_postgresql_cannot_hold_fails_its_request_alone(settings: Settings) -> None:
    async def scenario(database: Database) -> list[object]:
        return await asyncio.gather(
            _run(database, _BACKEND, seconds=0.05),
            _run(database, _ECHO, value="lone \udc80 surrogate"),
            _run(database, _ECHO, value="after"),
            return_exceptions=True,
        )

    first, refused, after = _with_database(_small(settings, 1), scenario)
    assert isinstance(first, Result)
    assert isinstance(refused, UnicodeEncodeError)
    assert isinstance(after, Result)
    assert after.one() == (b"after",)


def test_a_request_queued_past_the_pool_timeout_fails_and_the_queue_moves_on(
    settings: Settings,
) -> None:
    async def scenario(database: Database) -> list[object]:
        slow = asyncio.create_task(_run(database, _BACKEND, seconds=1.5))
        await asyncio.sleep(0.2)
        timed_out = await asyncio.gather(
            _run(database, _ECHO, value="late"), return_exceptions=True
        )
        waiting_after = database.waiting
        await slow
        after = await _run(database, _ECHO, value="after")
        return [timed_out[0], waiting_after, after.one(), database.in_use]

    timed_out, waiting, after, out = _with_database(
        _small(settings, 1, db_pool_timeout_seconds=0.5), scenario
    )
    assert isinstance(timed_out, PoolTimeout)
    assert waiting == 0
    assert after == (b"after",)
    assert out == 0


def test_cancelled_requests_leave_the_queue_and_give_their_connection_back(
    settings: Settings,
) -> None:
    async def scenario(database: Database) -> list[object]:
        running = asyncio.create_task(_run(database, _BACKEND, seconds=0.3))
        await asyncio.sleep(0.1)
        queued = asyncio.create_task(_run(database, _ECHO, value="never"))
        await asyncio.sleep(0.05)
        waiting_before = database.waiting
        queued.cancel()
        running.cancel()  # while its string runs: the connection comes back when it is done
        await asyncio.gather(running, queued, return_exceptions=True)
        waiting_after = database.waiting
        for _ in range(50):  # the abandoned string finishes in the background
            if database.in_use == 0:
                break
            await asyncio.sleep(0.05)
        after = await _run(database, _ECHO, value="after")
        return [waiting_before, waiting_after, database.in_use, after.one()]

    waiting_before, waiting_after, out, after = _with_database(_small(settings, 1), scenario)
    assert (waiting_before, waiting_after) == (1, 0)
    assert out == 0
    assert after == (b"after",)


def test_a_request_whose_server_dies_before_reading_its_string_is_answered(
    settings: Settings,
) -> None:
    """The server resets the connection (POLLERR) with the FATAL message readable: uvloop runs
    the reader once and closes its poll handle; the request must still get its answer, and the
    requests queued behind it a new connection."""
    with DyingServer(settings.database_url.get_secret_value()) as server:

        async def scenario(database: Database) -> list[object]:
            await _run(database, _ECHO, value="warm")  # the relayed connection exists
            server.die_on_next_request()
            dying = asyncio.create_task(_run(database, _ECHO, value="dies"))
            queued = asyncio.create_task(_run(database, _ECHO, value="queued"))
            assert await asyncio.to_thread(server.seen.wait, 10)
            server.let_die()  # the loop is blocked meanwhile: FATAL and reset in one event
            outcomes = await asyncio.gather(dying, queued, return_exceptions=True)
            after = await _run(database, _ECHO, value="after")
            return [*outcomes, after.one(), database.in_use]

        relayed = _small(settings, 1)
        relayed = relayed.model_copy(
            update={"database_url": type(settings.database_url)(server.url)}
        )
        died, queued, after, out = _with_database(relayed, scenario)
    assert server.killed == 1
    assert isinstance(died, psycopg.OperationalError)
    assert isinstance(queued, Result)
    assert queued.one() == (b"queued",)
    assert after == (b"after",)
    assert out == 0


@pytest.mark.parametrize("prepared", [True, False])
def test_many_concurrent_requests_with_failures_among_them_leave_nothing_behind(
    settings: Settings, prepared: bool
) -> None:
    async def scenario(database: Database) -> list[object]:
        calls = [
            _run(database, _DIVIDE, divisor=n % 5)
            if n % 7 == 0
            else _run(database, _ECHO, value=str(n))
            for n in range(300)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        return [outcomes, database.in_use, database.waiting]

    outcomes, out, waiting = _with_database(
        _small(settings, 3, db_prepared_statements=prepared), scenario
    )
    assert isinstance(outcomes, list)
    for n, outcome in enumerate(outcomes):
        if n % 7 == 0 and n % 5 == 0:
            assert isinstance(outcome, psycopg.errors.DivisionByZero)
        elif n % 7 == 0:
            assert isinstance(outcome, Result)
            assert outcome.one() == (str(1 // (n % 5)).encode(),)
        else:
            assert isinstance(outcome, Result)
            assert outcome.one() == (str(n).encode(),)
    assert (out, waiting) == (0, 0)


def test_each_request_runs_as_its_own_caller_whatever_the_begin_lines_kept(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound `todo_begin_request` line of a caller is kept and reused (db._BEGIN_LINES of
    them, the oldest dropped first): interleaved callers, more than are kept, each run as
    themselves."""
    monkeypatch.setattr("todo_api.db._BEGIN_LINES", 2)
    callers = [_user() for _ in range(5)]
    whoami = Statement.of("select current_setting('app.user_id', true)")

    async def scenario(database: Database) -> list[tuple[str, bytes | None]]:
        seen = []
        for _ in range(3):
            for caller in callers:
                result = await database.execute(whoami, {}, caller)
                seen.append((caller.id, result.one()[0]))
        return seen

    seen = _with_database(_small(settings, 2), scenario)
    assert [expected.encode() for expected, _ in seen] == [actual for _, actual in seen]
