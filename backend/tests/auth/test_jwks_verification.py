"""The JWKS side of the verifier against a real HTTP endpoint: caching, refresh, key selection.

App-level behaviour (status codes, headers, logs) is in test_auth_dependency.py; these tests look
at what only the verifier can show: how often the endpoint is asked, and which key verifies what.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from tests.support.jwks_server import (
    JwksServer,
    ManualClock,
    claims,
    ed25519_key,
    free_port_url,
    p256_key,
    rsa_key,
)
from tests.support.tokens import TEST_SECRET
from todo_api.config import Settings
from todo_api.errors import AuthenticationError, ServiceUnavailable
from todo_api.security import TokenVerifier
from todo_api.security.jwks import parse_key_set

pytestmark = pytest.mark.anyio


def jwks_settings(jwks: JwksServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        # The verifier never touches the database.
        "database_url": SecretStr("postgresql://unused@127.0.0.1:1/unused"),
        "better_auth_url": jwks.base_url,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def verifier(jwks: JwksServer, clock: ManualClock) -> AsyncIterator[TokenVerifier]:
    token_verifier = TokenVerifier(jwks_settings(jwks), clock=clock)
    yield token_verifier
    await token_verifier.aclose()


async def reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthenticationError) as refused:
        await verifier.verify(token)
    return refused.value.reason


async def test_keys_are_fetched_once_and_then_served_from_the_cache(
    jwks: JwksServer, verifier: TokenVerifier
) -> None:
    key = ed25519_key()
    jwks.publish(key)
    for _ in range(5):
        user = await verifier.verify(key.sign(claims(jwks.base_url, "user-1")))
        assert user.id == "user-1"
    assert jwks.hits == 1


async def test_concurrent_requests_on_a_cold_cache_share_one_fetch(
    jwks: JwksServer, verifier: TokenVerifier
) -> None:
    key = ed25519_key()
    jwks.publish(key)
    jwks.delay_seconds = 0.2
    tokens = [key.sign(claims(jwks.base_url)) for _ in range(20)]
    users = await asyncio.gather(*(verifier.verify(token) for token in tokens))
    assert len(users) == 20
    assert jwks.hits == 1


async def test_the_key_set_is_refreshed_after_five_minutes(
    jwks: JwksServer, verifier: TokenVerifier, clock: ManualClock
) -> None:
    old, new = ed25519_key(), ed25519_key()
    jwks.publish(old)
    await verifier.verify(old.sign(claims(jwks.base_url)))
    jwks.publish(new)  # the old key is withdrawn
    clock.advance(299)
    await verifier.verify(old.sign(claims(jwks.base_url)))
    assert jwks.hits == 1
    clock.advance(2)
    assert await reason_of(verifier, old.sign(claims(jwks.base_url))) == "unknown_kid"
    assert jwks.hits == 2


async def test_a_new_key_is_accepted_without_a_restart(
    jwks: JwksServer, verifier: TokenVerifier, clock: ManualClock
) -> None:
    current, rotated = ed25519_key(), ed25519_key()
    jwks.publish(current)
    await verifier.verify(current.sign(claims(jwks.base_url)))
    jwks.publish(current, rotated)
    clock.advance(10)
    user = await verifier.verify(rotated.sign(claims(jwks.base_url, "rotated-user")))
    assert user.id == "rotated-user"
    assert jwks.hits == 2


async def test_an_unknown_kid_refetches_at_most_once_per_ten_seconds(
    jwks: JwksServer, verifier: TokenVerifier, clock: ManualClock
) -> None:
    known, unpublished = ed25519_key(), ed25519_key()
    jwks.publish(known)
    await verifier.verify(known.sign(claims(jwks.base_url)))
    assert jwks.hits == 1
    forged = unpublished.sign(claims(jwks.base_url))
    # Just fetched: the set is fresh, an unknown kid is simply unknown.
    assert await reason_of(verifier, forged) == "unknown_kid"
    assert jwks.hits == 1
    clock.advance(10)
    for _ in range(50):
        assert await reason_of(verifier, forged) == "unknown_kid"
    assert jwks.hits == 2
    clock.advance(9)
    assert await reason_of(verifier, forged) == "unknown_kid"
    assert jwks.hits == 2
    clock.advance(1)
    assert await reason_of(verifier, forged) == "unknown_kid"
    assert jwks.hits == 3


async def test_no_key_set_and_none_cached_is_service_unavailable(
    jwks: JwksServer, clock: ManualClock
) -> None:
    verifier = TokenVerifier(jwks_settings(jwks, better_auth_jwks_url=free_port_url()))
    try:
        with pytest.raises(ServiceUnavailable):
            await verifier.verify(ed25519_key().sign(claims(jwks.base_url)))
    finally:
        await verifier.aclose()


async def test_an_endpoint_answering_errors_is_service_unavailable_until_it_recovers(
    jwks: JwksServer, verifier: TokenVerifier, clock: ManualClock
) -> None:
    key = ed25519_key()
    jwks.publish(key)
    jwks.status = 503
    token = key.sign(claims(jwks.base_url))
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(token)
    # Within a second the down endpoint is not asked again.
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(token)
    assert jwks.hits == 1
    jwks.status = 200
    clock.advance(1)
    assert (await verifier.verify(token)).id
    assert jwks.hits == 2


async def test_cached_keys_keep_working_while_the_endpoint_is_down(
    jwks: JwksServer, verifier: TokenVerifier, clock: ManualClock
) -> None:
    key = ed25519_key()
    jwks.publish(key)
    await verifier.verify(key.sign(claims(jwks.base_url)))
    jwks.status = 500
    clock.advance(600)
    assert (await verifier.verify(key.sign(claims(jwks.base_url)))).id
    assert jwks.hits == 2
    # A failed refresh is not retried on every request.
    assert (await verifier.verify(key.sign(claims(jwks.base_url)))).id
    assert jwks.hits == 2


async def test_a_broken_document_keeps_the_cached_keys(
    jwks: JwksServer, verifier: TokenVerifier, clock: ManualClock
) -> None:
    key = ed25519_key()
    jwks.publish(key)
    await verifier.verify(key.sign(claims(jwks.base_url)))
    jwks.document = {"keys": "not a list"}
    clock.advance(301)
    assert (await verifier.verify(key.sign(claims(jwks.base_url)))).id
    assert jwks.hits == 2


@pytest.mark.parametrize(
    ("make_key", "algorithm"),
    [
        (ed25519_key, "EdDSA"),
        (p256_key, "ES256"),
        (rsa_key, "RS256"),
        (rsa_key, "PS256"),
    ],
)
async def test_each_allowed_key_type_and_algorithm_verifies(
    jwks: JwksServer, verifier: TokenVerifier, make_key: Any, algorithm: str
) -> None:
    key = make_key()
    jwks.publish(key)
    token = key.sign(claims(jwks.base_url, "typed-user"), algorithm=algorithm)
    assert (await verifier.verify(token)).id == "typed-user"


@pytest.mark.parametrize(
    ("make_key", "algorithm"),
    [
        (rsa_key, "RS384"),
        (rsa_key, "RS512"),
        (rsa_key, "PS512"),
        (lambda: p256_key(curve=ec.SECP384R1()), "ES384"),
    ],
)
async def test_algorithms_outside_the_allow_list_are_refused(
    jwks: JwksServer, verifier: TokenVerifier, make_key: Any, algorithm: str
) -> None:
    key = make_key()
    jwks.publish(key, ed25519_key())
    token = key.sign(claims(jwks.base_url), algorithm=algorithm)
    assert await reason_of(verifier, token) == "alg_not_allowed"


async def test_a_keys_own_alg_pins_its_algorithm(jwks: JwksServer, verifier: TokenVerifier) -> None:
    pinned = rsa_key(pinned_alg="RS256")
    jwks.publish(pinned)
    assert (await verifier.verify(pinned.sign(claims(jwks.base_url)))).id
    pss = pinned.sign(claims(jwks.base_url), algorithm="PS256")
    assert await reason_of(verifier, pss) == "alg_key_mismatch"


async def test_a_token_whose_alg_does_not_fit_the_named_key_is_refused(
    jwks: JwksServer, verifier: TokenVerifier
) -> None:
    edwards, curve = ed25519_key(), p256_key()
    jwks.publish(edwards, curve)
    # Signed correctly with the P-256 key, but names the Ed25519 key.
    token = curve.sign(claims(jwks.base_url), kid=edwards.kid)
    assert await reason_of(verifier, token) == "alg_key_mismatch"


async def test_a_token_without_kid_is_tried_against_keys_of_its_type(
    jwks: JwksServer, verifier: TokenVerifier
) -> None:
    other_edwards, edwards, curve = ed25519_key(), ed25519_key(), p256_key()
    jwks.publish(other_edwards, curve, edwards)
    token = edwards.sign(claims(jwks.base_url, "no-kid-user"), kid=None)
    assert (await verifier.verify(token)).id == "no-kid-user"
    stranger = ed25519_key().sign(claims(jwks.base_url), kid=None)
    assert await reason_of(verifier, stranger) == "bad_signature"
    rsa_without_kid = rsa_key().sign(claims(jwks.base_url), kid=None)
    assert await reason_of(verifier, rsa_without_kid) == "no_matching_key"


async def test_a_token_signed_by_an_unpublished_key_under_a_published_kid_is_refused(
    jwks: JwksServer, verifier: TokenVerifier
) -> None:
    published = ed25519_key()
    jwks.publish(published)
    impostor = ed25519_key(kid=published.kid)
    assert await reason_of(verifier, impostor.sign(claims(jwks.base_url))) == "bad_signature"


async def test_hs_tokens_are_refused_when_only_jwks_is_configured(jwks: JwksServer) -> None:
    import jwt

    verifier = TokenVerifier(jwks_settings(jwks))
    try:
        token = jwt.encode(claims(jwks.base_url), TEST_SECRET, algorithm="HS256")
        assert await reason_of(verifier, token) == "hmac_not_configured"
        assert jwks.hits == 0
    finally:
        await verifier.aclose()


async def test_asymmetric_tokens_are_refused_when_only_a_secret_is_configured() -> None:
    settings = Settings(
        database_url=SecretStr("postgresql://unused@127.0.0.1:1/unused"),
        better_auth_secret=SecretStr(TEST_SECRET),
    )
    verifier = TokenVerifier(settings)
    token = ed25519_key().sign(claims(None))
    assert await reason_of(verifier, token) == "jwks_not_configured"
    await verifier.aclose()


def test_the_key_set_keeps_only_public_signing_keys_of_allowed_types() -> None:
    import json

    edwards, rsa_pinned = ed25519_key(), rsa_key(pinned_alg="PS256")
    curve384 = p256_key(curve=ec.SECP384R1())
    private_jwk = dict(edwards.jwk, kid="private", d="nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
    document = {
        "keys": [
            edwards.jwk,
            rsa_pinned.jwk,
            curve384.jwk,  # P-384: not on the allow-list
            dict(ed25519_key().jwk, kid="enc", use="enc"),  # not a signing key
            {"kty": "oct", "k": "c2VjcmV0", "kid": "symmetric"},  # a shared secret in a JWKS
            dict(rsa_key().jwk, kid="hs-pinned", alg="HS256"),  # alg not allowed for RSA
            dict(ed25519_key().jwk, kid="none-pinned", alg="none"),
            private_jwk,  # a private key published by mistake
            "not a key",
        ]
    }
    keys = {key.kid: key.algorithms for key in parse_key_set(json.dumps(document).encode())}
    assert keys == {edwards.kid: {"EdDSA"}, rsa_pinned.kid: {"PS256"}}


def test_a_key_set_without_usable_keys_is_rejected() -> None:
    with pytest.raises(ValueError, match="no usable"):
        parse_key_set(b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')
    with pytest.raises(ValueError, match="keys"):
        parse_key_set(b"[]")


async def test_a_remembered_token_outlives_its_withdrawn_key_by_at_most_five_minutes(
    jwks: JwksServer, clock: ManualClock
) -> None:
    wall_clock = ManualClock()
    verifier = TokenVerifier(jwks_settings(jwks), clock=clock, wall_clock=wall_clock)
    old, new = ed25519_key(), ed25519_key()
    jwks.publish(old)
    token = old.sign(claims(jwks.base_url))
    try:
        await verifier.verify(token)
        jwks.publish(new)  # the old key is withdrawn
        clock.advance(301)  # the key set is due for a refresh
        wall_clock.advance(299)
        assert (await verifier.verify(token)).id  # remembered: neither parsed nor fetched
        assert jwks.hits == 1
        wall_clock.advance(2)  # past the cache's five minutes: checked in full
        assert await reason_of(verifier, token) == "unknown_kid"
        assert jwks.hits == 2
    finally:
        await verifier.aclose()
