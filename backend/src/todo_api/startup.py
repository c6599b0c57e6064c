"""The database check `todo-api check` prints and `todo-api serve` refuses to start on."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from todo_api import migrations
from todo_api.catalog import Grant
from todo_api.config import Settings
from todo_api.safety import SafetyReport, inspect_database

# Refusals by the server that waiting will not cure (unlike "the database system is starting up").
_PERMANENT_REFUSALS = (
    "does not exist",
    "password authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
)


class StartupRefused(Exception):
    """The service must not serve; the message is the one line an operator reads."""


@dataclass(frozen=True)
class DatabaseState:
    """Row-level security as the catalogs show it, and the migrations not yet applied."""

    report: SafetyReport
    pending: list[str]

    def refusal(self) -> str | None:
        """Why the service must not serve this database, in one line; None when it may."""
        if self.pending:
            return (
                f"migrations not at head ({len(self.pending)} pending: "
                f"{', '.join(self.pending)}); run `todo-api migrate`"
            )
        if not self.report.safe:
            return "unsafe database: " + "; ".join(self.report.problems)
        return None

    def render(self) -> str:
        migrations_line = (
            f"{len(self.pending)} pending ({', '.join(self.pending)})"
            if self.pending
            else "at head"
        )
        return f"{self.report.render()}\nMigrations: {migrations_line}"

    def as_dict(self) -> dict[str, Any]:
        return self.report.as_dict() | {
            "migrations": {"at_head": not self.pending, "pending": self.pending}
        }


def examine_database(
    database_url: str, *, connect_timeout: int, expected_grants: frozenset[Grant] | None = None
) -> DatabaseState:
    """Read the catalogs and yoyo's bookkeeping; psycopg errors propagate to the caller."""
    with psycopg.connect(database_url, connect_timeout=connect_timeout) as conn:
        report = inspect_database(conn, expected_grants)
    return DatabaseState(report, migrations.pending(database_url))


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
            state = examine_database(url, connect_timeout=settings.db_connect_timeout_seconds)
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
    refusal = state.refusal()
    if refusal is not None:
        raise StartupRefused(refusal)
