"""The API's title trimming and the database's `tasks_title_trimmed` use one set of whitespace.

Checked over every Unicode code point, on whatever server the suite runs on (CI: 15 and 18), by
evaluating the constraint as the database defines it (read from `pg_constraint`), so a constraint
whose meaning changes between versions, like 0002's `E'\\v'`, cannot pass.
"""

from __future__ import annotations

from typing import LiteralString, cast

import psycopg
import pytest
from psycopg import errors, sql

from tests.support.request_role import as_request_role
from tests.support.tokens import new_user_id
from todo_api.api.schemas import TITLE_WHITESPACE

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


def test_the_database_trims_exactly_the_whitespace_the_api_trims(database_url: str) -> None:
    in_database = database_title_whitespace(database_url)
    in_api = set(TITLE_WHITESPACE)
    assert in_database == in_api, {
        "only the database trims": sorted(f"U+{ord(c):04X}" for c in in_database - in_api),
        "only the API trims": sorted(f"U+{ord(c):04X}" for c in in_api - in_database),
    }


def test_the_api_trims_each_of_its_whitespace_code_points_from_both_ends() -> None:
    # The other half of the agreement: the API's trim function strips exactly its set.
    from todo_api.api.schemas import TaskCreate

    stripped = {
        chr(c)
        for c in range(MAX_CODE_POINT + 1)
        if c not in SURROGATES
        and c != 0
        and TaskCreate.model_validate({"title": f"{chr(c)}x{chr(c)}"}).title == "x"
    }
    assert stripped == set(TITLE_WHITESPACE)


@pytest.mark.parametrize("title", ["valid", "shiv", "v", "vv v", "Vivid", "\u00a0x", "x\u3000"])
def test_titles_the_old_constraint_judged_by_version_are_judged_alike(
    database_url: str, title: str
) -> None:
    """On 15, 0002's constraint refused titles ending in v; spaces beyond ASCII it ignored."""
    user = new_user_id()
    trimmed = title.strip(TITLE_WHITESPACE)
    with as_request_role(database_url, user) as conn:
        stored = conn.execute(
            "insert into tasks (title) values (%s) returning title", (trimmed,)
        ).fetchone()
        assert stored == (trimmed,)
        if trimmed != title:
            with pytest.raises(errors.CheckViolation, match="tasks_title_trimmed"):
                conn.execute("insert into tasks (title) values (%s)", (title,))
