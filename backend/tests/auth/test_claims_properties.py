"""Every claim the verifier reads, generated from all of Unicode and every JSON type.

For each of `sub`, `email`, `name`, `exp`, `iat`, `nbf` and `jti` one claim of an otherwise valid
token is replaced by a generated value (or removed). The verifier's verdict must be the spec's,
computed here independently: a `User` with exactly the claims' values, or an AuthenticationError
with the spec's code and reason, and never any other exception. A token it accepts is then sent to
the real app (real PostgreSQL): the request succeeds, never a 5xx, and once the token is revoked
it is refused as revoked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import hypothesis
import jwt
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.support.tokens import TEST_SECRET
from todo_api.config import Settings
from todo_api.errors import AuthenticationError
from todo_api.identity import User
from todo_api.security import TokenVerifier

ME = "/api/users/me"
# A revoked request aborts its pipeline, so the app closes that pooled connection and the pool
# opens a new one in its own thread, drawing a random jitter while Hypothesis generates the next
# example; Hypothesis mistakes that for a strategy using `random`.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
ABSENT = object()
# Seconds around a time limit where the verifier's clock and ours may disagree.
CLOCK_SLACK = 3

SPECIAL_CHARACTERS = sorted(
    {chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()}
    | {chr(code) for code in [*range(0x20), *range(0x7F, 0xA0)]}
    | set("\ud800\udbff\udc00\udfff")  # lone surrogates: not UTF-8, not PostgreSQL text
    | set("\u0301\u0338\u20dd\u200b\u200c\u200d\u2060\ufeff\ufffe\uffff")
    | set("\U0001f600\U0001f9d1\U000e0001\U0010ffff")
)
unicode_text = st.text(st.one_of(st.characters(), st.sampled_from(SPECIAL_CHARACTERS)), max_size=30)
big_integers = st.integers(-(10**400), 10**400)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    big_integers,
    st.floats(allow_nan=True, allow_infinity=True),
    unicode_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(unicode_text, inner, max_size=3),
    max_leaves=6,
)
# Times are drawn absolute or relative to now (resolved when the token is made), so both absurd
# values and values on either side of each limit are tried.
relative_times = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6), st.sampled_from([-31, -29, 29, 31])
).map(lambda offset: ("relative", offset))
claim_values: dict[str, st.SearchStrategy[Any]] = {
    "sub": st.one_of(
        unicode_text, st.text(st.characters(), min_size=250, max_size=260), json_values
    ),
    "email": st.one_of(unicode_text, json_values),
    "name": st.one_of(unicode_text, json_values),
    "jti": st.one_of(unicode_text, st.text(max_size=600), json_values),
    "exp": st.one_of(relative_times, json_values, big_integers),
    "iat": st.one_of(relative_times, json_values, big_integers),
    "nbf": st.one_of(relative_times, json_values, big_integers),
}


def _resolve(value: Any, now: float) -> Any:
    if isinstance(value, tuple) and value[:1] == ("relative",):
        return now + value[1]
    return value


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _postgres_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _outcomes(claims: dict[str, Any], now: float, leeway: int) -> set[tuple[str, str]]:
    """What the spec says of these claims: {("valid", "")} or the (code, reason) of the 401.

    More than one outcome only when a time lies within CLOCK_SLACK of its limit.
    """
    exp = claims.get("exp")
    if exp is None:
        return {("invalid_token", "missing_exp")}
    for name in ("exp", "nbf", "iat"):
        if name in claims and not _is_number(claims[name]):
            return {("invalid_token", f"bad_{name}")}
    if "jti" in claims and not isinstance(claims["jti"], str):
        return {("invalid_token", "bad_jti")}
    outcomes: set[tuple[str, str]] = set()
    verdict_so_far = True
    for name in ("iat", "nbf"):
        if name in claims and verdict_so_far:
            limit = now + leeway
            if claims[name] > limit + CLOCK_SLACK:
                outcomes.add(("invalid_token", "not_yet_valid"))
                verdict_so_far = False
            elif claims[name] > limit - CLOCK_SLACK:
                outcomes.add(("invalid_token", "not_yet_valid"))
    if verdict_so_far:
        limit = now - leeway
        if exp < limit - CLOCK_SLACK:
            outcomes.add(("token_expired", "expired"))
            verdict_so_far = False
        elif exp < limit + CLOCK_SLACK:
            outcomes.add(("token_expired", "expired"))
    if verdict_so_far:
        sub = claims.get("sub")
        if sub is None:
            outcomes.add(("invalid_token", "missing_sub"))
        elif not (isinstance(sub, str) and 0 < len(sub) <= 255 and _postgres_text(sub)):
            outcomes.add(("invalid_token", "bad_sub"))
        else:
            outcomes.add(("valid", ""))
    return outcomes


def _sign(claims: dict[str, Any], *, escaped: bool) -> str:
    """PyJWT's encoder cannot write lone surrogates; the JSON is written here and signed."""
    text = json.dumps(claims, ensure_ascii=escaped)
    return jwt.PyJWS().encode(text.encode("utf-8", "surrogatepass"), TEST_SECRET, algorithm="HS256")


def _expected_display(value: Any) -> str | None:
    return value if isinstance(value, str) and _postgres_text(value) else None


def _assert_user_matches(user: User, claims: dict[str, Any], token: str) -> None:
    assert user.id == claims["sub"]
    assert user.email == _expected_display(claims.get("email"))
    assert user.name == _expected_display(claims.get("name"))
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        digest = hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()
        assert user.token_id == "jti-sha256:" + digest
    else:
        assert user.token_id == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    for moment, seconds in ((user.expires_at, claims["exp"]), (user.issued_at, claims.get("iat"))):
        assert moment == (None if seconds is None else _clamped_instant(seconds))


def _clamped_instant(seconds: float) -> datetime:
    """The spec's instant for a NumericDate; beyond the calendar it is its first or last day."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return (datetime.max if seconds > 0 else datetime.min).replace(tzinfo=UTC)


def _near_a_limit(claims: dict[str, Any], now: float, leeway: int) -> bool:
    """A verdict that may change while the requests run, so the app is not asked about it."""
    margin = 10 + CLOCK_SLACK
    # Comparisons only: an int of hundreds of digits cannot be turned into a float.
    limits = [(claims["exp"], now - leeway)]
    limits += [(claims[name], now + leeway) for name in ("iat", "nbf") if name in claims]
    return any(limit - margin < value < limit + margin for value, limit in limits)


def _verdict(settings: Settings, token: str) -> User | tuple[str, str]:
    """The verifier's answer: the User, or the (code, reason) of its AuthenticationError."""
    verifier = TokenVerifier(settings, cache_entries=0)
    try:
        return asyncio.run(verifier.verify(token))
    except AuthenticationError as error:
        return (error.code, error.reason) if error.status == 401 else ("status", str(error.status))


def _assert_works_and_then_is_revoked(client: TestClient, token: str, user: User) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    response = client.get(ME, headers=headers)
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["email"], response.json()["name"]) == (
        user.id,
        user.email,
        user.name,
    )
    revoke = client.delete("/api/users/me/token", headers=headers)
    assert revoke.status_code == 204, revoke.text
    refused = client.get(ME, headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["code"] == "token_revoked"


@pytest.mark.parametrize("claim", list(claim_values))
@hypothesis.settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_every_value_of_a_claim_gets_the_specified_verdict_and_never_a_server_error(
    client: TestClient, settings: Settings, claim: str, data: st.DataObject
) -> None:
    now = time.time()
    claims: dict[str, Any] = {
        # A fresh user per example, so one example's revocation never decides another's.
        "sub": uuid.uuid4().hex,
        "iat": int(now),
        "exp": int(now) + 3600,
        # Keeps tokens distinct even when an example repeats a value.
        "nonce": uuid.uuid4().hex,
    }
    value = data.draw(st.one_of(st.just(ABSENT), claim_values[claim]), label=claim)
    if value is ABSENT:
        claims.pop(claim, None)
    else:
        claims[claim] = _resolve(value, now)
    token = _sign(claims, escaped=data.draw(st.booleans(), label="escaped"))
    if len(token.encode()) > 8 * 1024:
        return
    outcomes = _outcomes(claims, time.time(), settings.jwt_leeway_seconds)

    user = _verdict(settings, token)
    hypothesis.event("accepted" if isinstance(user, User) else f"refused: {user[1]}")
    if not isinstance(user, User):
        assert user in outcomes, (claims, outcomes)
        return
    assert ("valid", "") in outcomes, (claims, outcomes)
    _assert_user_matches(user, claims, token)
    if not _near_a_limit(claims, time.time(), settings.jwt_leeway_seconds):
        _assert_works_and_then_is_revoked(client, token, user)
