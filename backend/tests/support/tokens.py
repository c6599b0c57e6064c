"""Test users and the shared-secret tokens that authenticate them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from todo_api.security.minting import mint_token

TEST_SECRET = "test-secret-" + "s" * 40


def new_user_id() -> str:
    """A fresh user id shaped like Better Auth's (32 characters)."""
    return uuid.uuid4().hex


def make_token(user_id: str | None = None, **claims: Any) -> str:
    """A valid shared-secret token for `user_id` (a fresh user when omitted)."""
    ttl = claims.pop("ttl_seconds", 3600)
    email = claims.pop("email", None)
    name = claims.pop("name", None)
    return mint_token(
        SecretStr(TEST_SECRET),
        user_id or new_user_id(),
        email=email,
        name=name,
        ttl_seconds=ttl,
        extra=claims,
    )


@dataclass(frozen=True)
class Caller:
    """A test user and the headers that authenticate them."""

    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}
