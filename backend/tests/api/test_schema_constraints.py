"""The published request schemas say exactly what the API accepts.

Bodies are generated around the edges of every constraint (lengths, whitespace, NUL, dates) and
judged twice: by a JSON Schema validator (jsonschema-rs, ECMA-262 regular expressions, formats on)
against /openapi.json, and by the API itself. A frontend that validates with the published schema
must never send what the API refuses, nor refuse what the API takes.

Lone surrogates are left out here: JSON Schema speaks about Unicode strings, which they are not
(test_input_agrees_with_database.py proves the API refuses them).
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.tokens import Caller, make_token, new_user_id

EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
WHITESPACE_LIKE = [chr(c) for c in range(0x00, 0x21)] + [
    "\x85", "\xa0", "\u1680", "\u2000", "\u200a", "\u200b", "\u2028", "\u202f", "\u3000", "\ufeff"
]  # fmt: skip
characters = st.one_of(
    st.characters(codec="utf-8"),  # every character but the surrogates
    st.sampled_from(WHITESPACE_LIKE),
)
padding = st.text(alphabet=st.sampled_from(WHITESPACE_LIKE), max_size=3)


def _padded(lengths: range) -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, ch, n, b: a + ch * n + b, padding, characters, st.sampled_from(lengths), padding
    )


texts = st.one_of(st.text(alphabet=characters, max_size=8), _padded(range(0, 3)))
titles = st.one_of(texts, _padded(range(198, 203)))
descriptions = st.one_of(st.none(), texts, _padded(range(998, 1003)))
dates = st.one_of(
    st.none(),
    st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}"),
    st.builds(
        lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
        st.sampled_from([0, 1, 2023, 2024, 9999, 10000]),
        st.integers(0, 13),
        st.integers(0, 31),
    ),
    st.sampled_from(["2026-1-1", "+02026-01-01", "2026-01-01T00:00:00Z", "2026-01-01\n", ""]),
)
json_values = st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=1))
ROUTES = {"TaskCreate": "POST", "TaskUpdate": "PUT", "TaskPatch": "PATCH"}


def bodies() -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        "title": st.one_of(titles, st.none(), json_values),
        "description": st.one_of(descriptions, json_values),
        "completed": st.one_of(st.booleans(), st.none(), json_values),
        "due_date": st.one_of(dates, json_values),
    }
    return st.fixed_dictionaries({}, optional=fields)


@pytest.fixture(scope="module")
def caller() -> Caller:
    user = new_user_id()
    return Caller(user, make_token(user))


@pytest.fixture(scope="module")
def validators(client: TestClient) -> dict[str, Any]:
    document = client.get("/openapi.json").json()
    return {
        name: jsonschema_rs.validator_for(
            {"$ref": f"#/components/schemas/{name}", "components": document["components"]},
            validate_formats=True,
        )
        for name in ROUTES
    }


@pytest.fixture(scope="module")
def task_url(client: TestClient, caller: Caller) -> str:
    created = client.post("/api/tasks", json={"title": "schema"}, headers=caller.headers)
    assert created.status_code == 201
    return f"/api/tasks/{created.json()['id']}"


@pytest.mark.parametrize("schema", list(ROUTES))
@EXAMPLES
@given(body=bodies())
def test_the_published_body_schema_accepts_exactly_what_the_api_accepts(
    client: TestClient,
    caller: Caller,
    validators: dict[str, Any],
    task_url: str,
    schema: str,
    body: dict[str, Any],
) -> None:
    method = ROUTES[schema]
    url = "/api/tasks" if method == "POST" else task_url
    response = client.request(method, url, json=body, headers=caller.headers)
    assert response.status_code in (200, 201, 422), response.text
    schema_says = validators[schema].is_valid(body)
    assert (response.status_code != 422) == schema_says, (
        f"schema says {'valid' if schema_says else 'invalid'}, API answered "
        f"{response.status_code}: {response.text}"
    )


def test_a_title_of_200_characters_with_surrounding_spaces_is_documented_as_valid(
    validators: dict[str, Any], client: TestClient, caller: Caller
) -> None:
    """The observation in issue 9: maxLength 200 was published, 202 raw characters accepted."""
    body = {"title": " " + "t" * 200 + " "}
    assert validators["TaskCreate"].is_valid(body)
    created = client.post("/api/tasks", json=body, headers=caller.headers)
    assert created.status_code == 201
    assert created.json()["title"] == "t" * 200
    too_long = {"title": " " + "t" * 201 + " "}
    assert not validators["TaskCreate"].is_valid(too_long)
    assert client.post("/api/tasks", json=too_long, headers=caller.headers).status_code == 422
