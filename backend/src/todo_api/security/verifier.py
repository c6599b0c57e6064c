"""Verifies Bearer tokens and turns them into a `User` (the spec's Tokens section).

Two modes, either or both configured: HS* tokens are checked with the shared secret
(`BETTER_AUTH_SECRET`, algorithms from `JWT_ALGORITHMS`); EdDSA, ES256, RS256 and PS256 tokens
with the keys Better Auth publishes (JWKS). The token's `alg` only chooses between the two; the
key then decides which algorithms it accepts, so `none`, an HS token against a public key, or any
algorithm not allowed for the key is refused.

Verification runs in two steps so that the security log can name the user of a token whose
signature was valid but whose claims were not (an expired token, say): PyJWS checks the signature,
then PyJWT checks the claims of that same, already verified token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import jwt
from jwt.types import Options

from todo_api.config import HMAC_ALGORITHMS, Settings
from todo_api.errors import AuthenticationError, InvalidToken, TokenExpired
from todo_api.identity import User
from todo_api.security.jwks import ASYMMETRIC_ALGORITHMS, REFRESH_SECONDS, JwksCache, PublishedKey
from todo_api.security.token_cache import VerifiedTokenCache

MAX_TOKEN_BYTES = 8 * 1024
MAX_SUBJECT_LENGTH = 255
# Verified tokens are remembered (by SHA-256, see token_cache.py). An entry lives until the token
# expires (with leeway) and at most as long as a published key set is trusted without a refetch,
# so it never outlives what a full check would accept. Revocation is not cached: every request
# checks it in its database transaction.
VERIFIED_CACHE_ENTRIES = 10_000
VERIFIED_CACHE_SECONDS = REFRESH_SECONDS

_LATEST = datetime.max.replace(tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# The order of P-256, for the second valid ECDSA signature (r, n - s) of every ES256 token.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def is_canonical(token: str) -> bool:
    """Three segments of base64url without padding, each the one encoding of its bytes.

    Revocation without a jti names the token by its SHA-256, so the verifier must accept exactly
    one spelling of each token: PyJWT alone also takes `=` padding.
    """
    segments = token.split(".")
    return len(segments) == 3 and all(_is_canonical_segment(segment) for segment in segments)


def _is_canonical_segment(segment: str) -> bool:
    if len(segment) % 4 == 1 or not _BASE64URL.fullmatch(segment):
        return False
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    # Rejects a last character whose unused low bits are set: it decodes to the same bytes.
    return base64.urlsafe_b64encode(decoded).rstrip(b"=") == segment.encode()


def _canonical(token: str) -> str:
    """The token, if canonical (`is_canonical`); an InvalidToken otherwise."""
    if not is_canonical(token):
        _fail(
            InvalidToken(
                "The token is not three unpadded base64url segments.", reason="not_canonical"
            )
        )
    return token


def token_id(token: str, claims: dict[str, Any]) -> str:
    """How a token is named for revocation: a digest of its jti, else of the whole token.

    A digest, not the jti itself, so a jti of any length or content fits the fixed-size column
    (sql/0005). `surrogatepass` keeps a jti with a lone surrogate revocable instead of refusing
    it: the jti is an opaque name that is never stored or shown, only hashed.
    """
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return "jti-sha256:" + hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()
    return _token_digest(token)


def _token_digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def revocation_ids(token: str, claims: dict[str, Any], algorithm: str) -> tuple[str, ...]:
    """Every name under which this same signed token can be presented; revoking stores each.

    ECDSA signatures are malleable: whoever holds an ES256 token can turn (r, s) into (r, n - s),
    which verifies too, without the key. Without a jti that twin would hash differently and get
    past the revocation, so both spellings are revoked together.
    """
    own = token_id(token, claims)
    if not own.startswith("sha256:") or algorithm != "ES256":
        return (own,)
    signing_input, _, signature_segment = token.rpartition(".")
    signature = base64.urlsafe_b64decode(signature_segment + "=" * (-len(signature_segment) % 4))
    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    twin = r + (_P256_ORDER - s).to_bytes(32, "big")
    twin_segment = base64.urlsafe_b64encode(twin).rstrip(b"=").decode()
    return (own, _token_digest(f"{signing_input}.{twin_segment}"))


def _holds_in_postgres_text(value: str) -> bool:
    """PostgreSQL text cannot hold NUL, and UTF-8 (hence Postgres) cannot hold lone surrogates."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _instant(seconds: float) -> datetime:
    """A NumericDate as a UTC datetime; absurd values are clamped instead of overflowing."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return _LATEST if seconds > 0 else _EARLIEST


def _is_numeric_date(value: object) -> bool:
    if isinstance(value, bool):
        return False
    # An int from JSON can have hundreds of digits; math.isfinite would overflow converting it.
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _valid_subject(claims: dict[str, Any]) -> str | None:
    sub = claims.get("sub")
    if (
        isinstance(sub, str)
        and sub
        and len(sub) <= MAX_SUBJECT_LENGTH
        and _holds_in_postgres_text(sub)
    ):
        return sub
    return None


def _display_claim(claims: dict[str, Any], name: str) -> str | None:
    """`email` or `name`, dropped (None) when PostgreSQL text cannot hold it.

    They only describe the user, who is named by `sub`; refusing a correctly signed token over a
    display claim would lock the user out for something the issuer wrote, so the value is ignored.
    Kept, a lone surrogate could not even be written as the UTF-8 of a response (it was a 500).
    """
    value = claims.get(name)
    if isinstance(value, str) and _holds_in_postgres_text(value):
        return value
    return None


def _fail(error: AuthenticationError, user_id: str | None = None) -> NoReturn:
    error.user_id = user_id
    raise error


class TokenVerifier:
    """One per process (the lifespan builds it); `verify` is safe to call concurrently.

    `clock` (monotonic) drives the JWKS cache, `wall_clock` the verified-token cache, whose
    deadlines are token expiry times; `cache_entries=0` turns the latter off.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        cache_entries: int = VERIFIED_CACHE_ENTRIES,
    ) -> None:
        self._settings = settings
        self._verified: VerifiedTokenCache[User] | None = (
            VerifiedTokenCache(
                cache_entries, max_age_seconds=VERIFIED_CACHE_SECONDS, clock=wall_clock
            )
            if cache_entries > 0
            else None
        )
        secret = settings.better_auth_secret
        self._secret = secret.get_secret_value().encode() if secret is not None else None
        self._hmac_algorithms = frozenset(settings.jwt_algorithms) & set(HMAC_ALGORITHMS)
        jwks_url = settings.jwks_url
        self._jwks = JwksCache(jwks_url, clock=clock) if jwks_url else None
        # "none" and every algorithm not listed here are refused by PyJWS itself as well.
        self._jws = jwt.PyJWS(algorithms=sorted(self._hmac_algorithms | ASYMMETRIC_ALGORITHMS))
        self._claims = jwt.PyJWT()

    async def verify(self, token: str) -> User:
        """The caller named by a valid token; an AuthenticationError (401) otherwise."""
        # A caller other than the HTTP layer may pass lone surrogates; they are not canonical.
        raw = token.encode("utf-8", "surrogatepass")
        # Checked before anything parses the token.
        if len(raw) > MAX_TOKEN_BYTES:
            _fail(InvalidToken("The token is larger than 8 KiB.", reason="oversized"))
        if self._verified is None:
            return await self._verify_uncached(_canonical(token))
        # Remembered by its exact bytes, so a token found here was canonical when it was verified.
        digest = hashlib.sha256(raw).digest()
        cached = self._verified.get(digest)
        if cached is not None:
            return cached
        user = await self._verify_uncached(_canonical(token))
        expiry = user.expires_at.timestamp() + self._settings.jwt_leeway_seconds
        self._verified.put(digest, user, expiry)
        return user

    async def _verify_uncached(self, token: str) -> User:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            _fail(InvalidToken("The token is not a well-formed JWT.", reason="malformed"))
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):
            _fail(InvalidToken("The token does not name its algorithm.", reason="malformed"))
        if algorithm in HMAC_ALGORITHMS:
            payload = self._verify_with_secret(token, algorithm)
            issuer, audience = self._settings.jwt_issuer, self._settings.jwt_audience
        elif algorithm in ASYMMETRIC_ALGORITHMS:
            payload = await self._verify_with_published_key(token, algorithm, header.get("kid"))
            # Better Auth sets iss = aud = its base URL; shared-secret tokens usually carry neither.
            fallback = self._settings.better_auth_url
            issuer = self._settings.jwt_issuer or fallback
            audience = self._settings.jwt_audience or fallback
        else:
            _fail(
                InvalidToken(
                    "The token's signing algorithm is not accepted.",
                    reason="alg_none" if algorithm.lower() == "none" else "alg_not_allowed",
                )
            )
        return self._user_from(token, payload, algorithm, issuer=issuer, audience=audience)

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()

    def _verify_with_secret(self, token: str, algorithm: str) -> bytes:
        if self._secret is None:
            _fail(
                InvalidToken(
                    "Shared-secret tokens are not accepted by this service.",
                    reason="hmac_not_configured",
                )
            )
        if algorithm not in self._hmac_algorithms:
            _fail(
                InvalidToken(
                    "The token's signing algorithm is not accepted.", reason="alg_not_allowed"
                )
            )
        return self._verified_payload(token, self._secret, algorithm)

    async def _verify_with_published_key(self, token: str, algorithm: str, kid: object) -> bytes:
        if self._jwks is None:
            _fail(
                InvalidToken(
                    "Tokens signed with published keys are not accepted by this service.",
                    reason="jwks_not_configured",
                )
            )
        if isinstance(kid, str):
            key = await self._jwks.key_with_id(kid)
            if key is None:
                _fail(InvalidToken("The token's signing key is not known.", reason="unknown_kid"))
            if algorithm not in key.algorithms:
                _fail(
                    InvalidToken(
                        "The token's algorithm does not match its signing key.",
                        reason="alg_key_mismatch",
                    )
                )
            return self._verified_payload(token, key.jwk.key, algorithm)
        return self._try_keys_of_type(token, algorithm, await self._jwks.keys())

    def _try_keys_of_type(self, token: str, algorithm: str, keys: Sequence[PublishedKey]) -> bytes:
        """A token without `kid`: the first key of a fitting type that verifies it."""
        candidates = [key for key in keys if algorithm in key.algorithms]
        if not candidates:
            _fail(InvalidToken("No signing key fits the token.", reason="no_matching_key"))
        for key in candidates[:-1]:
            try:
                return self._verified_payload(token, key.jwk.key, algorithm)
            except AuthenticationError:
                continue
        return self._verified_payload(token, candidates[-1].jwk.key, algorithm)

    def _verified_payload(self, token: str, key: Any, algorithm: str) -> bytes:
        try:
            signed = self._jws.decode_complete(token, key, algorithms=[algorithm])
        except jwt.InvalidSignatureError:
            _fail(InvalidToken("The token's signature is not valid.", reason="bad_signature"))
        except jwt.PyJWTError:
            _fail(InvalidToken("The token is not a well-formed JWT.", reason="malformed"))
        payload: bytes = signed["payload"]
        return payload

    def _user_from(
        self,
        token: str,
        payload: bytes,
        algorithm: str,
        *,
        issuer: str | None,
        audience: str | None,
    ) -> User:
        """The claims of a token whose signature is valid, checked as the spec says."""
        try:
            claims = json.loads(payload)
        except (ValueError, RecursionError):
            claims = None
        if not isinstance(claims, dict):
            _fail(InvalidToken("The token's claims are not a JSON object.", reason="malformed"))
        subject = _valid_subject(claims)
        self._check_claim_types(claims, subject)
        self._check_claims(token, subject, issuer=issuer, audience=audience)
        if subject is None:
            reason = "missing_sub" if claims.get("sub") is None else "bad_sub"
            _fail(InvalidToken("The token's subject is not a valid user id.", reason=reason))
        iat = claims.get("iat")
        names = revocation_ids(token, claims, algorithm)
        return User(
            id=subject,
            email=_display_claim(claims, "email"),
            name=_display_claim(claims, "name"),
            token_id=names[0],
            revocation_ids=names,
            issued_at=_instant(iat) if iat is not None else None,
            expires_at=_instant(claims["exp"]),
        )

    @staticmethod
    def _check_claim_types(claims: dict[str, Any], subject: str | None) -> None:
        # PyJWT accepts numeric strings (int("123")) and booleans for these; the spec does not.
        if claims.get("exp") is None:
            _fail(InvalidToken("The token has no expiry time.", reason="missing_exp"), subject)
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_numeric_date(claims[name]):
                _fail(
                    InvalidToken(
                        f"The token's {name} claim is not a number.", reason=f"bad_{name}"
                    ),
                    subject,
                )
        # RFC 7519: a jti is a string. PyJWT refuses any other type too; the check is ours so
        # the reason is precise and does not depend on PyJWT's option.
        if "jti" in claims and not isinstance(claims["jti"], str):
            _fail(InvalidToken("The token's jti claim is not a string.", reason="bad_jti"), subject)

    def _check_claims(
        self, token: str, subject: str | None, *, issuer: str | None, audience: str | None
    ) -> None:
        options: Options = {
            # The signature of this very token was verified by `_verified_payload` just before;
            # this call checks only its claims, with PyJWT's own rules.
            "verify_signature": False,
            "verify_exp": True,
            "verify_nbf": True,
            "verify_iat": True,
            "verify_iss": issuer is not None,
            "verify_aud": audience is not None,
            "verify_sub": False,  # checked by `_user_from`, with the spec's own rule
            "verify_jti": True,
        }
        try:
            self._claims.decode(
                token,
                options=options,
                issuer=issuer,
                audience=audience,
                leeway=self._settings.jwt_leeway_seconds,
            )
        except jwt.ExpiredSignatureError:
            _fail(TokenExpired("The token has expired.", reason="expired"), subject)
        except jwt.ImmatureSignatureError:
            _fail(
                InvalidToken(
                    "The token is not valid yet (its nbf or iat is in the future).",
                    reason="not_yet_valid",
                ),
                subject,
            )
        except jwt.MissingRequiredClaimError as exc:
            _fail(
                InvalidToken(f"The token has no {exc.claim} claim.", reason=f"missing_{exc.claim}"),
                subject,
            )
        except jwt.InvalidIssuerError:
            _fail(InvalidToken("The token's issuer is not accepted.", reason="bad_iss"), subject)
        except jwt.InvalidAudienceError:
            _fail(InvalidToken("The token's audience is not accepted.", reason="bad_aud"), subject)
        except jwt.PyJWTError:
            _fail(InvalidToken("The token's claims are not valid.", reason="bad_claims"), subject)
