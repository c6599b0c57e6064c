"""`Location` and `Link` are relative, percent-encoded references that work when followed.

Whatever the user id (Better Auth's are 32 alphanumerics, but `sub` may be any string up to 255
characters), and whatever `Host` the request carried. These run against a real uvicorn: Starlette's
TestClient percent-decodes paths twice, so it cannot tell `%2541` from `%41`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.live_server import live_server
from tests.support.tokens import Caller, make_token
from todo_api.config import Settings
from todo_api.main import create_app

_LINK = re.compile(r'^<([^>]*)>; rel="next"$')

# Characters a sub may hold and a path segment can carry: everything PostgreSQL text stores
# (no NUL, no lone surrogates) except "/", which can never be one path segment.
_path_safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=40,
).filter(lambda s: s not in (".", ".."))

ODD_USER_IDS = ["用户", "a b", "100%", "%41", "ü", "a?b", "a#b", "a+b", "a;b=c", "tab\there", "😀"]


@pytest.fixture(scope="module")
def http(settings: Settings) -> Iterator[httpx.Client]:
    with live_server(create_app(settings)) as base_url, httpx.Client(base_url=base_url) as client:
        yield client


def _caller(user_id: str) -> Caller:
    return Caller(user_id, make_token(user_id))


def _is_relative_reference(value: str) -> bool:
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc and value.isascii() and " " not in value


def _create_and_follow(client: httpx.Client, caller: Caller) -> None:
    collection = f"/api/{quote(caller.id, safe='')}/tasks"
    created = client.post(collection, headers=caller.headers, json={"title": "follow me"})
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert _is_relative_reference(location)
    assert location == f"{collection}/{created.json()['id']}"
    followed = client.get(location, headers=caller.headers)
    assert followed.status_code == 200, followed.text
    assert followed.json() == created.json()


def test_location_works_for_odd_user_ids(http: httpx.Client) -> None:
    for user_id in ODD_USER_IDS:
        _create_and_follow(http, _caller(user_id))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user_id=_path_safe_text)
def test_location_works_for_any_user_id(http: httpx.Client, user_id: str) -> None:
    _create_and_follow(http, _caller(user_id + "-" + make_token()[-8:]))


def test_location_on_the_short_path_is_relative(http: httpx.Client, alice: Caller) -> None:
    created = http.post(
        "/api/tasks", headers={**alice.headers, "Host": "evil.example"}, json={"title": "t"}
    )
    assert created.headers["location"] == f"/api/tasks/{created.json()['id']}"


def _pages(client: httpx.Client, caller: Caller, first: str, host: str | None = None) -> list[int]:
    """Follow `Link: rel="next"` from `first` to the end; the ids seen, in order."""
    seen: list[int] = []
    url: str | None = first
    headers = {**caller.headers, **({"Host": host} if host else {})}
    while url is not None:
        page = client.get(url, headers=headers)
        assert page.status_code == 200, page.text
        seen += [task["id"] for task in page.json()]
        link = page.headers.get("link")
        if link is None:
            url = None
            continue
        match = _LINK.match(link)
        assert match, link
        url = match.group(1)
        assert _is_relative_reference(url), url
        assert "evil" not in url
    return seen


def test_link_is_relative_and_never_reflects_the_host(http: httpx.Client) -> None:
    for user_id in [*ODD_USER_IDS[:4], "plain"]:
        caller = _caller(user_id + make_token()[-6:])
        ids = [
            http.post("/api/tasks", headers=caller.headers, json={"title": f"t{n}"}).json()["id"]
            for n in range(5)
        ]
        collection = f"/api/{quote(caller.id, safe='')}/tasks"
        query = "?limit=2&q=t&sort=title"
        for start in (f"{collection}{query}", f"/api/tasks{query}"):
            assert _pages(http, caller, start, host="evil.example") == ids


def test_link_keeps_an_odd_search_text(http: httpx.Client, alice: Caller) -> None:
    odd = "50% & a+b #1 ü"
    for n in range(3):
        http.post("/api/tasks", headers=alice.headers, json={"title": f"{odd} {n}"})
    http.post("/api/tasks", headers=alice.headers, json={"title": "unrelated"})
    url = f"/api/tasks?limit=1&q={quote(odd, safe='')}"
    assert len(_pages(http, alice, url)) == 3
