"""Development tokens signed with the configured shared secret (`todo-api token`, tests)."""

from __future__ import annotations

import time
from typing import Any

import jwt
from pydantic import SecretStr


def mint_token(
    secret: SecretStr,
    user_id: str,
    *,
    email: str | None = None,
    name: str | None = None,
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
    extra: dict[str, Any] | None = None,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if email is not None:
        claims["email"] = email
    if name is not None:
        claims["name"] = name
    claims.update(extra or {})
    return jwt.encode(claims, secret.get_secret_value(), algorithm=algorithm)
