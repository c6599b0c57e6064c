"""`todo-api serve`: the production server runs N workers, or refuses with one line."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.support.cli import (
    Server,
    alive,
    one_error_line,
    port_held,
    run_cli,
    serve_env,
    wait_gone,
)
from tests.support.databases import create_scratch_database, url_for_database
from tests.support.network import free_port
from tests.support.postgres import PostgresServer
from tests.support.tokens import new_user_id
from todo_api import migrations


def _workers(server: Server) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


def test_serve_with_two_workers_answers_probes_and_accepts_a_minted_token(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    env = serve_env(database_url)
    args = ("serve", "--port", str(port), "--workers", "2")
    server = Server(*args, cwd=tmp_path, env=env, port=port)
    try:
        server.wait_until_healthy()
        workers = _workers(server)
        assert len(workers) == 2
        ready = server.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "database": "ok"}
        user = new_user_id()
        minted = run_cli("token", "--user", user, cwd=tmp_path, env=env)
        assert minted.returncode == 0, minted.stderr
        # Several requests, so both workers are likely to answer some: all must accept it.
        for _ in range(6):
            me = server.get("/api/users/me", minted.stdout.strip())
            assert me.status_code == 200, me.text
            assert me.json()["id"] == user
    finally:
        assert server.stop(signal.SIGTERM) == 0, server.stderr
    assert wait_gone(workers) == []
    assert "Traceback" not in server.stderr + server.stdout


def _invalid_secret(postgres_server: PostgresServer, database_url: str) -> dict[str, str]:
    return serve_env(database_url, BETTER_AUTH_SECRET="short-secret-value")


def _invalid_pool(postgres_server: PostgresServer, database_url: str) -> dict[str, str]:
    return serve_env(database_url, DB_POOL_MAX_SIZE="0")


def _missing_database(postgres_server: PostgresServer, database_url: str) -> dict[str, str]:
    return serve_env(url_for_database(database_url, "todo_no_such_database"))


def _not_migrated(postgres_server: PostgresServer, database_url: str) -> dict[str, str]:
    return serve_env(create_scratch_database(postgres_server.admin_url, prefix="todo_serve"))


def _rls_not_forced(postgres_server: PostgresServer, database_url: str) -> dict[str, str]:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_serve")
    migrations.apply(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # The login role owns the table: without FORCE, the owner bypasses every policy.
        conn.execute("alter table tasks no force row level security")
    return serve_env(url)


def _truncate_granted(postgres_server: PostgresServer, database_url: str) -> dict[str, str]:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_serve")
    migrations.apply(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # TRUNCATE ignores row-level security: one request could empty every user's tasks.
        conn.execute("grant truncate on tasks to todo_app")
    return serve_env(url)


@pytest.mark.parametrize(
    ("make_env", "expected"),
    [
        pytest.param(_invalid_secret, "BETTER_AUTH_SECRET", id="short-secret"),
        pytest.param(_invalid_pool, "DB_POOL_MAX_SIZE", id="invalid-pool-size"),
        pytest.param(_missing_database, "does not exist", id="missing-database"),
        pytest.param(_not_migrated, "migrations not at head", id="not-migrated"),
        pytest.param(_rls_not_forced, "row-level security is not forced", id="rls-not-forced"),
        pytest.param(_truncate_granted, "TRUNCATE is granted to todo_app", id="truncate-granted"),
    ],
)
def test_serve_refuses_with_one_line_before_binding_its_port(
    tmp_path: Path,
    postgres_server: PostgresServer,
    database_url: str,
    make_env: Callable[[PostgresServer, str], dict[str, str]],
    expected: str,
) -> None:
    env = make_env(postgres_server, database_url)
    port = free_port()
    # Had serve got as far as binding, it would report this port as taken instead.
    with port_held(port):
        result = run_cli("serve", "--port", str(port), cwd=tmp_path, env=env)
    assert result.returncode != 0
    line = one_error_line(result.stderr)
    assert expected in line
    assert "short-secret-value" not in result.stderr + result.stdout
    assert "Uvicorn running" not in result.stdout + result.stderr


def test_serve_refuses_a_taken_port_with_one_line(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    with port_held(port):
        result = run_cli("serve", "--port", str(port), cwd=tmp_path, env=serve_env(database_url))
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in one_error_line(result.stderr)


def test_serve_stops_its_workers_on_sigint(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    env = serve_env(database_url)
    args = ("serve", "--port", str(port), "--workers", "2")
    server = Server(*args, cwd=tmp_path, env=env, port=port)
    server.wait_until_healthy()
    workers = _workers(server)
    assert alive(workers)
    assert server.stop(signal.SIGINT) == 0, server.stderr
    assert wait_gone(workers) == []
