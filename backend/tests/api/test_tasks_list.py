"""GET /api/tasks: filters, sorts, defaults, keyset pagination with Link, and validation."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from tests.support.databases import url_for_database
from tests.support.postgres import PostgresServer
from tests.support.request_role import as_request_role
from tests.support.tokens import Caller


def _create(client: TestClient, caller: Caller, **body: Any) -> dict[str, Any]:
    response = client.post("/api/tasks", json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def _list(client: TestClient, caller: Caller, url: str = "/api/tasks") -> list[dict[str, Any]]:
    response = client.get(url, headers=caller.headers)
    assert response.status_code == 200, response.text
    tasks: list[dict[str, Any]] = response.json()
    return tasks


def _next_link(link: str | None) -> str | None:
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


def _all_pages(client: TestClient, caller: Caller, url: str) -> list[list[dict[str, Any]]]:
    pages = []
    next_url: str | None = url
    while next_url is not None:
        response = client.get(next_url, headers=caller.headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        next_url = _next_link(response.headers.get("link"))
        assert len(pages) < 100
    return pages


def test_a_new_user_has_an_empty_list_without_link(client: TestClient, alice: Caller) -> None:
    response = client.get("/api/tasks", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == []
    assert "link" not in response.headers


def test_trailing_slash_answers_the_same_without_redirect(
    client: TestClient, alice: Caller
) -> None:
    _create(client, alice, title="one")
    plain = client.get("/api/tasks", headers=alice.headers)
    slashed = client.get("/api/tasks/", headers=alice.headers, follow_redirects=False)
    assert slashed.status_code == 200
    assert slashed.json() == plain.json()
    created = client.post(
        "/api/tasks/", json={"title": "two"}, headers=alice.headers, follow_redirects=False
    )
    assert created.status_code == 201
    assert created.headers["location"] == f"/api/tasks/{created.json()['id']}"
    one = client.get(f"/api/tasks/{created.json()['id']}/", headers=alice.headers)
    assert one.status_code == 200


def test_default_order_is_newest_first(client: TestClient, alice: Caller) -> None:
    ids = [_create(client, alice, title=f"t{i}")["id"] for i in range(3)]
    assert [t["id"] for t in _list(client, alice)] == ids[::-1]
    assert [t["id"] for t in _list(client, alice, "/api/tasks?order=asc")] == ids
    assert [t["id"] for t in _list(client, alice, "/api/tasks?sort_order=asc")] == ids


def test_status_filter(client: TestClient, alice: Caller) -> None:
    done = _create(client, alice, title="done", completed=True)["id"]
    todo = _create(client, alice, title="todo")["id"]
    assert {t["id"] for t in _list(client, alice, "/api/tasks?status=all")} == {done, todo}
    assert [t["id"] for t in _list(client, alice, "/api/tasks?status=completed")] == [done]
    assert [t["id"] for t in _list(client, alice, "/api/tasks?status=pending")] == [todo]
    assert [t["id"] for t in _list(client, alice, "/api/tasks?status=incomplete")] == [todo]


def test_title_sort_is_case_insensitive_and_ascending_by_default(
    client: TestClient, alice: Caller
) -> None:
    for title in ("banana", "Apple", "cherry", "apple"):
        _create(client, alice, title=title)
    titles = [t["title"] for t in _list(client, alice, "/api/tasks?sort=title")]
    assert [t.lower() for t in titles] == ["apple", "apple", "banana", "cherry"]
    # Ties on the sort key break on id, in the same direction.
    apples = [t for t in _list(client, alice, "/api/tasks?sort=title") if t["title"] != "banana"]
    assert apples[0]["id"] < apples[1]["id"]
    desc = [t["title"].lower() for t in _list(client, alice, "/api/tasks?sort=title&order=desc")]
    assert desc == ["cherry", "banana", "apple", "apple"]


def test_due_date_sort_puts_tasks_without_a_due_date_last_in_both_orders(
    client: TestClient, alice: Caller
) -> None:
    _create(client, alice, title="none-1")
    _create(client, alice, title="late", due_date="2026-12-31")
    _create(client, alice, title="none-2")
    _create(client, alice, title="early", due_date="2026-01-01")
    asc = [t["title"] for t in _list(client, alice, "/api/tasks?sort=due_date")]
    assert asc == ["early", "late", "none-1", "none-2"]
    desc = [t["title"] for t in _list(client, alice, "/api/tasks?sort=due_date&order=desc")]
    assert desc == ["late", "early", "none-2", "none-1"]


def test_updated_sort_and_aliases(client: TestClient, alice: Caller) -> None:
    first = _create(client, alice, title="first")
    second = _create(client, alice, title="second")
    client.patch(f"/api/tasks/{first['id']}", json={"title": "first!"}, headers=alice.headers)
    for sort in ("updated", "updated_at"):
        order = [t["id"] for t in _list(client, alice, f"/api/tasks?sort={sort}")]
        assert order == [first["id"], second["id"]]
    by_created = [t["id"] for t in _list(client, alice, "/api/tasks?sort=created_at")]
    assert by_created == [second["id"], first["id"]]


def test_q_is_a_case_insensitive_literal_substring_of_title_or_description(
    client: TestClient, alice: Caller
) -> None:
    _create(client, alice, title="Pay 100% of the bill")
    _create(client, alice, title="Pay 1000 of the bill")
    _create(client, alice, title="snake_case rename")
    _create(client, alice, title="snakeXcase rename")
    _create(client, alice, title="other", description="Mentions GROCERIES here")
    _create(client, alice, title="back\\slash")

    def titles(q: str) -> set[str]:
        response = client.get("/api/tasks", params={"q": q}, headers=alice.headers)
        return {t["title"] for t in response.json()}

    assert titles("100%") == {"Pay 100% of the bill"}
    assert titles("snake_case") == {"snake_case rename"}
    assert titles("groceries") == {"other"}
    assert titles("PAY") == {"Pay 100% of the bill", "Pay 1000 of the bill"}
    assert titles("\\") == {"back\\slash"}
    assert titles("absent") == set()


@pytest.mark.parametrize(
    "sort", ["created", "updated", "title", "due_date", "created_at", "updated_at"]
)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_paging_visits_every_task_once_in_order(
    client: TestClient,
    new_caller: Any,
    database_url: str,
    postgres_server: PostgresServer,
    sort: str,
    order: str,
) -> None:
    caller: Caller = new_caller()
    # Duplicate sort keys (same titles, due dates, even timestamps) are the hard case for keyset.
    # created_at/updated_at are not writable by the request role: seed them as the superuser.
    admin_url = url_for_database(
        postgres_server.admin_url, conninfo_to_dict(database_url)["dbname"]
    )
    with psycopg.connect(admin_url) as conn:
        conn.execute(
            "insert into tasks (user_id, title, due_date, created_at, updated_at)"
            " select %s, case when mod(n, 3) = 0 then 'Same' else 'same' || mod(n, 4) end,"
            " case when mod(n, 2) = 0 then date '2026-01-01' + mod(n, 3) end,"
            " timestamptz '2026-01-01' + mod(n, 5) * interval '1 second',"
            " timestamptz '2026-01-01' + mod(n, 5) * interval '1 second'"
            " from generate_series(1, 23) n",
            (caller.id,),
        )
    everything = _list(client, caller, f"/api/tasks?sort={sort}&order={order}&limit=100")
    assert len(everything) == 23
    pages = _all_pages(client, caller, f"/api/tasks?sort={sort}&order={order}&limit=5")
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [t["id"] for page in pages for t in page] == [t["id"] for t in everything]


def test_link_keeps_filters_sort_and_limit(client: TestClient, alice: Caller) -> None:
    for i in range(5):
        _create(client, alice, title=f"match {i}", completed=i % 2 == 0)
    _create(client, alice, title="other", completed=True)
    response = client.get(
        "/api/tasks",
        params={"status": "completed", "q": "match", "sort": "title", "limit": 2, "x": "1"},
        headers=alice.headers,
    )
    assert [t["title"] for t in response.json()] == ["match 0", "match 2"]
    link = _next_link(response.headers["link"])
    assert link is not None
    assert all(part in link for part in ("status=completed", "q=match", "sort=title", "limit=2"))
    last = client.get(link, headers=alice.headers)
    assert [t["title"] for t in last.json()] == ["match 4"]
    assert "link" not in last.headers


def test_exactly_full_last_page_has_no_link(client: TestClient, alice: Caller) -> None:
    for i in range(4):
        _create(client, alice, title=f"t{i}")
    first = client.get("/api/tasks?limit=2", headers=alice.headers)
    second = client.get(_next_link(first.headers["link"]) or "", headers=alice.headers)
    assert len(second.json()) == 2
    assert "link" not in second.headers


@pytest.mark.parametrize("sort", ["created", "updated", "title", "due_date"])
def test_the_next_cursor_names_the_last_shown_task_as_cursors_always_did(
    client: TestClient, new_caller: Any, database_url: str, sort: str
) -> None:
    # The key is the text the statements' to_char wrote before pages were rows: UTC timestamps
    # with +00:00, ISO dates, and lower(title) as PostgreSQL computes it (with the database's
    # collation: a C-locale cluster leaves "Ä" as it is); so cursors issued before still match.
    caller: Caller = new_caller()
    for n, due in enumerate(["2026-03-01", None, "2026-01-01"]):
        _create(client, caller, title=f"Task Ä{n}", due_date=due)
    response = client.get(f"/api/tasks?sort={sort}&limit=2", headers=caller.headers)
    last = response.json()[-1]
    link = _next_link(response.headers["link"])
    assert link is not None
    token = link.split("cursor=")[1]
    cursor = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    if sort == "title":
        with psycopg.connect(database_url) as conn:
            row = conn.execute("select lower(%s)", (last["title"],)).fetchone()
        assert row is not None
        expected = row[0]
    elif sort == "due_date":
        expected = last["due_date"]
    else:
        expected = last[f"{sort}_at"].removesuffix("Z") + "+00:00"
    assert (cursor["k"], cursor["i"]) == (expected, last["id"])


def test_limit_defaults_to_50(client: TestClient, alice: Caller, database_url: str) -> None:
    with as_request_role(database_url, alice.id) as conn:
        conn.execute(
            "insert into tasks (user_id, title) select %s, 't' || n from generate_series(1, 51) n",
            (alice.id,),
        )
        conn.commit()
    response = client.get("/api/tasks", headers=alice.headers)
    assert len(response.json()) == 50
    assert "limit=50" in response.headers["link"]
    assert len(client.get("/api/tasks?limit=100", headers=alice.headers).json()) == 51


def _cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "query",
    [
        "status=done",
        "sort=priority",
        "order=up",
        "sort_order=DOWN",
        "order=asc&sort_order=desc",
        "limit=0",
        "limit=101",
        "limit=ten",
        "cursor=not-a-cursor",
        "cursor=" + _cursor({"s": "created", "o": "desc", "k": "yesterday", "i": 1}),
        "cursor=" + _cursor({"s": "created", "o": "desc", "k": "2026-01-01T00:00:00", "i": 1}),
        "cursor=" + _cursor({"s": "created", "o": "desc", "k": None, "i": 1}),
        "cursor=" + _cursor({"s": "created", "o": "desc", "k": "2026-01-01T00:00:00Z", "i": 0}),
        "q=" + "x" * 1001,
        "q=%00",
    ],
)
def test_invalid_values_of_known_parameters_are_422(
    client: TestClient, alice: Caller, query: str
) -> None:
    response = client.get(f"/api/tasks?{query}", headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"


def test_a_cursor_from_another_sort_or_order_is_refused(client: TestClient, alice: Caller) -> None:
    for i in range(3):
        _create(client, alice, title=f"t{i}")
    link = _next_link(client.get("/api/tasks?limit=1", headers=alice.headers).headers["link"])
    assert link is not None
    cursor = link.split("cursor=")[1]
    for query in ("sort=title", "order=asc", "sort=updated"):
        response = client.get(f"/api/tasks?{query}&cursor={cursor}", headers=alice.headers)
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["query", "cursor"]
    assert client.get(f"/api/tasks?cursor={cursor}", headers=alice.headers).status_code == 200


def test_unknown_parameters_are_ignored(client: TestClient, alice: Caller) -> None:
    _create(client, alice, title="t")
    response = client.get("/api/tasks?page=7&foo=bar&sortby=x", headers=alice.headers)
    assert response.status_code == 200
    assert len(response.json()) == 1
