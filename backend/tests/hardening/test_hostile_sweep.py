"""A sweep of generated hostile requests over every route.

Bodies, headers, paths, queries and tokens are generated (Hypothesis), a few thousand requests in
all. For every answer: never a 5xx (the database is up), every error is problem+json with the
request id, and an error response changed nothing of the caller's data, read back as a superuser
(who sees through row-level security).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.tokens import TEST_SECRET, Caller, make_token, new_user_id

pytestmark = pytest.mark.slow

OWNER = new_user_id()
OTHER = new_user_id()
OWNER_TOKEN = make_token(OWNER, ttl_seconds=4 * 3600)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


def _owner_task_ids(client: TestClient, conn: psycopg.Connection) -> list[int]:
    """The owner's current task ids, topped up to three (the sweep deletes some)."""
    owner = Caller(OWNER, OWNER_TOKEN)
    ids = [row[0] for row in _snapshot(conn)[0]]
    while len(ids) < 3:
        created = client.post("/api/tasks", headers=owner.headers, json={"title": "seed"})
        ids.append(created.json()["id"])
    return ids


def _snapshot(conn: psycopg.Connection) -> tuple[Any, ...]:
    """Everything of the owner's a request could change: tasks and revocations."""
    tasks = conn.execute(
        "select id, title, description, completed, due_date, created_at, updated_at"
        " from tasks where user_id = %s order by id",
        (OWNER,),
    ).fetchall()
    revoked = conn.execute(
        "select token_id from revoked_tokens where user_id = %s order by 1", (OWNER,)
    ).fetchall()
    revoked_all = conn.execute(
        "select revoked_before from user_token_revocations where user_id = %s", (OWNER,)
    ).fetchall()
    return tuple(tasks), tuple(revoked), tuple(revoked_all)


# --- what an attacker sends ---------------------------------------------------------------

ODD_STRINGS = ["", " ", "\x00", "a\x00", "\ud800", "x\udfff", "\u200b", "\ufeff", "x" * 1001]
ODD_DATES = ["2026-02-30", "2026-01-01", "0001-01-01", "9999-12-31", "+2026-01-01", "2026-1-1"]
json_scalars = st.one_of(
    st.sampled_from(ODD_STRINGS + ODD_DATES),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["infinity", "valid", "x" * 201, " x ", "\t\v\x1c", "😀\u0301", "x" * 300]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
field_values = st.one_of(
    st.sampled_from(ODD_STRINGS + ODD_DATES), st.text(), json_scalars, json_values
)
# Near-valid bodies (a good title, then hostile values in some fields) reach the database;
# arbitrary ones mostly stop at validation.
task_bodies = st.fixed_dictionaries(
    {"title": st.one_of(st.just("ok"), field_values)},
    optional=dict.fromkeys(
        ("description", "completed", "due_date", "id", "user_id", "created_at"), field_values
    ),
)
bodies = st.one_of(
    task_bodies.map(lambda body: json.dumps(body).encode()),
    st.none(),
    st.binary(max_size=64),
    json_values.map(lambda value: json.dumps(value).encode()),
)
hostile_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["0", "-1", "1.0", "1_0", "+1", " 1", "9" * 30, "%00", "..", "%2e", "'--"]),
)


def _tokens() -> st.SearchStrategy[list[tuple[str, str]]]:
    now = int(time.time())
    owner = OWNER_TOKEN
    variants = [
        [("Authorization", f"Bearer {owner}")],
        [("Authorization", f"bearer {owner}")],
        [],
        [("Authorization", f"Bearer {owner}=")],
        [("Authorization", f"Bearer {owner}"), ("Authorization", f"Bearer {owner}")],
        [("Authorization", f"Basic {owner}")],
        [("Authorization", "Bearer ")],
        [("Authorization", f"Bearer {make_token(OWNER, ttl_seconds=-3600)}")],
        [("Authorization", f"Bearer {jwt.encode({'sub': OWNER, 'exp': now + 60}, '', 'none')}")],
        [("Authorization", f"Bearer {jwt.encode({'sub': OWNER, 'exp': now + 60}, 'x' * 40)}")],
        [("Authorization", f"Bearer {make_token(OTHER)}")],
        [("Authorization", f"Bearer {jwt.encode({'sub': OWNER}, TEST_SECRET)}")],
    ]
    garbage = st.text(max_size=40).map(lambda t: [("Authorization", f"Bearer {t}")])
    # Half of the requests authenticate, so the validation and the database are reached too.
    valid = st.just([("Authorization", f"Bearer {owner}")])
    return st.one_of(valid, st.one_of(st.sampled_from(variants), garbage))


TASK_SLOTS = ["{task0}", "{task1}", "{task2}"]  # replaced by the owner's current task ids


def _paths() -> st.SearchStrategy[str]:
    task = st.one_of(st.sampled_from(TASK_SLOTS), hostile_text.map(_q))
    user = st.one_of(st.just(OWNER), st.just(OTHER), hostile_text.map(_q))
    return st.one_of(
        st.sampled_from(["/api/tasks", f"/api/{OWNER}/tasks"]),
        st.sampled_from(
            ["/api/tasks", "/api/tasks/", "/api/users/me", "/healthz", "/readyz", "/openapi.json"]
        ),
        task.map(lambda t: f"/api/tasks/{t}"),
        task.map(lambda t: f"/api/tasks/{t}/complete"),
        user.map(lambda u: f"/api/{u}/tasks"),
        st.tuples(user, task).map(lambda ut: f"/api/{ut[0]}/tasks/{ut[1]}"),
        st.tuples(user, task).map(lambda ut: f"/api/{ut[0]}/tasks/{ut[1]}/complete"),
        hostile_text.map(lambda t: f"/api/{_q(t)}"),
    )


def _q(text: str) -> str:
    return quote(text, safe="", errors="surrogatepass")


queries = st.dictionaries(
    st.one_of(
        st.sampled_from(["status", "sort", "order", "sort_order", "q", "limit", "cursor"]),
        st.text(max_size=5),
    ),
    hostile_text,
    max_size=4,
)
extra_headers = st.lists(
    st.tuples(
        st.sampled_from(
            ["Content-Type", "X-Request-ID", "Origin", "Idempotency-Key", "If-Match", "Accept"]
        ),
        st.one_of(
            st.sampled_from(
                [
                    "application/json",
                    "text/plain",
                    "application/json; charset=latin-1",
                    "multipart/form-data; boundary=x",
                    "http://localhost:3000",
                    "*",
                ]
            ),
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40),
        ),
    ),
    max_size=3,
)


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_requests_never_5xx_and_errors_change_nothing(
    client: TestClient, superuser: psycopg.Connection, data: st.DataObject
) -> None:
    path = data.draw(_paths())
    for slot, task_id in zip(TASK_SLOTS, _owner_task_ids(client, superuser), strict=False):
        path = path.replace(slot, str(task_id))
    # Mostly the methods the route serves, so requests get past routing.
    served = ["GET", "PUT", "PATCH", "DELETE"] if path[-1:].isdigit() else ["GET", "POST"]
    method = data.draw(st.one_of(st.sampled_from(served), st.sampled_from(METHODS)))
    json_type = data.draw(st.sampled_from([[("Content-Type", "application/json")]] * 4 + [[]]))
    headers = data.draw(_tokens()) + json_type + data.draw(extra_headers)
    if method == "DELETE" and path.startswith("/api/users/me"):
        path = "/api/users/me/" + data.draw(st.sampled_from(["token", "tokens"]))
        # Revoking the sweep's own token would end the sweep; revocation has its own tests.
        headers = [(k, v) for k, v in headers if not v.endswith(OWNER_TOKEN)]
    body = data.draw(bodies)
    params = data.draw(queries)
    # On the wire a header value is bytes; the server framing refuses CR, LF and NUL itself.
    raw_headers = [(name, _header_bytes(value)) for name, value in headers]

    before = _snapshot(superuser)
    response = client.request(method, path, headers=raw_headers, content=body, params=params)
    from hypothesis import event

    event(f"{method} {response.status_code} {b'ud800' in (body or b'')}")

    assert response.status_code < 500, (method, path, headers, body, response.text)
    assert "x-request-id" in response.headers
    if response.status_code >= 400:
        assert _snapshot(superuser) == before, (method, path, body, response.status_code)
        if method != "HEAD":
            problem = response.json()
            assert response.headers["content-type"] == "application/problem+json"
            assert problem["status"] == response.status_code
            assert isinstance(problem["detail"], str)
            assert isinstance(problem["code"], str)
            assert problem["request_id"] == response.headers["x-request-id"]


def _header_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass").translate(None, b"\r\n\x00")
