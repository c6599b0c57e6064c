"""SQL run the way a request runs it: as `todo_app`, with the caller in `app.user_id`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


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
