"""Idempotency-Key on task creation: a retried create answers the original 201, creates nothing."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.request_role import as_request_role
from tests.support.tokens import Caller


def _key() -> str:
    return f'"{uuid.uuid4()}"'


def _post(
    client: TestClient, caller: Caller, key: str | None, body: Any, path: str = "/api/tasks"
) -> httpx.Response:
    headers = {**caller.headers, **({"Idempotency-Key": key} if key is not None else {})}
    return client.post(path, headers=headers, json=body)


def _count(client: TestClient, caller: Caller) -> int:
    total: int = client.get("/api/users/me", headers=caller.headers).json()["tasks"]["total"]
    return total


def test_a_replay_answers_the_original_201_and_creates_nothing(
    client: TestClient, alice: Caller
) -> None:
    key = _key()
    first = _post(client, alice, key, {"title": "once", "due_date": "2026-12-24"})
    again = _post(client, alice, key, {"due_date": "2026-12-24", "title": "once"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert _count(client, alice) == 1


def test_a_bare_token_is_the_same_key_as_its_sf_string(client: TestClient, alice: Caller) -> None:
    first = _post(client, alice, '"abc-123"', {"title": "t"})
    again = _post(client, alice, "abc-123", {"title": "t"})
    assert again.json()["id"] == first.json()["id"]
    assert _count(client, alice) == 1


def test_the_same_key_with_another_body_is_422(client: TestClient, alice: Caller) -> None:
    key = _key()
    _post(client, alice, key, {"title": "first"})
    refused = _post(client, alice, key, {"title": "second"})
    assert refused.status_code == 422
    assert refused.json()["code"] == "idempotency_key_reused"
    assert refused.headers["content-type"] == "application/problem+json"
    assert _count(client, alice) == 1


def test_a_replay_after_an_edit_or_a_delete_answers_the_original(
    client: TestClient, alice: Caller
) -> None:
    key = _key()
    first = _post(client, alice, key, {"title": "original"})
    path = first.headers["location"]
    client.patch(path, headers=alice.headers, json={"title": "edited"})
    assert _post(client, alice, key, {"title": "original"}).json() == first.json()
    client.delete(path, headers=alice.headers)
    replay = _post(client, alice, key, {"title": "original"})
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert client.get(path, headers=alice.headers).status_code == 404  # never re-created
    assert _count(client, alice) == 0


def test_keys_are_per_user_and_shared_by_both_path_styles(
    client: TestClient, alice: Caller, bob: Caller
) -> None:
    key = _key()
    mine = _post(client, alice, key, {"title": "t"})
    theirs = _post(client, bob, key, {"title": "t"})
    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"]
    hackathon = _post(client, alice, key, {"title": "t"}, path=f"/api/{alice.id}/tasks")
    assert hackathon.json()["id"] == mine.json()["id"]
    assert hackathon.headers["location"] == f"/api/{alice.id}/tasks/{mine.json()['id']}"
    assert (_count(client, alice), _count(client, bob)) == (1, 1)


@pytest.mark.parametrize(
    "key", ['""', '"' + "k" * 256 + '"', "k" * 256, '"unterminated', '"ü"', "two words", '"a"b"']
)
def test_a_malformed_key_is_422_naming_the_header(
    client: TestClient, alice: Caller, key: str
) -> None:
    response = client.post(
        "/api/tasks",
        headers=[*alice.headers.items(), ("Idempotency-Key", key.encode())],
        json={"title": "t"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert _count(client, alice) == 0


def test_a_255_character_key_is_accepted(client: TestClient, alice: Caller) -> None:
    assert _post(client, alice, '"' + "k" * 255 + '"', {"title": "t"}).status_code == 201


def test_a_refused_request_does_not_use_up_its_key(client: TestClient, alice: Caller) -> None:
    key = _key()
    assert _post(client, alice, key, {"title": ""}).status_code == 422
    unauthenticated = client.post(
        "/api/tasks", headers={"Idempotency-Key": key}, json={"title": "t"}
    )
    assert unauthenticated.status_code == 401
    assert _post(client, alice, key, {"title": "now"}).status_code == 201
    assert _count(client, alice) == 1


def test_a_key_still_in_flight_is_409(
    client: TestClient, alice: Caller, superuser: psycopg.Connection
) -> None:
    key = "held"
    # What a first request holds while it runs: the advisory lock of (user, key).
    superuser.execute("begin")
    superuser.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s || ' ' || %s, 0))", (alice.id, key)
    )
    try:
        response = _post(client, alice, key, {"title": "t"})
    finally:
        superuser.execute("rollback")
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert _post(client, alice, key, {"title": "t"}).status_code == 201
    assert _count(client, alice) == 1


def test_an_expired_key_is_forgotten_and_purged(
    client: TestClient, alice: Caller, superuser: psycopg.Connection
) -> None:
    key = _key()
    first = _post(client, alice, key, {"title": "t"})
    superuser.execute(
        "update idempotency_keys set expires_at = now() - interval '1 second' where user_id = %s",
        (alice.id,),
    )
    again = _post(client, alice, key, {"title": "t"})
    assert again.status_code == 201
    assert again.json()["id"] != first.json()["id"]
    rows = superuser.execute(
        "select task_id from idempotency_keys where user_id = %s", (alice.id,)
    ).fetchall()
    assert rows == [(again.json()["id"],)]


def test_a_user_cannot_see_another_users_keys(
    client: TestClient, database_url: str, alice: Caller, bob: Caller
) -> None:
    _post(client, alice, '"secret-key"', {"title": "t"})
    with as_request_role(database_url, bob.id) as conn:
        assert conn.execute("select count(*) from idempotency_keys").fetchone() == (0,)
    with as_request_role(database_url, alice.id) as conn:
        assert conn.execute("select key from idempotency_keys").fetchall() == [("secret-key",)]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(min_size=1, max_size=300).filter(lambda b: not set(b) & set(b"\r\n\x00")))
def test_any_key_value_is_201_or_a_clean_422(client: TestClient, alice: Caller, raw: bytes) -> None:
    response = client.post(
        "/api/tasks",
        headers=[*alice.headers.items(), ("Idempotency-Key", raw)],
        json={"title": "t"},
    )
    assert response.status_code in (201, 422), response.text
    if response.status_code == 422:
        assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


@pytest.mark.anyio
async def test_concurrent_creates_with_one_key_make_one_task(
    async_app: FastAPI, alice: Caller
) -> None:
    transport = httpx.ASGITransport(app=async_app)
    key = _key()
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:

        async def create() -> None:
            headers = {**alice.headers, "Idempotency-Key": key}
            answers.append(await http.post("/api/tasks", headers=headers, json={"title": "race"}))

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(create)
        me = await http.get("/api/users/me", headers=alice.headers)

    assert me.json()["tasks"]["total"] == 1
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    assert {a.status_code for a in answers} <= {201, 409}


@pytest.mark.anyio
async def test_a_twin_that_commits_mid_statement_makes_this_create_a_409_that_keeps_nothing(
    async_app: FastAPI, alice: Caller, superuser: psycopg.Connection
) -> None:
    """The narrow race: the twin's key row commits after this statement's snapshot was taken."""
    key = "twin"
    superuser.execute("begin")
    superuser.execute(
        "insert into idempotency_keys (user_id, key, fingerprint, task_id, response)"
        " values (%s, %s, repeat('0', 64), 0, '{}')",
        (alice.id, key),
    )
    transport = httpx.ASGITransport(app=async_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        answer: list[httpx.Response] = []

        async def create() -> None:
            headers = {**alice.headers, "Idempotency-Key": key}
            answer.append(await http.post("/api/tasks", headers=headers, json={"title": "t"}))

        async with anyio.create_task_group() as group:
            group.start_soon(create)
            await anyio.sleep(0.5)  # the request now waits on the twin's uncommitted key
            superuser.execute("commit")
        me = await http.get("/api/users/me", headers=alice.headers)

    assert answer[0].status_code == 409, answer[0].text
    assert answer[0].json()["code"] == "conflict"
    assert me.json()["tasks"]["total"] == 0
