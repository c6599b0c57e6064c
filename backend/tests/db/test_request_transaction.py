"""db.py's request transaction: one statement, once; statements composed as psycopg would bind them.

Against the real database: a second `run` on the same transaction is refused before anything is
sent, and the statement templates keep psycopg's placeholder syntax (`%(name)s`, `%%`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.tokens import new_user_id
from todo_api.config import Settings
from todo_api.db import Database, Statement
from todo_api.identity import User

pytestmark = pytest.mark.anyio

_ECHO = Statement.of("select %(value)s::text, '100%%'::text, %(value)s::text || '!'")


def _user() -> User:
    user_id = new_user_id()
    now = datetime.now(UTC)
    token_id = "sha256:" + "0" * 64
    return User(user_id, None, None, token_id, (token_id,), now, now + timedelta(hours=1))


@pytest.mark.parametrize("prepared", [True, False])
async def test_a_statement_runs_once_as_written_and_a_second_run_is_refused(
    settings: Settings, prepared: bool
) -> None:
    database = Database(settings.model_copy(update={"db_prepared_statements": prepared}))
    await database.open()
    try:
        tx = database.transaction(_user())
        result = await tx.run(_ECHO, {"value": "it's"})
        assert result.one() == (b"it's", b"100%", b"it's!")
        with pytest.raises(RuntimeError, match="exactly one statement"):
            await tx.run(_ECHO, {"value": "again"})
        # The next request's transaction runs on the same pool as usual.
        again = await database.transaction(_user()).run(_ECHO, {"value": "next"})
        assert again.one()[0] == b"next"
    finally:
        await database.close()


def test_a_statement_may_not_use_the_request_entry_points_parameter_names() -> None:
    with pytest.raises(ValueError, match="todo_begin_request"):
        Statement.of("select %(request_user_id)s")


def test_a_lone_percent_sign_is_refused_as_psycopg_would() -> None:
    with pytest.raises(ValueError, match="lone %"):
        Statement.of("select 'a' like 'b%'")
