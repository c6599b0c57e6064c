"""Verifies Bearer tokens and turns them into a `User`.

First cut: shared-secret (HS*) tokens only. JWKS, and every rule of the spec's Tokens section,
come with the authentication work (#3).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import jwt

from todo_api.config import Settings
from todo_api.errors import InvalidToken, TokenExpired
from todo_api.identity import User

MAX_TOKEN_BYTES = 8 * 1024


def token_id(token: str, claims: dict[str, Any]) -> str:
    """How a token is named for revocation: its jti, else the SHA-256 of the whole token."""
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return f"jti:{jti}"
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def verify(self, token: str) -> User:
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise InvalidToken("The token is too large.", reason="oversized")
        secret = self._settings.better_auth_secret
        if secret is None:
            raise InvalidToken("The token cannot be verified.", reason="no_key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                secret.get_secret_value(),
                algorithms=self._settings.jwt_algorithms,
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": ["exp", "sub"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.PyJWTError:
            raise InvalidToken() from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise InvalidToken("The token's subject is not valid.", reason="bad_sub")
        iat = claims.get("iat")
        return User(
            id=sub,
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
            token_id=token_id(token, claims),
            issued_at=datetime.fromtimestamp(iat, UTC) if isinstance(iat, int | float) else None,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )

    async def aclose(self) -> None:
        return None
