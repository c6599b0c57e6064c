"""The caller's own account: who they are, how many tasks they have, revoking their tokens."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from todo_api.api.openapi import AUTHENTICATED_ERRORS, problem_responses
from todo_api.dependencies import AuthenticatedRoute, SettingsDep, Transaction
from todo_api.log import security_event
from todo_api.services import task_service, token_service

router = APIRouter(prefix="/api/users", tags=["users"], route_class=AuthenticatedRoute)


class TaskCounts(BaseModel):
    total: int
    pending: int
    completed: int


class Me(BaseModel):
    id: str
    email: str | None
    name: str | None
    tasks: TaskCounts


@router.get(
    "/me",
    summary="The caller and their task counts",
    operation_id="getMe",
    responses=problem_responses(*AUTHENTICATED_ERRORS),
)
async def read_me(tx: Transaction) -> Me:
    """The caller and their task counts."""
    user = tx.user
    total, pending, completed = await task_service.count_tasks(tx, user.id)
    return Me(
        id=user.id,
        email=user.email,
        name=user.name,
        tasks=TaskCounts(total=total, pending=pending, completed=completed),
    )


@router.delete(
    "/me/token",
    status_code=204,
    response_class=Response,
    summary="Revoke the token sent with this request",
    operation_id="revokeToken",
    responses=problem_responses(*AUTHENTICATED_ERRORS),
)
async def revoke_token(request: Request, tx: Transaction, settings: SettingsDep) -> Response:
    """Revoke the token sent with this request; it is refused (401 `token_revoked`) from now on."""
    user = tx.user
    await token_service.revoke_token(tx, user, leeway_seconds=settings.jwt_leeway_seconds)
    _log_revocation(request, "token_revoked", user.id)
    return Response(status_code=204)


@router.delete(
    "/me/tokens",
    status_code=204,
    response_class=Response,
    summary="Revoke every token of the caller issued so far",
    operation_id="revokeAllTokens",
    responses=problem_responses(*AUTHENTICATED_ERRORS),
)
async def revoke_all_tokens(request: Request, tx: Transaction) -> Response:
    """Revoke every token of the caller issued (`iat`) up to now, and every token without `iat`.

    Tokens issued afterwards (sign in again) work.
    """
    await token_service.revoke_all_tokens(tx, tx.user.id)
    _log_revocation(request, "tokens_revoked_all", tx.user.id)
    return Response(status_code=204)


def _log_revocation(request: Request, event: str, user_id: str) -> None:
    security_event(
        event,
        reason="user_request",
        method=request.method,
        path=request.url.path,
        client=request.client.host if request.client else None,
        user_id=user_id,
        level=logging.INFO,
    )
