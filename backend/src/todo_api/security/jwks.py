"""The authentication server's published signing keys (JWKS): fetched, cached, refreshed.

One `JwksCache` per process. The set is fetched on first use, refreshed when older than five
minutes, and refetched early when a token names a `kid` the cache does not hold, but the endpoint
is asked at most once per ten seconds for that (a flood of made-up `kid`s cannot turn into a flood
of fetches). Concurrent requests share one fetch. When a fetch fails, the keys already cached keep
working; only when none were ever fetched is the service unavailable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK, PyJWTError

from todo_api.errors import ServiceUnavailable

log = logging.getLogger(__name__)

# The asymmetric algorithms a key of each type may verify; anything else is never accepted.
EDDSA_ALGORITHMS = frozenset({"EdDSA"})
P256_ALGORITHMS = frozenset({"ES256"})
RSA_ALGORITHMS = frozenset({"RS256", "PS256"})
ASYMMETRIC_ALGORITHMS = EDDSA_ALGORITHMS | P256_ALGORITHMS | RSA_ALGORITHMS

REFRESH_SECONDS = 300.0
UNKNOWN_KID_REFETCH_SECONDS = 10.0
# With nothing cached every request would wait on a down endpoint; ask it at most once a second.
COLD_RETRY_SECONDS = 1.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """One usable public key and the algorithms it may verify."""

    kid: str | None
    jwk: PyJWK
    algorithms: frozenset[str]


def _algorithms_for_key_type(key: object) -> frozenset[str]:
    if isinstance(key, Ed25519PublicKey):
        return EDDSA_ALGORITHMS
    if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        return P256_ALGORITHMS
    if isinstance(key, RSAPublicKey):
        return RSA_ALGORITHMS
    # Private keys, symmetric (`oct`) keys and other curves are never used.
    return frozenset()


def published_key(data: dict[str, Any]) -> PublishedKey | None:
    """A JWK from the set as a usable verification key, or None when it must be ignored."""
    pinned = data.get("alg")
    if data.get("use", "sig") != "sig" or (
        pinned is not None and pinned not in ASYMMETRIC_ALGORITHMS
    ):
        return None
    try:
        jwk = PyJWK(data)
    except (PyJWTError, ValueError, TypeError, KeyError):
        return None
    algorithms = _algorithms_for_key_type(jwk.key)
    if pinned is not None:
        # A key's own `alg` pins it to that one algorithm.
        algorithms = algorithms & {pinned}
    if not algorithms:
        return None
    kid = data.get("kid")
    return PublishedKey(kid if isinstance(kid, str) else None, jwk, algorithms)


def parse_key_set(document: bytes) -> tuple[PublishedKey, ...]:
    """The usable keys of a JWKS document; ValueError when it holds none."""
    parsed = json.loads(document)
    members = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(members, list):
        raise ValueError("the document has no `keys` list")
    keys = tuple(key for key in (published_key(m) for m in members if isinstance(m, dict)) if key)
    if not keys:
        raise ValueError("the key set holds no usable signing key")
    return keys


class JwksCache:
    """The key set behind `url`, shared by every request of the process."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._clock = clock
        self._keys: tuple[PublishedKey, ...] | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    async def keys(self) -> Sequence[PublishedKey]:
        """The current keys, fetched or refreshed as needed; 503 when none can be had."""
        # With nothing cached, wait for a fetch that may be under way rather than fail at once.
        if self._keys is None or self._needs_refresh():
            await self._fetch_if(self._needs_refresh)
        if self._keys is None:
            raise ServiceUnavailable(
                "The authentication server's signing keys cannot be fetched right now."
            )
        return self._keys

    async def key_with_id(self, kid: str) -> PublishedKey | None:
        """The key named `kid`, refetching the set (rate-limited) when it is not cached."""
        found = _find(await self.keys(), kid)
        if found is None:

            def still_unknown() -> bool:
                return _find(self._keys or (), kid) is None and self._may_ask(
                    UNKNOWN_KID_REFETCH_SECONDS
                )

            await self._fetch_if(still_unknown)
            found = _find(self._keys or (), kid)
        return found

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _needs_refresh(self) -> bool:
        if self._keys is None:
            return self._may_ask(COLD_RETRY_SECONDS)
        stale = self._clock() - self._fetched_at >= REFRESH_SECONDS
        return stale and self._may_ask(UNKNOWN_KID_REFETCH_SECONDS)

    def _may_ask(self, interval: float) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= interval

    async def _fetch_if(self, wanted: Callable[[], bool]) -> None:
        async with self._lock:
            # Whoever held the lock before may have fetched already: then this request reuses it.
            if not wanted():
                return
            self._attempted_at = self._clock()
            try:
                keys = parse_key_set(await self._download())
            except (httpx.HTTPError, ValueError, RecursionError) as exc:
                log.warning(
                    "jwks fetch failed",
                    extra={
                        "event": "jwks_fetch_failed",
                        "jwks_url": self.url,
                        "error": type(exc).__name__,
                        "cached_keys": len(self._keys or ()),
                    },
                )
                return
            self._keys = keys
            self._fetched_at = self._clock()
            log.info(
                "jwks fetched",
                extra={"event": "jwks_fetched", "jwks_url": self.url, "keys": len(keys)},
            )

    async def _download(self) -> bytes:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=FETCH_TIMEOUT_SECONDS,
                follow_redirects=True,
                headers={"Accept": "application/json"},
            )
        async with self._client.stream("GET", self.url) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("the JWKS document is larger than 1 MiB")
            return bytes(body)


def _find(keys: Sequence[PublishedKey], kid: str) -> PublishedKey | None:
    return next((key for key in keys if key.kid == kid), None)
