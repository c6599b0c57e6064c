"""For any title, description and due date, the API accepts exactly what the database would store.

Values are drawn from all of Unicode: every whitespace and control character, NUL, astral
characters, combining marks and lone surrogates (sent as JSON `\\ud800` escapes in a raw body,
which is how a client can send them). The oracle is the database itself: each value, prepared the
way the database defines it (titles trimmed of what `tasks_title_trimmed` trims), is inserted in
a request-like transaction as `todo_app` and rolled back. Then the API must answer 201/200 exactly
when that insert succeeded, 422 `validation_error` otherwise, never a 5xx, and a stored value
must read back as the API returned it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.request_role import as_request_role
from tests.support.title_constraint import database_title_whitespace
from tests.support.tokens import Caller, make_token, new_user_id

EXAMPLES = settings(
    max_examples=120,
    deadline=None,  # a request to a real database, on a shared CI machine
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: CI results are reproducible
)
# SPEC: due_date is ISO 8601 YYYY-MM-DD (four-digit year). Written here independently of the API.
SPEC_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# Characters worth trying often, on top of everything st.characters() yields.
INTERESTING = (
    [chr(c) for c in range(0x00, 0x21)]  # C0 controls (NUL, \t\n\v\f\r, U+001C-U+001F) + space
    + [chr(c) for c in range(0x7F, 0xA1)]  # DEL, C1 controls (U+0085 NEL), NBSP
    + ["\u1680", "\u180e", "\u2000", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f"]
    + ["\u205f", "\u2060", "\u3000", "\ufeff", "\ufffe", "\uffff"]
    + ["\u0301", "\u0338", "\u20dd", "\u1ab0"]  # combining marks
    + ["\U0001f600", "\U00010000", "\U0010ffff", "\U000e0001"]  # astral
    + ["\ud800", "\udfff", "\udbff"]  # lone surrogates
    + ["v", "V", "x", "%", "_", "\\", '"', "'"]
)
characters = st.one_of(
    st.characters(codec=None),
    st.characters(categories=["Cs"]),
    st.sampled_from(INTERESTING),
)
edges = st.text(alphabet=st.sampled_from(INTERESTING), max_size=3)
any_text = st.text(alphabet=characters, max_size=12)


def _around(core: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, b, c: a + b + c, edges, core, edges)


def _repeated(lengths: range) -> st.SearchStrategy[str]:
    return st.builds(lambda ch, n: ch * n, characters, st.sampled_from(lengths))


titles = st.one_of(_around(any_text), _around(_repeated(range(198, 203))), edges)
descriptions = st.one_of(_around(any_text), _repeated(range(998, 1003)), edges)
dates = st.one_of(
    st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"),
    st.builds(
        lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
        st.sampled_from([0, 1, 1582, 1900, 2000, 2024, 2026, 9999, 10000, 99999]),
        st.integers(0, 13),
        st.integers(0, 32),
    ),
    st.sampled_from(
        [
            "+02026-01-01",
            "2026-1-1",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00Z",
            "2026-01-01 ",
            " 2026-01-01",
            "2026-01-01\n",
            "20260101",
            "2026-001",
            "2026-W01-1",
            "0001-01-01 BC",
            "infinity",
            "-infinity",
            "epoch",
            "today",
            "\uff12\uff10\uff12\uff16-\uff10\uff11-\uff10\uff11",  # fullwidth digits
            "",
        ]
    ),
    any_text,
)


@pytest.fixture(scope="module")
def caller() -> Caller:
    user = new_user_id()
    return Caller(user, make_token(user))


class Database:
    """What the database would store, asked inside one request-like transaction (rolled back)."""

    def __init__(self, conn: psycopg.Connection[Any], whitespace: set[str]) -> None:
        self.conn = conn
        self.whitespace = "".join(whitespace)

    def title(self, raw: str) -> str:
        """The title as the database defines trimmed (its own set, read from the constraint)."""
        return raw.strip(self.whitespace)

    def stores(self, *, title: str, description: str | None = None, due: str | None = None) -> bool:
        row = None
        try:
            with self.conn.transaction():  # a savepoint: each attempt stands alone
                row = self.conn.execute(
                    "insert into tasks (title, description, due_date)"
                    " values (%s, %s, %s::date)"
                    " returning title, description, to_char(due_date, 'YYYY-MM-DD'),"
                    " isfinite(due_date)",
                    (title, description, due),
                ).fetchone()
                raise psycopg.Rollback()
        except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError):
            return False
        # Stored as given: a date the database would rewrite (or store as infinity) is not it.
        return row == (title, description, due, None if due is None else True)

    def stores_date(self, value: object) -> bool:
        if not isinstance(value, str) or not SPEC_DATE.fullmatch(value):
            return False
        return self.stores(title="x", due=value)


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    whitespace = database_title_whitespace(database_url)
    with as_request_role(database_url, new_user_id()) as conn:
        yield Database(conn, whitespace)


def _send(client: TestClient, method: str, url: str, caller: Caller, body: object) -> Any:
    # json.dumps writes a lone surrogate as the escape \ud800: what a client can really send.
    content = json.dumps(body).encode("ascii")
    response = client.request(
        method,
        url,
        content=content,
        headers={**caller.headers, "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text
    return response


def _assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert any(error["loc"][-1] == field for error in problem["errors"]), problem


def _read_back(client: TestClient, caller: Caller, task: dict[str, Any]) -> None:
    got = client.get(f"/api/tasks/{task['id']}", headers=caller.headers)
    assert got.status_code == 200
    assert got.json() == task


@EXAMPLES
@given(title=titles)
def test_a_created_title_is_accepted_exactly_when_the_database_stores_it(
    client: TestClient, caller: Caller, database: Database, title: str
) -> None:
    expected = database.title(title)
    response = _send(client, "POST", "/api/tasks", caller, {"title": title})
    if database.stores(title=expected):
        assert response.status_code == 201, response.text
        assert response.json()["title"] == expected
        _read_back(client, caller, response.json())
    else:
        _assert_refused(response, "title")


@EXAMPLES
@given(description=descriptions)
def test_a_created_description_is_accepted_exactly_when_the_database_stores_it(
    client: TestClient, caller: Caller, database: Database, description: str
) -> None:
    response = _send(
        client, "POST", "/api/tasks", caller, {"title": "t", "description": description}
    )
    if database.stores(title="t", description=description):
        assert response.status_code == 201, response.text
        assert response.json()["description"] == description
        _read_back(client, caller, response.json())
    else:
        _assert_refused(response, "description")


@EXAMPLES
@given(due=dates)
def test_a_created_due_date_is_accepted_exactly_when_the_database_stores_it(
    client: TestClient, caller: Caller, database: Database, due: str
) -> None:
    response = _send(client, "POST", "/api/tasks", caller, {"title": "t", "due_date": due})
    if database.stores_date(due):
        assert response.status_code == 201, response.text
        assert response.json()["due_date"] == due
        _read_back(client, caller, response.json())
    else:
        _assert_refused(response, "due_date")


@pytest.fixture(scope="module")
def task(client: TestClient, caller: Caller) -> dict[str, Any]:
    created = client.post("/api/tasks", json={"title": "original"}, headers=caller.headers)
    assert created.status_code == 201
    return dict(created.json())


@EXAMPLES
@given(
    method=st.sampled_from(["PUT", "PATCH"]),
    title=titles,
    description=st.one_of(st.none(), descriptions),
    due=st.one_of(st.none(), dates),
)
def test_an_update_is_applied_exactly_when_the_database_stores_it(
    client: TestClient,
    caller: Caller,
    database: Database,
    task: dict[str, Any],
    method: str,
    title: str,
    description: str | None,
    due: str | None,
) -> None:
    url = f"/api/tasks/{task['id']}"
    before = client.get(url, headers=caller.headers).json()
    body = {"title": title, "description": description, "due_date": due}
    response = _send(client, method, url, caller, body)
    expected = database.title(title)
    storable = {
        "title": database.stores(title=expected),
        "description": description is None or database.stores(title="t", description=description),
        "due_date": due is None or database.stores_date(due),
    }
    if all(storable.values()):
        assert response.status_code == 200, response.text
        updated = response.json()
        assert (updated["title"], updated["description"], updated["due_date"]) == (
            expected,
            description,
            due,
        )
        _read_back(client, caller, updated)
    else:
        assert response.status_code == 422, response.text
        refused = {error["loc"][-1] for error in response.json()["errors"]}
        assert refused == {field for field, ok in storable.items() if not ok}
        # A refused update changed nothing.
        assert client.get(url, headers=caller.headers).json() == before


@pytest.mark.parametrize("field", ["title", "description"])
@pytest.mark.parametrize("text", ["\x00", "a\x00b", "\ud800", "x\udfffy", "\udbff\udbff"])
def test_text_postgres_cannot_hold_is_a_validation_error_on_every_route(
    client: TestClient, caller: Caller, task: dict[str, Any], field: str, text: str
) -> None:
    body = {"title": "t", field: text}
    _assert_refused(_send(client, "POST", "/api/tasks", caller, body), field)
    _assert_refused(_send(client, "PUT", f"/api/tasks/{task['id']}", caller, body), field)
    _assert_refused(
        _send(client, "PATCH", f"/api/tasks/{task['id']}", caller, {field: text}), field
    )


@pytest.mark.parametrize("title", ["valid", "shiv", "v", "Vivid v"])
def test_titles_that_start_or_end_with_v_are_stored(
    client: TestClient, caller: Caller, title: str
) -> None:
    """PostgreSQL 15 read 0002's E'\\v' as the letter v and refused all of these."""
    response = client.post("/api/tasks", json={"title": title}, headers=caller.headers)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == title
