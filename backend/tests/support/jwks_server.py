"""A real JWKS endpoint on 127.0.0.1 publishing keys generated here, and tokens signed with them.

Tests change what it publishes (`publish`), make it fail (`status`), slow it down (`delay`) and
count how often it was asked (`hits`), the way a Better Auth server would behave.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.support.network import free_port
from tests.support.tokens import new_user_id
from todo_api.config import Settings
from todo_api.main import create_app
from todo_api.security import TokenVerifier

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A private key the test signs with, and the public JWK the server publishes for it."""

    kid: str
    private: PrivateKey
    algorithm: str
    jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any], *, algorithm: str | None = None, **headers: Any) -> str:
        header = {name: value for name, value in {"kid": self.kid, **headers}.items() if value}
        return jwt.encode(
            claims, self.private, algorithm=algorithm or self.algorithm, headers=header
        )


def _public_jwk(private: PrivateKey, kid: str, pinned_alg: str | None) -> dict[str, Any]:
    jwk: dict[str, Any]
    if isinstance(private, ed25519.Ed25519PrivateKey):
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk["kid"] = kid
    if pinned_alg is not None:
        jwk["alg"] = pinned_alg
    return jwk


def ed25519_key(kid: str | None = None, *, pinned_alg: str | None = None) -> SigningKey:
    """What Better Auth's JWT plugin uses by default (its JWKS carries no `alg`)."""
    private = ed25519.Ed25519PrivateKey.generate()
    kid = kid or str(uuid.uuid4())
    return SigningKey(kid, private, "EdDSA", _public_jwk(private, kid, pinned_alg))


def p256_key(kid: str | None = None, *, curve: ec.EllipticCurve | None = None) -> SigningKey:
    private = ec.generate_private_key(curve or ec.SECP256R1())
    kid = kid or str(uuid.uuid4())
    algorithm = "ES256" if curve is None else "ES384"
    return SigningKey(kid, private, algorithm, _public_jwk(private, kid, None))


@cache
def _rsa_private() -> rsa.RSAPrivateKey:
    # Generating RSA keys is slow; one per test session is enough (kids differ per use).
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_key(
    kid: str | None = None, *, pinned_alg: str | None = None, algorithm: str = "RS256"
) -> SigningKey:
    private = _rsa_private()
    kid = kid or str(uuid.uuid4())
    return SigningKey(kid, private, algorithm, _public_jwk(private, kid, pinned_alg))


def claims(
    issuer: str | None,
    user_id: str | None = None,
    *,
    ttl: int = 900,
    **extra: Any,
) -> dict[str, Any]:
    """Claims shaped like Better Auth's: iss = aud = its URL, 15 minutes, no jti."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": user_id or new_user_id(), "iat": now, "exp": now + ttl}
    if issuer is not None:
        body["iss"] = issuer
        body["aud"] = issuer
    body.update(extra)
    return body


@dataclass
class JwksServer:
    """What the endpoint answers; changed by tests while it runs."""

    url: str = ""
    status: int = 200
    delay_seconds: float = 0.0
    document: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    hits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        """What BETTER_AUTH_URL would be (the JWKS lives at /api/auth/jwks below it)."""
        return self.url.removesuffix("/api/auth/jwks")

    def publish(self, *keys: SigningKey, extra: list[dict[str, Any]] | None = None) -> None:
        self.document = {"keys": [key.jwk for key in keys] + (extra or [])}

    def reset(self) -> None:
        self.status, self.delay_seconds, self.hits = 200, 0.0, 0
        self.document = {"keys": []}

    def answer(self) -> tuple[int, bytes]:
        with self._lock:
            self.hits += 1
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        return self.status, json.dumps(self.document).encode()


@contextmanager
def serve_jwks() -> Iterator[JwksServer]:
    """A JWKS endpoint at http://127.0.0.1:<free port>/api/auth/jwks, for the block's duration."""
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = state.answer()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="jwks-server", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api/auth/jwks"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class ManualClock:
    """A monotonic clock the test moves forward, for the cache's 10-second and 5-minute rules."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port_url() -> str:
    """A loopback URL where nothing listens (connection refused at once)."""
    return f"http://127.0.0.1:{free_port()}/api/auth/jwks"


@contextmanager
def running_app(settings: Settings, clock: ManualClock | None = None) -> Iterator[TestClient]:
    """The real app for `settings`, lifespan included; `clock` drives its JWKS cache."""
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        if clock is not None:
            # The lifespan's verifier has not been used yet; this one keeps time by `clock`.
            app.state.verifier = TokenVerifier(settings, clock=clock)
        try:
            yield client
        finally:
            assert client.portal is not None
            client.portal.call(app.state.verifier.aclose)
