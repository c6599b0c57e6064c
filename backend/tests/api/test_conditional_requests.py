"""ETag, If-Match and If-None-Match on tasks: no write lands on a version the client did not see."""

from __future__ import annotations

import re

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.tokens import Caller

_settings = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _create(client: TestClient, caller: Caller, title: str = "tagged") -> httpx.Response:
    response = client.post("/api/tasks", headers=caller.headers, json={"title": title})
    assert response.status_code == 201
    return response


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


def test_every_task_response_carries_the_same_strong_etag(
    client: TestClient, alice: Caller
) -> None:
    created = _create(client, alice)
    tag = created.headers["etag"]
    task_id = created.json()["id"]
    assert tag.startswith('"')
    assert not tag.startswith("W/")
    for path in (f"/api/tasks/{task_id}", f"/api/{alice.id}/tasks/{task_id}"):
        assert client.get(path, headers=alice.headers).headers["etag"] == tag
        assert client.head(path, headers=alice.headers).headers["etag"] == tag


def test_every_write_changes_the_etag_and_nothing_else_does(
    client: TestClient, alice: Caller
) -> None:
    task_id = _create(client, alice).json()["id"]
    path = f"/api/tasks/{task_id}"
    seen = [client.get(path, headers=alice.headers).headers["etag"]]
    writes = [
        ("PUT", path, {"title": "put"}),
        ("PATCH", path, {"description": "patched"}),
        ("PATCH", f"{path}/complete", None),
        ("PUT", path, {"title": "put"}),  # the same values again is still a write
    ]
    for method, url, body in writes:
        response = client.request(method, url, headers=alice.headers, json=body)
        assert response.status_code == 200
        assert response.headers["etag"] == client.get(path, headers=alice.headers).headers["etag"]
        seen.append(response.headers["etag"])
    assert len(set(seen)) == len(seen)
    # Reads, lists and an empty PATCH write nothing.
    client.get("/api/tasks", headers=alice.headers)
    unchanged = client.patch(path, headers=alice.headers, json={})
    assert unchanged.headers["etag"] == seen[-1]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "", {"title": "late"}),
        ("PATCH", "", {"title": "late"}),
        ("PATCH", "/complete", None),
    ],
)
def test_a_stale_if_match_is_412_and_changes_nothing(
    client: TestClient, alice: Caller, method: str, suffix: str, body: dict[str, str] | None
) -> None:
    created = _create(client, alice)
    task_id, old_tag = created.json()["id"], created.headers["etag"]
    path = f"/api/tasks/{task_id}"
    current = client.patch(path, headers=alice.headers, json={"title": "moved on"})

    stale = client.request(
        method, path + suffix, headers={**alice.headers, "If-Match": old_tag}, json=body
    )

    _problem(stale, 412, "precondition_failed")
    assert client.get(path, headers=alice.headers).json() == current.json()


def test_a_current_if_match_writes(client: TestClient, alice: Caller) -> None:
    created = _create(client, alice)
    task_id, tag = created.json()["id"], created.headers["etag"]
    response = client.put(
        f"/api/tasks/{task_id}", headers={**alice.headers, "If-Match": tag}, json={"title": "ok"}
    )
    assert response.status_code == 200
    assert response.json()["title"] == "ok"
    assert response.headers["etag"] != tag


@pytest.mark.parametrize(
    ("header", "writes"),
    [
        ("*", True),
        ('"0.1", {tag}', True),
        ("{tag}, {tag}", True),
        ("W/{tag}", False),
        ("{tag_unquoted}", False),
        ('"', False),
        ("", False),
        ('"0.1"', False),
    ],
)
def test_if_match_uses_strong_comparison(
    client: TestClient, alice: Caller, header: str, writes: bool
) -> None:
    created = _create(client, alice)
    task_id, tag = created.json()["id"], created.headers["etag"]
    value = header.format(tag=tag, tag_unquoted=tag.strip('"'))
    response = client.delete(f"/api/tasks/{task_id}", headers={**alice.headers, "If-Match": value})
    assert response.status_code == (204 if writes else 412), response.text
    still_there = client.get(f"/api/tasks/{task_id}", headers=alice.headers).status_code == 200
    assert still_there is not writes


def test_preconditions_never_reveal_another_users_task(
    client: TestClient, alice: Caller, bob: Caller
) -> None:
    created = _create(client, bob)
    task_id, tag = created.json()["id"], created.headers["etag"]
    path = f"/api/tasks/{task_id}"
    for header in ("*", tag, '"0.0"'):
        for method, url, body in (
            ("PUT", path, {"title": "x"}),
            ("PATCH", path, {"title": "x"}),
            ("PATCH", f"{path}/complete", None),
            ("DELETE", path, None),
        ):
            response = client.request(
                method, url, headers={**alice.headers, "If-Match": header}, json=body
            )
            _problem(response, 404, "not_found")
        got = client.get(path, headers={**alice.headers, "If-None-Match": header})
        _problem(got, 404, "not_found")
    assert client.get(path, headers=bob.headers).json() == created.json()


@pytest.mark.parametrize("header", ["{tag}", "W/{tag}", "*", '"0.1", {tag}'])
def test_if_none_match_gives_304_without_a_body(
    client: TestClient, alice: Caller, header: str
) -> None:
    created = _create(client, alice)
    task_id, tag = created.json()["id"], created.headers["etag"]
    for method in ("GET", "HEAD"):
        response = client.request(
            method,
            f"/api/tasks/{task_id}",
            headers={**alice.headers, "If-None-Match": header.format(tag=tag)},
        )
        assert response.status_code == 304
        assert response.headers["etag"] == tag
        assert response.content == b""


def test_if_none_match_with_an_old_tag_gives_the_task(client: TestClient, alice: Caller) -> None:
    created = _create(client, alice)
    task_id, old = created.json()["id"], created.headers["etag"]
    client.patch(f"/api/tasks/{task_id}/complete", headers=alice.headers)
    response = client.get(f"/api/tasks/{task_id}", headers={**alice.headers, "If-None-Match": old})
    assert response.status_code == 200
    assert response.json()["completed"] is True


_LIST_OF_TAGS = re.compile(
    r'[ \t]*(W/)?"[\x21\x23-\x7e]*"[ \t]*(,[ \t]*(W/)?"[\x21\x23-\x7e]*"[ \t]*)*'
)
headers_naming_tags = st.lists(
    st.one_of(
        st.just("TAG"),
        st.just("W/TAG"),
        st.just('"0.1"'),
        st.text(alphabet='"W/ ,*.0123456789x', max_size=6),
    ),
    max_size=4,
).map(", ".join)


@_settings
@given(header=st.one_of(st.text(max_size=40), headers_naming_tags))
def test_any_if_match_value_writes_only_when_it_names_the_current_tag(
    client: TestClient, alice: Caller, header: str
) -> None:
    created = _create(client, alice)
    task_id, tag = created.json()["id"], created.headers["etag"]
    value = header.replace("TAG", tag)
    response = client.patch(
        f"/api/tasks/{task_id}/complete",
        headers=[*alice.headers.items(), ("If-Match", value.encode("utf-8", "surrogatepass"))],
    )
    assert response.status_code in (200, 412), response.text
    strong_tags = [m.group(2) for m in re.finditer(r'(W/)?("[^"]*")', value) if not m.group(1)]
    names_current = value.strip(" \t") == "*" or (
        _LIST_OF_TAGS.fullmatch(value) is not None and tag in strong_tags
    )
    assert (response.status_code == 200) is names_current, value


@pytest.mark.anyio
async def test_concurrent_writes_with_one_tag_let_exactly_one_through(
    async_app: FastAPI, alice: Caller
) -> None:
    transport = httpx.ASGITransport(app=async_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        created = await http.post("/api/tasks", headers=alice.headers, json={"title": "race"})
        task_id, tag = created.json()["id"], created.headers["etag"]
        statuses: list[int] = []

        async def write(n: int) -> None:
            response = await http.put(
                f"/api/tasks/{task_id}",
                headers={**alice.headers, "If-Match": tag},
                json={"title": f"writer {n}"},
            )
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(write, n)
        final = await http.get(f"/api/tasks/{task_id}", headers=alice.headers)

    assert sorted(statuses) == [200] + [412] * 7
    assert final.json()["title"].startswith("writer ")
