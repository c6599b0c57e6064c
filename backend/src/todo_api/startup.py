"""Start-up checks: refuse to serve an unsafe or un-migrated database."""

from __future__ import annotations

import time

import psycopg

from todo_api import migrations
from todo_api.config import Settings
from todo_api.safety import inspect_database

# Refusals by the server that waiting will not cure (unlike "the database system is starting up").
_PERMANENT_REFUSALS = (
    "does not exist",
    "password authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
)


class StartupRefused(Exception):
    """The service must not serve; the message is the one line an operator reads."""


def _server_refusal(error: psycopg.OperationalError) -> str | None:
    """The server's own reason when it refused us for good (no secret is in it), else None."""
    for line in str(error).splitlines():
        _, fatal, reason = line.partition("FATAL:")
        if fatal and any(marker in reason for marker in _PERMANENT_REFUSALS):
            return reason.strip()
    return None


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
        except psycopg.OperationalError as exc:
            refusal = _server_refusal(exc)
            if refusal is not None:
                raise StartupRefused(
                    f"the database refused DATABASE_URL's connection: {refusal}"
                ) from None
            if time.monotonic() >= deadline:
                raise StartupRefused(
                    "database unreachable: cannot connect with DATABASE_URL"
                ) from None
            time.sleep(1.0)
        except psycopg.Error as exc:
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise StartupRefused(f"database check failed: {first_line}") from None
    if pending:
        raise StartupRefused(
            f"migrations not at head ({len(pending)} pending: {', '.join(pending)}); "
            "run `todo-api migrate`"
        )
    if not report.safe:
        raise StartupRefused("unsafe database: " + "; ".join(report.problems))
