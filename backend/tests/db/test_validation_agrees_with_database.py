"""The API's title trimming and the database's `tasks_title_trimmed` use one set of whitespace.

Checked over every Unicode code point, on whatever server the suite runs on (CI: 15 and 18), by
evaluating the constraint as the database defines it (read from `pg_constraint`), so a constraint
whose meaning changes between versions, like 0002's `E'\\v'`, cannot pass.
"""

from __future__ import annotations

import pytest
from psycopg import errors

from tests.support.request_role import as_request_role
from tests.support.title_constraint import (
    MAX_CODE_POINT,
    SURROGATES,
    database_title_whitespace,
)
from tests.support.tokens import new_user_id
from todo_api.api.schemas import TITLE_WHITESPACE


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
