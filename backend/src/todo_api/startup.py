"""Start-up checks: refuse to serve an unsafe or un-migrated database."""

from __future__ import annotations

import time

import psycopg

from todo_api import migrations
from todo_api.config import Settings
from todo_api.safety import inspect_database


class StartupRefused(Exception):
    """The service must not serve; the message is the one line an operator reads."""


def verify_database(settings: Settings, *, wait_seconds: float = 30.0) -> None:
    """Wait for the database, then check migrations are at head and RLS cannot be bypassed."""
    url = settings.database_url.get_secret_value()
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with psycopg.connect(url, connect_timeout=settings.db_connect_timeout_seconds) as conn:
                report = inspect_database(conn)
            pending = migrations.pending(url)
            break
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise StartupRefused(
                    "database unreachable: cannot connect with DATABASE_URL"
                ) from None
            time.sleep(1.0)
    if pending:
        raise StartupRefused(
            f"migrations not at head ({len(pending)} pending: {', '.join(pending)}); "
            "run `todo-api migrate`"
        )
    if not report.safe:
        raise StartupRefused("unsafe database: " + "; ".join(report.problems))
