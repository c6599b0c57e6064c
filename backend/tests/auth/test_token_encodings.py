"""Only the canonical JWS compact form is accepted, so a revocation holds for every spelling.

A token without `jti` is revoked by the SHA-256 of its text. PyJWT alone accepts other spellings of
the same signed bytes (`=` padding), and ECDSA lets anyone holding an ES256 token compute a second
valid signature. Each of these once turned a revoked token into a working one.
"""

from __future__ import annotations

import asyncio
import base64
import string
from collections.abc import Iterator
from dataclasses import dataclass

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from tests.support.jwks_server import SigningKey, claims, p256_key, running_app, serve_jwks
from tests.support.tokens import make_token, new_user_id
from todo_api.config import Settings
from todo_api.errors import AuthenticationError
from todo_api.identity import User
from todo_api.security import TokenVerifier
from todo_api.security.verifier import is_canonical

ME = "/api/users/me"
REVOKE = "/api/users/me/token"
_ALPHABET = string.ascii_letters + string.digits + "-_"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def malleated(token: str) -> str:
    """The same ES256 token with its signature (r, s) turned into (r, n - s): valid too."""
    signing_input, _, signature = token.rpartition(".")
    raw = unb64(signature)
    twin_s = P256_ORDER - int.from_bytes(raw[32:], "big")
    return f"{signing_input}.{b64(raw[:32] + twin_s.to_bytes(32, 'big'))}"


def code_of(client: TestClient, token: str) -> str:
    response = client.get(ME, headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith(
        'Bearer realm="todo-api", error="invalid_token", error_description="'
    )
    code: str = response.json()["code"]
    return code


@dataclass(frozen=True)
class Revoked:
    token: str
    user: User


@pytest.fixture(scope="module")
def revoked_tokens(client: TestClient, settings: Settings) -> list[Revoked]:
    """Revoked shared-secret tokens: one without jti (revoked by its hash), one with."""
    revoked = []
    for extra in ({}, {"jti": "j" * 40}):
        token = make_token(new_user_id(), **extra)
        assert client.delete(REVOKE, headers=bearer(token)).status_code == 204
        user = _accepted(settings, token)
        assert isinstance(user, User)
        revoked.append(Revoked(token, user))
    return revoked


@pytest.mark.parametrize("padding", ["=", "==", "==="])
def test_a_revoked_token_without_jti_is_not_accepted_again_with_padding_appended(
    client: TestClient, padding: str
) -> None:
    token = make_token(new_user_id())
    assert client.delete(REVOKE, headers=bearer(token)).status_code == 204

    assert code_of(client, token) == "token_revoked"
    assert code_of(client, token + padding) == "invalid_token"


def test_a_padded_token_is_invalid_even_when_never_revoked(client: TestClient) -> None:
    """HS256 signatures are 43 characters: one `=` makes them a multiple of four, as PyJWT likes."""
    token = make_token(new_user_id())
    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert code_of(client, token + "=") == "invalid_token"
    header, payload, signature = token.split(".")
    padded_header = header + "=" * (-len(header) % 4)
    if padded_header != header:
        assert code_of(client, f"{padded_header}.{payload}.{signature}") == "invalid_token"


def test_a_signature_whose_last_character_carries_extra_bits_is_invalid(
    client: TestClient,
) -> None:
    """Base64 has 2 or 4 unused bits in a last character; setting them spells the same bytes."""
    token = make_token(new_user_id())
    signing_input, _, signature = token.rpartition(".")
    assert len(signature) % 4 == 3
    last = _ALPHABET.index(signature[-1])
    spelled = f"{signing_input}.{signature[:-1]}{_ALPHABET[last | 1]}"
    assert unb64(spelled.rpartition(".")[2]) == unb64(signature)
    assert code_of(client, spelled) == "invalid_token"


def _variants(token: str, data: st.DataObject) -> str:
    """One spelling of `token` that a lax decoder might take as the same token."""
    segments = token.split(".")
    index = data.draw(st.integers(0, len(segments) - 1), label="segment")
    segment = segments[index]
    kind = data.draw(
        st.sampled_from(
            ["unchanged", "pad", "trailing_bits", "insert", "standard_alphabet", "replace"]
        ),
        label="kind",
    )
    if kind == "unchanged":
        pass
    elif kind == "pad":
        segment += "=" * data.draw(st.integers(1, 3))
    elif kind == "trailing_bits" and len(segment) % 4 in (2, 3):
        unused = 4 if len(segment) % 4 == 2 else 2
        value = _ALPHABET.index(segment[-1]) | data.draw(st.integers(1, 2**unused - 1))
        segment = segment[:-1] + _ALPHABET[value]
    elif kind == "insert":
        position = data.draw(st.integers(0, len(segment)))
        stray = data.draw(
            st.one_of(st.sampled_from(list(" \t\n\r=+/.%\x00\u00a0\u200b\ufeff")), st.characters())
        )
        segment = segment[:position] + stray + segment[position:]
    elif kind == "standard_alphabet":
        segment = segment.replace("-", "+").replace("_", "/")
    else:
        position = data.draw(st.integers(0, max(len(segment) - 1, 0)))
        segment = (
            segment[:position] + data.draw(st.sampled_from(_ALPHABET)) + segment[position + 1 :]
        )
    segments[index] = segment
    return ".".join(segments)


def _accepted(settings: Settings, token: str) -> User | str:
    """The User the verifier makes of `token`, or the code it refuses it with."""
    try:
        return asyncio.run(TokenVerifier(settings, cache_entries=0).verify(token))
    except AuthenticationError as error:
        return error.code


@hypothesis.settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_spelling_of_a_revoked_token_that_the_verifier_accepts_is_refused_as_revoked(
    client: TestClient, settings: Settings, revoked_tokens: list[Revoked], data: st.DataObject
) -> None:
    revoked = data.draw(st.sampled_from(revoked_tokens), label="revoked")
    variant = _variants(revoked.token, data)
    accepted = _accepted(settings, variant)
    if isinstance(accepted, User):
        # Accepted only as exactly this token, under a name its revocation recorded.
        assert variant == revoked.token
        assert accepted.token_id in revoked.user.revocation_ids
    else:
        assert variant != revoked.token
        assert accepted == "invalid_token"
    # The request a client sends: refused either way, and never a 200 or a 5xx.
    if variant.isascii() and variant.isprintable():
        expected = "token_revoked" if variant.strip() == revoked.token else "invalid_token"
        assert code_of(client, variant) == expected


@given(st.text(st.sampled_from(_ALPHABET + "=+/. \t"), max_size=60))
@hypothesis.settings(max_examples=300, deadline=None)
def test_canonical_means_three_segments_each_the_unpadded_encoding_of_its_bytes(
    text: str,
) -> None:
    segments = text.split(".")
    expected = len(segments) == 3 and all(
        len(segment) % 4 != 1 and set(segment) <= set(_ALPHABET) and b64(unb64(segment)) == segment
        for segment in segments
    )
    assert is_canonical(text) == expected


# --- ES256: the second valid signature --------------------------------------------------------


@pytest.fixture(scope="module")
def es256_app(settings: Settings) -> Iterator[tuple[TestClient, str, SigningKey]]:
    with serve_jwks() as server:
        key = p256_key()
        server.publish(key)
        jwks_settings = settings.model_copy(update={"better_auth_url": server.base_url})
        with running_app(jwks_settings) as client:
            yield client, server.base_url, key


@pytest.mark.parametrize("revoke_twin", [False, True], ids=["original", "twin"])
def test_revoking_an_es256_token_also_refuses_its_malleated_signature(
    es256_app: tuple[TestClient, str, SigningKey], revoke_twin: bool
) -> None:
    client, issuer, key = es256_app
    token = key.sign(claims(issuer, new_user_id()))
    twin = malleated(token)
    assert twin != token
    assert is_canonical(twin)
    # Both verify: without the fix the twin is a working copy of a revoked token.
    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert client.get(ME, headers=bearer(twin)).status_code == 200

    revoked = twin if revoke_twin else token
    assert client.delete(REVOKE, headers=bearer(revoked)).status_code == 204

    assert code_of(client, token) == "token_revoked"
    assert code_of(client, twin) == "token_revoked"


def test_an_es256_token_with_jti_is_revoked_by_its_jti_whatever_its_signature(
    es256_app: tuple[TestClient, str, SigningKey],
) -> None:
    client, issuer, key = es256_app
    token = key.sign(claims(issuer, new_user_id(), jti="es256-with-jti"))
    assert client.delete(REVOKE, headers=bearer(token)).status_code == 204
    assert code_of(client, malleated(token)) == "token_revoked"


@hypothesis.settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), malleate_first=st.booleans())
def test_no_spelling_of_a_revoked_es256_token_gets_through(
    es256_token: tuple[TestClient, str], data: st.DataObject, malleate_first: bool
) -> None:
    """The twin is the one other spelling that verifies; every other one is not the token."""
    client, token = es256_token
    twin = malleated(token)
    variant = _variants(twin if malleate_first else token, data)
    if not (variant.isascii() and variant.isprintable()):
        return
    expected = "token_revoked" if variant.strip() in (token, twin) else "invalid_token"
    assert code_of(client, variant) == expected


@pytest.fixture(scope="module")
def es256_token(es256_app: tuple[TestClient, str, SigningKey]) -> tuple[TestClient, str]:
    client, issuer, key = es256_app
    token = key.sign(claims(issuer, new_user_id()))
    assert client.delete(REVOKE, headers=bearer(token)).status_code == 204
    return client, token
