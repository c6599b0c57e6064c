"""The suite runs on the PostgreSQL it was asked for, and that one is supported (15-18)."""

from __future__ import annotations

import re
import subprocess

import psycopg

from tests.support.postgres import PostgresServer, configured_pg_bin

SUPPORTED_MAJORS = range(15, 19)


def _server_major(admin_url: str) -> int:
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("select current_setting('server_version_num')::int").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def test_the_server_is_a_supported_major(postgres_server: PostgresServer) -> None:
    assert _server_major(postgres_server.admin_url) in SUPPORTED_MAJORS


def test_the_server_is_the_one_test_pg_bin_names(postgres_server: PostgresServer) -> None:
    """A CI leg meant for 15 must not pass quietly on another server."""
    bin_dir = configured_pg_bin()
    if bin_dir is None:
        assert postgres_server.kind != "pg_bin"
        return
    version = subprocess.run(  # noqa: S603 - the configured binary
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"\) (\d+)", version)
    assert found is not None, version
    assert postgres_server.kind == "pg_bin"
    assert _server_major(postgres_server.admin_url) == int(found.group(1))
