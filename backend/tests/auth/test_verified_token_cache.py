"""Verified tokens are remembered, but never beyond what a full check would accept."""

from __future__ import annotations

import anyio
import pytest
from fastapi.testclient import TestClient

from tests.support.tokens import make_token, new_user_id
from todo_api.config import Settings
from todo_api.errors import TokenExpired
from todo_api.security import TokenVerifier


@pytest.mark.anyio
async def test_a_remembered_token_is_refused_once_it_expires(settings: Settings) -> None:
    verifier = TokenVerifier(settings.model_copy(update={"jwt_leeway_seconds": 0}))
    user_id = new_user_id()
    token = make_token(user_id, ttl_seconds=1)

    assert (await verifier.verify(token)).id == user_id
    assert (await verifier.verify(token)).id == user_id  # from the cache
    await anyio.sleep(2.1)
    with pytest.raises(TokenExpired):
        await verifier.verify(token)


@pytest.mark.anyio
async def test_the_cache_tells_tokens_apart(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    first, second = new_user_id(), new_user_id()
    first_token, second_token = make_token(first), make_token(second)

    assert (await verifier.verify(first_token)).id == first
    assert (await verifier.verify(second_token)).id == second
    assert (await verifier.verify(first_token)).id == first


def test_a_remembered_token_is_still_refused_after_revocation(client: TestClient) -> None:
    token = make_token(new_user_id())
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/users/me", headers=headers).status_code == 200
    assert client.delete("/api/users/me/token", headers=headers).status_code == 204
    refused = client.get("/api/users/me", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"
