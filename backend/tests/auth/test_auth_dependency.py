"""T004: `get_current_user` through the real app, in both verification modes.

Shared-secret tokens (HS256 with BETTER_AUTH_SECRET) and Better Auth's own tokens (EdDSA, keys
published at a real JWKS endpoint on 127.0.0.1) are checked on GET /api/users/me. Every refusal is
checked as a client and an operator see it: 401 problem+json with the spec's code and
WWW-Authenticate challenge, and exactly one security-log event for it, never holding the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from tests.support.jwks_server import (
    JwksServer,
    ManualClock,
    SigningKey,
    claims,
    ed25519_key,
    free_port_url,
    running_app,
)
from tests.support.tokens import TEST_SECRET, make_token, new_user_id
from todo_api.config import Settings

ME = "/api/users/me"
REMOVE = object()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def security_events(caplog: pytest.LogCaptureFixture, request_id: str) -> list[Any]:
    return [
        record
        for record in caplog.records
        if getattr(record, "event", None) == "authentication_failed"
        and getattr(record, "request_id", None) == request_id
    ]


def assert_refused(
    response: httpx.Response,
    code: str,
    caplog: pytest.LogCaptureFixture,
    *,
    token: str | None = None,
    reason: str | None = None,
    user_id: str | None = None,
) -> None:
    """A 401 as the spec's Errors section has it, and its one security-log line."""
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == 401
    assert isinstance(body["detail"], str)
    assert body["detail"].endswith(".")
    assert body["request_id"] == response.headers["x-request-id"]
    challenge = response.headers["www-authenticate"]
    if code == "missing_token":
        assert challenge == 'Bearer realm="todo-api"'
    else:
        assert challenge.startswith(
            'Bearer realm="todo-api", error="invalid_token", error_description="'
        )
    events = security_events(caplog, body["request_id"])
    assert len(events) == 1, "every 401 is logged exactly once"
    event = events[0]
    assert event.method == "GET"
    assert event.path == ME
    assert event.client == "testclient"
    assert event.status == 401
    assert event.code == code
    if reason is not None:
        assert event.reason == reason
    # A user id is logged only when the signature was valid.
    assert getattr(event, "user_id", None) == user_id
    if token is not None:
        assert token not in response.text
        assert token not in challenge
        for record in caplog.records:
            assert token not in record.getMessage()
            assert token not in repr(vars(record))


# --- both modes ------------------------------------------------------------------------------


@dataclass
class Mode:
    """One way of verifying tokens: the app that does it and how its tokens are signed."""

    name: str
    client: TestClient
    issuer: str | None
    sign: Callable[[dict[str, Any]], str]
    # Signs a payload given as JSON bytes, for claims PyJWT's encoder cannot write (`\\ud800`).
    sign_payload: Callable[[bytes], str]

    def token(self, user_id: str | None = None, **overrides: Any) -> str:
        body = claims(self.issuer, user_id)
        for name, value in overrides.items():
            if value is REMOVE:
                body.pop(name, None)
            else:
                body[name] = value
        return self.sign(body)


@pytest.fixture
def signing_key(jwks: JwksServer) -> SigningKey:
    key = ed25519_key()
    jwks.publish(key)
    return key


@pytest.fixture
def both_modes_settings(settings: Settings, jwks: JwksServer) -> Settings:
    """BETTER_AUTH_SECRET and BETTER_AUTH_URL both set: both modes at once."""
    return settings.model_copy(update={"better_auth_url": jwks.base_url})


@pytest.fixture
def jwks_client(both_modes_settings: Settings, clock: ManualClock) -> Iterator[TestClient]:
    with running_app(both_modes_settings, clock) as client:
        yield client


@pytest.fixture(params=["shared_secret", "jwks"])
def mode(request: pytest.FixtureRequest) -> Mode:
    if request.param == "shared_secret":
        client: TestClient = request.getfixturevalue("client")
        return Mode(
            "shared_secret",
            client,
            None,
            lambda body: jwt.encode(body, TEST_SECRET, algorithm="HS256"),
            lambda payload: jwt.PyJWS().encode(payload, TEST_SECRET, algorithm="HS256"),
        )
    jwks: JwksServer = request.getfixturevalue("jwks")
    key: SigningKey = request.getfixturevalue("signing_key")
    return jwks_mode(request.getfixturevalue("jwks_client"), jwks.base_url, key)


def jwks_mode(client: TestClient, issuer: str, key: SigningKey) -> Mode:
    return Mode(
        "jwks",
        client,
        issuer,
        key.sign,
        lambda payload: jwt.PyJWS().encode(
            payload, key.private, algorithm=key.algorithm, headers={"kid": key.kid}
        ),
    )


def test_a_valid_token_identifies_the_caller(mode: Mode) -> None:
    user_id = new_user_id()
    token = mode.token(user_id, email="ada@example.com", name="Ada Lovelace")
    response = mode.client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    me = response.json()
    assert (me["id"], me["email"], me["name"]) == (user_id, "ada@example.com", "Ada Lovelace")


def test_email_and_name_are_optional(mode: Mode) -> None:
    response = mode.client.get(ME, headers=bearer(mode.token()))
    assert response.status_code == 200
    assert (response.json()["email"], response.json()["name"]) == (None, None)


def test_a_token_signed_with_another_key_is_invalid(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    body = claims(mode.issuer)
    if mode.name == "shared_secret":
        forged = jwt.encode(body, "another-secret-" + "x" * 40, algorithm="HS256")
    else:
        published = mode.token()
        kid = jwt.get_unverified_header(published)["kid"]
        forged = ed25519_key(kid=kid).sign(body)
    response = mode.client.get(ME, headers=bearer(forged))
    assert_refused(response, "invalid_token", caplog, token=forged, reason="bad_signature")


def test_a_tampered_token_is_invalid(mode: Mode, caplog: pytest.LogCaptureFixture) -> None:
    header, payload, signature = mode.token().split(".")
    claims_of = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims_of["sub"] = "someone-else"
    tampered_payload = base64.urlsafe_b64encode(json.dumps(claims_of).encode()).rstrip(b"=")
    tampered = f"{header}.{tampered_payload.decode()}.{signature}"
    response = mode.client.get(ME, headers=bearer(tampered))
    assert_refused(response, "invalid_token", caplog, token=tampered, reason="bad_signature")


def test_an_expired_token_is_token_expired_and_names_its_user(
    mode: Mode, caplog: pytest.LogCaptureFixture
) -> None:
    user_id = new_user_id()
    now = int(time.time())
    token = mode.token(user_id, iat=now - 3600, exp=now - 600)
    response = mode.client.get(ME, headers=bearer(token))
    assert_refused(
        response, "token_expired", caplog, token=token, reason="expired", user_id=user_id
    )
    assert response.json()["detail"] == "The token has expired."


def test_expiry_within_the_leeway_is_accepted(mode: Mode) -> None:
    token = mode.token(exp=int(time.time()) - 10)
    assert mode.client.get(ME, headers=bearer(token)).status_code == 200


def test_expiry_beyond_the_leeway_is_refused(mode: Mode, caplog: pytest.LogCaptureFixture) -> None:
    token = mode.token(exp=int(time.time()) - 45)
    response = mode.client.get(ME, headers=bearer(token))
    assert_refused(response, "token_expired", caplog, token=token, user_id=response_user(token))


def response_user(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_time_claim_in_the_future_beyond_the_leeway_is_refused(
    mode: Mode, caplog: pytest.LogCaptureFixture, claim: str
) -> None:
    user_id = new_user_id()
    token = mode.token(user_id, **{claim: int(time.time()) + 120})
    response = mode.client.get(ME, headers=bearer(token))
    assert_refused(
        response, "invalid_token", caplog, token=token, reason="not_yet_valid", user_id=user_id
    )


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_time_claim_in_the_future_within_the_leeway_is_accepted(mode: Mode, claim: str) -> None:
    token = mode.token(**{claim: int(time.time()) + 10})
    assert mode.client.get(ME, headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": REMOVE}, "missing_exp"),
        ({"exp": None}, "missing_exp"),
        # PyJWT alone accepts a numeric string (it calls int() on it); the spec does not.
        ({"exp": "9999999999"}, "bad_exp"),
        ({"exp": "tomorrow"}, "bad_exp"),
        ({"exp": True}, "bad_exp"),
        ({"exp": float("inf")}, "bad_exp"),
        ({"nbf": "0"}, "bad_nbf"),
        ({"iat": [1]}, "bad_iat"),
        ({"iat": 1e30}, "not_yet_valid"),
        ({"nbf": 2**70}, "not_yet_valid"),
        ({"sub": REMOVE}, "missing_sub"),
        ({"sub": ""}, "bad_sub"),
        ({"sub": 12345}, "bad_sub"),
        ({"sub": "x" * 256}, "bad_sub"),
        ({"sub": ["a"]}, "bad_sub"),
        ({"jti": 7}, "bad_jti"),
        ({"jti": None}, "bad_jti"),
        ({"jti": ["a"]}, "bad_jti"),
        ({"sub": "user\x00id"}, "bad_sub"),
        ({"iat": 10**400}, "not_yet_valid"),
        ({"nbf": 10**400}, "not_yet_valid"),
        ({"iat": 1e308}, "not_yet_valid"),
    ],
    ids=lambda value: str(value)[:30],
)
def test_claims_outside_the_spec_are_invalid(
    mode: Mode, caplog: pytest.LogCaptureFixture, overrides: dict[str, Any], reason: str
) -> None:
    token = mode.token(**overrides)
    response = mode.client.get(ME, headers=bearer(token))
    assert_refused(
        response,
        "invalid_token",
        caplog,
        token=token,
        reason=reason,
        user_id=None if "sub" in overrides else response_user(token),
    )


def test_a_subject_of_255_characters_is_accepted(mode: Mode) -> None:
    user_id = "u" * 255
    response = mode.client.get(ME, headers=bearer(mode.token(user_id)))
    assert response.status_code == 200
    assert response.json()["id"] == user_id


def test_absurd_but_valid_times_do_not_break_the_server(mode: Mode) -> None:
    # exp far beyond datetime's range and iat far in the past are clamped, not overflowed.
    token = mode.token(exp=2**70, iat=-1e30)
    response = mode.client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "times",
    [
        {"exp": 10**400},
        {"exp": 1e308},
        {"iat": -(10**400)},
        {"iat": -1e308},
        {"nbf": -(10**400)},
    ],
    ids=lambda value: str(value)[:20],
)
def test_hundreds_of_digits_in_a_time_claim_are_judged_like_any_other_time(
    mode: Mode, times: dict[str, float]
) -> None:
    """An exp beyond any calendar is valid forever; an iat or nbf before any is long past."""
    user_id = new_user_id()
    token = mode.token(user_id, **times)
    response = mode.client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user_id
    assert mode.client.delete("/api/users/me/token", headers=bearer(token)).status_code == 204
    assert mode.client.get(ME, headers=bearer(token)).json()["code"] == "token_revoked"


@pytest.mark.parametrize("exp", [-(10**400), -1e308])
def test_an_expiry_hundreds_of_digits_in_the_past_is_expired(
    mode: Mode, caplog: pytest.LogCaptureFixture, exp: float
) -> None:
    user_id = new_user_id()
    token = mode.token(user_id, exp=exp)
    response = mode.client.get(ME, headers=bearer(token))
    assert_refused(
        response, "token_expired", caplog, token=token, reason="expired", user_id=user_id
    )


@pytest.mark.parametrize("sub", ["user\x00id", "\x00", "user\ud800", "\udfff"])
def test_a_subject_postgres_cannot_hold_is_invalid_token(
    mode: Mode, caplog: pytest.LogCaptureFixture, sub: str
) -> None:
    """Such a `sub` once reached Postgres: a 422 for NUL, a 500 for a lone surrogate."""
    token = _signed_payload(mode, {**claims(mode.issuer), "sub": sub})
    response = mode.client.get(ME, headers=bearer(token))
    assert_refused(response, "invalid_token", caplog, token=token, reason="bad_sub")


@pytest.mark.parametrize("claim", ["email", "name"])
@pytest.mark.parametrize("value", ["ada\x00", "\ud800", "ada\udc00lovelace"])
def test_an_email_or_name_postgres_cannot_hold_is_dropped(
    mode: Mode, claim: str, value: str
) -> None:
    user_id = new_user_id()
    token = _signed_payload(mode, {**claims(mode.issuer, user_id), claim: value})
    response = mode.client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user_id
    assert response.json()[claim] is None


def _signed_payload(mode: Mode, body: dict[str, Any]) -> str:
    """A token of `mode` whose payload JSON is written here: `\\ud800` escapes survive as such."""
    return mode.sign_payload(json.dumps(body, ensure_ascii=True).encode())


def test_alg_none_is_refused(mode: Mode, caplog: pytest.LogCaptureFixture) -> None:
    unsigned = jwt.encode(claims(mode.issuer), None, algorithm="none")
    response = mode.client.get(ME, headers=bearer(unsigned))
    assert_refused(response, "invalid_token", caplog, token=unsigned, reason="alg_none")
    signed_but_none = mode.token().rsplit(".", 1)[0]
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    forged = header + "." + signed_but_none.split(".")[1] + ".c2ln"
    response = mode.client.get(ME, headers=bearer(forged))
    assert_refused(response, "invalid_token", caplog, token=forged, reason="alg_none")


# --- the Authorization header (mode-independent) --------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Bearer", "empty"),
        ("Bearer ", "empty"),
        ("Bearer    ", "empty"),
        ("", "empty"),
        ("Basic dXNlcjpwYXNz", "wrong_scheme"),
        ("Token abc.def.ghi", "wrong_scheme"),
    ],
)
def test_no_usable_bearer_credential_is_missing_token(
    client: TestClient, caplog: pytest.LogCaptureFixture, header: str, reason: str
) -> None:
    response = client.get(ME, headers={"Authorization": header})
    assert_refused(response, "missing_token", caplog, reason=reason if header else None)


def test_no_authorization_header_is_missing_token(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get(ME)
    assert_refused(response, "missing_token", caplog, reason="no_header")
    assert response.json()["detail"] == "This endpoint needs an Authorization: Bearer token."


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_case_insensitive(client: TestClient, scheme: str) -> None:
    user_id = new_user_id()
    response = client.get(ME, headers={"Authorization": f"{scheme} {make_token(user_id)}"})
    assert response.status_code == 200
    assert response.json()["id"] == user_id


def test_two_authorization_headers_are_invalid_even_when_both_are_valid(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_token(), make_token()
    response = client.get(
        ME, headers=[("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
    )
    assert_refused(response, "invalid_token", caplog, token=first, reason="multiple_headers")
    assert second not in response.text


@pytest.mark.parametrize(
    "credential",
    [
        "garbage",
        "not-a.jwt",  # two parts
        "eyJhbGciOiJIUzI1NiJ9.e30",  # two parts of a real-looking token
        "a.b.c.d",
        "%%%.%%%.%%%",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",  # payload is not JSON
        "eyJ0eXAiOiJKV1QifQ.e30.c2ln",  # header without alg
    ],
)
def test_malformed_tokens_are_invalid(
    client: TestClient, caplog: pytest.LogCaptureFixture, credential: str
) -> None:
    response = client.get(ME, headers=bearer(credential))
    assert_refused(response, "invalid_token", caplog, token=credential)


def test_a_credential_with_two_words_is_invalid(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = make_token()
    response = client.get(ME, headers=bearer(f"{token} {token}"))
    assert_refused(response, "invalid_token", caplog, token=token, reason="not_canonical")


def _token_of_length(length: int) -> str:
    """A valid shared-secret token exactly `length` bytes long."""
    for padding in range(length):
        token = make_token(pad="p" * padding)
        if len(token) == length:
            return token
        if len(token) > length:
            break
    raise AssertionError(f"no token of exactly {length} bytes")


def test_a_token_of_exactly_8_kib_is_accepted(client: TestClient) -> None:
    token = _token_of_length(8192)
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_a_token_over_8_kib_is_refused_unparsed_even_when_valid(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Base64 grows in steps of 4; 8196 is the first valid length over the limit.
    token = _token_of_length(8196)
    response = client.get(ME, headers=bearer(token))
    assert_refused(response, "invalid_token", caplog, token=token, reason="oversized")


def test_hs384_is_refused_unless_configured(
    client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    user_id = new_user_id()
    token = jwt.encode(claims(None, user_id), TEST_SECRET, algorithm="HS384")
    response = client.get(ME, headers=bearer(token))
    assert_refused(response, "invalid_token", caplog, token=token, reason="alg_not_allowed")
    widened = settings.model_copy(update={"jwt_algorithms": ["HS256", "HS384", "HS512"]})
    with running_app(widened) as widened_client:
        assert widened_client.get(ME, headers=bearer(token)).status_code == 200
        hs512 = jwt.encode(claims(None), TEST_SECRET, algorithm="HS512")
        assert widened_client.get(ME, headers=bearer(hs512)).status_code == 200


def test_an_unconfigured_audience_is_not_checked(client: TestClient) -> None:
    token = make_token(aud="https://somewhere.example", iss="https://issuer.example")
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_configured_issuer_and_audience_apply_to_shared_secret_tokens(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    strict = settings.model_copy(
        update={"jwt_issuer": "https://app.example", "jwt_audience": "todo-api"}
    )
    with running_app(strict) as strict_client:
        good = make_token(iss="https://app.example", aud="todo-api")
        assert strict_client.get(ME, headers=bearer(good)).status_code == 200
        for token, reason in [
            (make_token(), "missing_iss"),
            (make_token(iss="https://app.example"), "missing_aud"),
            (make_token(iss="https://evil.example", aud="todo-api"), "bad_iss"),
            (make_token(iss="https://app.example", aud="other-api"), "bad_aud"),
        ]:
            response = strict_client.get(ME, headers=bearer(token))
            assert_refused(
                response,
                "invalid_token",
                caplog,
                token=token,
                reason=reason,
                user_id=response_user(token),
            )


# --- JWKS only: keys, issuer, audience, availability -----------------------------------------


def test_a_shared_secret_token_needs_no_iss_or_aud_when_both_modes_are_on(
    jwks_client: TestClient,
) -> None:
    response = jwks_client.get(ME, headers=bearer(make_token()))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example"}, "bad_iss"),
        ({"aud": "https://evil.example"}, "bad_aud"),
        ({"iss": REMOVE}, "missing_iss"),
        ({"aud": REMOVE}, "missing_aud"),
    ],
)
def test_jwks_tokens_must_come_from_and_for_better_auth_url(
    jwks_client: TestClient,
    jwks: JwksServer,
    signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    mode = jwks_mode(jwks_client, jwks.base_url, signing_key)
    user_id = new_user_id()
    token = mode.token(user_id, **overrides)
    response = jwks_client.get(ME, headers=bearer(token))
    assert_refused(response, "invalid_token", caplog, token=token, reason=reason, user_id=user_id)


def test_an_unknown_kid_is_invalid(
    jwks_client: TestClient,
    jwks: JwksServer,
    signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert jwks_client.get(ME, headers=bearer(signing_key.sign(claims(jwks.base_url)))).is_success
    stranger = ed25519_key().sign(claims(jwks.base_url))
    for _ in range(3):
        response = jwks_client.get(ME, headers=bearer(stranger))
        assert_refused(response, "invalid_token", caplog, token=stranger, reason="unknown_kid")
    # Fetched once at first use; unknown kids within ten seconds do not hammer the endpoint.
    assert jwks.hits == 1


def test_a_rotated_key_is_accepted_without_a_restart(
    jwks_client: TestClient, jwks: JwksServer, signing_key: SigningKey, clock: ManualClock
) -> None:
    assert jwks_client.get(ME, headers=bearer(signing_key.sign(claims(jwks.base_url)))).is_success
    rotated = ed25519_key()
    jwks.publish(rotated)
    clock.advance(10)
    user_id = new_user_id()
    response = jwks_client.get(ME, headers=bearer(rotated.sign(claims(jwks.base_url, user_id))))
    assert response.status_code == 200
    assert response.json()["id"] == user_id


def test_algorithm_confusion_with_the_published_public_key_is_refused(
    jwks_client: TestClient,
    jwks: JwksServer,
    signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An HS256 token whose HMAC key is the public key everyone can download."""
    public = signing_key.private.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk_json = json.dumps(signing_key.jwk).encode()
    for hmac_key in (pem, raw, jwk_json, signing_key.jwk["x"].encode()):
        forged = _hs256(claims(jwks.base_url), hmac_key, kid=signing_key.kid)
        response = jwks_client.get(ME, headers=bearer(forged))
        assert_refused(response, "invalid_token", caplog, token=forged, reason="bad_signature")


def _hs256(body: dict[str, Any], key: bytes, **headers: Any) -> str:
    """Signed by hand: PyJWT itself refuses to use a public key as an HMAC secret."""

    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = segment({"alg": "HS256", "typ": "JWT", **headers}) + "." + segment(body)
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def test_an_unreachable_jwks_endpoint_is_service_unavailable(settings: Settings) -> None:
    down = settings.model_copy(
        update={"better_auth_url": "http://127.0.0.1:9", "better_auth_jwks_url": free_port_url()}
    )
    with running_app(down) as client:
        token = ed25519_key().sign(claims("http://127.0.0.1:9"))
        response = client.get(ME, headers=bearer(token))
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "service_unavailable"
        assert response.headers["retry-after"]
        assert token not in response.text
        # The shared secret still works while the key server is down.
        assert client.get(ME, headers=bearer(make_token())).status_code == 200


def test_cached_keys_keep_working_while_the_jwks_endpoint_is_down(
    jwks_client: TestClient, jwks: JwksServer, signing_key: SigningKey, clock: ManualClock
) -> None:
    assert jwks_client.get(ME, headers=bearer(signing_key.sign(claims(jwks.base_url)))).is_success
    jwks.status = 503
    clock.advance(3600)
    response = jwks_client.get(ME, headers=bearer(signing_key.sign(claims(jwks.base_url))))
    assert response.status_code == 200
    assert jwks.hits == 2


def test_a_jwks_endpoint_that_fails_from_the_start_is_service_unavailable(
    jwks_client: TestClient, jwks: JwksServer, signing_key: SigningKey
) -> None:
    jwks.status = 500
    response = jwks_client.get(ME, headers=bearer(signing_key.sign(claims(jwks.base_url))))
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


# --- the security log as operators read it ---------------------------------------------------


def test_each_refusal_is_one_json_line_on_stdout_without_the_token(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from todo_api.log import configure_logging

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("INFO")
    try:
        user_id = new_user_id()
        expired = make_token(user_id, ttl_seconds=-3600)
        response = client.get(ME, headers=bearer(expired) | {"X-Request-ID": "req-expired-1"})
    finally:
        root.handlers[:], root.level = saved_handlers, saved_level
    assert response.status_code == 401
    output = capsys.readouterr().out
    assert expired not in output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = [line for line in lines if line.get("event") == "authentication_failed"]
    assert len(events) == 1
    event = events[0]
    assert {
        key: event[key] for key in ("event", "reason", "method", "path", "request_id", "user_id")
    } == {
        "event": "authentication_failed",
        "reason": "expired",
        "method": "GET",
        "path": ME,
        "request_id": "req-expired-1",
        "user_id": user_id,
    }
    assert event["client"] == "testclient"
