"""The database's own title check (`tasks_title_trimmed`), evaluated over every code point."""

from __future__ import annotations

from typing import LiteralString, cast

import psycopg
from psycopg import sql

MAX_CODE_POINT = 0x10FFFF
SURROGATES = range(0xD800, 0xE000)  # no character of their own; PostgreSQL's chr() refuses them


def database_title_whitespace(database_url: str) -> set[str]:
    """Every code point c for which the database refuses the title c + 'x' as untrimmed."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select pg_get_expr(conbin, conrelid) from pg_constraint"
            " where conrelid = 'tasks'::regclass and conname = 'tasks_title_trimmed'"
        ).fetchone()
        assert row is not None, "tasks_title_trimmed is missing"
        # The expression names the column `title`: evaluate it over one row per code point.
        check = sql.SQL(cast(LiteralString, row[0]))
        query = sql.SQL(
            "select c from generate_series(1, %(max)s) as c"
            " cross join lateral (select chr(c) || 'x' as title) as tasks"
            " where c not between %(lo)s and %(hi)s and not ({check})"
        ).format(check=check)
        rows = conn.execute(
            query, {"max": MAX_CODE_POINT, "lo": SURROGATES[0], "hi": SURROGATES[-1]}
        ).fetchall()
    return {chr(c) for (c,) in rows}
