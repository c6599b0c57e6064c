"""The request's dependencies, each with one `Annotated` alias (T002, T003)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from todo_api.config import Settings
from todo_api.db import Database, RequestTransaction
from todo_api.errors import InvalidToken, MissingToken
from todo_api.identity import User
from todo_api.security import TokenVerifier


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def bearer_token(request: Request) -> str:
    """The credential of the one `Authorization: Bearer` header, or a 401."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise InvalidToken("Send exactly one Authorization header.", reason="multiple_headers")
    if not values:
        raise MissingToken()
    scheme, _, credential = values[0].strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise MissingToken(reason="wrong_scheme" if scheme.lower() != "bearer" else "empty")
    return credential


async def get_current_user(request: Request) -> User:
    """Verify the Bearer token (T002). No database work happens for a request that fails here."""
    verifier: TokenVerifier = request.app.state.verifier
    user = await verifier.verify(bearer_token(request))
    request.state.user_id = user.id
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_request_transaction(request: Request, user: CurrentUser) -> RequestTransaction:
    """The request's one transaction, as `todo_app` with `app.user_id` = the caller (T003)."""
    database: Database = request.app.state.database
    return database.transaction(user)


Conn = Annotated[RequestTransaction, Depends(get_request_transaction)]
