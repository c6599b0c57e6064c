"""All task SQL (T009, T010). Literal, parameterized statements; every one carries `user_id`.

Row-level security already confines each statement to the caller's rows; the explicit
`user_id = %(user_id)s` predicate is defense in depth and lets Postgres use the per-user indexes.
"""

from __future__ import annotations

from todo_api.db import RequestTransaction

_COUNT_TASKS = """
select count(*), count(*) filter (where not completed), count(*) filter (where completed)
from tasks
where user_id = %(user_id)s
"""


async def count_tasks(conn: RequestTransaction, user_id: str) -> tuple[int, int, int]:
    """(total, pending, completed) for the user."""
    row = await conn.fetchone(_COUNT_TASKS, {"user_id": user_id})
    if row is None:  # an aggregate always returns a row
        return 0, 0, 0
    return int(row[0]), int(row[1]), int(row[2])
