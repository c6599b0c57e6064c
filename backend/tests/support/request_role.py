"""SQL run the way a request runs it: through the database's own entry point.

Every request transaction of the service starts with `select todo_begin_request(user, token id,
iat, statement timeout)` (sql/0003): it enters `todo_app`, sets the statement timeout and
`app.user_id` transaction-locally, and refuses a revoked token. The tests enter a request the
same way, so what they prove about row-level security holds for the service's transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg

from todo_api.config import Settings

# The service's default, as the request transaction passes it (milliseconds, as text).
STATEMENT_TIMEOUT = str(Settings.model_fields["db_statement_timeout_ms"].default)


@contextmanager
def as_request_role(
    database_url: str,
    user_id: str,
    *,
    token_id: str | None = None,
    issued_at: datetime | None = None,
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction begun exactly as a request's: `select todo_begin_request(...)` first.

    The transaction is rolled back at the end unless the test commits.
    """
    with psycopg.connect(database_url) as conn:
        begin_request(conn, user_id, token_id=token_id, issued_at=issued_at)
        yield conn
        conn.rollback()


def begin_request(
    conn: psycopg.Connection[Any],
    user_id: str,
    *,
    token_id: str | None = None,
    issued_at: datetime | None = None,
) -> psycopg.Connection[Any]:
    """Begin a transaction on `conn` as a request's: `select todo_begin_request(...)` first."""
    conn.execute(
        "select todo_begin_request(%s, %s, %s, %s)",
        (user_id, token_id, issued_at, STATEMENT_TIMEOUT),
    )
    return conn
