"""The request's dependencies, each with one `Annotated` alias (T002, T003)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from time import perf_counter_ns
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from todo_api.config import Settings
from todo_api.db import Database, OneStatementTransaction
from todo_api.errors import AuthenticationError, Forbidden, InvalidToken, MissingToken
from todo_api.identity import User
from todo_api.security import TokenVerifier
from todo_api.security.bearer import BEARER_SECURITY
from todo_api.timing import add_auth_time


# The dependencies are `async def`: FastAPI runs a plain `def` dependency in its thread pool, a hop
# that cost ~80-250 µs of CPU per request in the benchmark (#6).
async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def bearer_token(request: Request) -> str:
    """The credential of the one `Authorization: Bearer` header, or a 401."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise InvalidToken("Send exactly one Authorization header.", reason="multiple_headers")
    if not values:
        raise MissingToken(reason="no_header")
    scheme, _, credential = values[0].strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer":
        raise MissingToken(reason="wrong_scheme")
    if not credential:
        raise MissingToken(reason="empty")
    return credential


async def authenticate(request: Request) -> User:
    """Verify the request's Bearer token (T002), once per request; a 401 otherwise.

    No database work happens for a request that fails here. The caller is kept in the request's
    state (`request.state.user`, `.user_id`), read here through the scope's dict: Starlette's
    `State` object raises and catches AttributeError for a name it lacks, on every request.
    """
    state: dict[str, Any] = request.scope.setdefault("state", {})
    user: User | None = state.get("user")
    if user is not None:
        return user
    verifier: TokenVerifier = request.app.state.verifier
    started = perf_counter_ns()
    try:
        user = await verifier.verify(bearer_token(request))
    except AuthenticationError as error:
        # A valid signature names the user even when a claim failed (an expired token, say).
        if error.user_id is not None:
            state["user_id"] = error.user_id
        raise
    finally:
        add_auth_time(started)
    state["user_id"] = user.id
    state["user"] = user
    return user


def check_path_user(path_user: str | None, user: User) -> None:
    """Hackathon paths (`/api/{user_id}/...`) name the user; only the token's own is allowed."""
    if path_user is not None and path_user != user.id:
        raise Forbidden("The user in the path is not the user of the token.", reason="path_user")


class AuthenticatedRoute(APIRoute):
    """A route that authenticates (401) and checks the path user (403) before anything else.

    FastAPI reads and parses the body before it solves any dependency, so a dependency alone
    would answer a bad body with 422 before a missing token with 401, and read all of a body
    whose sender it is about to refuse. This handler runs first: the spec's order is 401, 403,
    then 422, and the body of a refused request is never read.

    Its OpenAPI operation names the Bearer scheme. A `Security(HTTPBearer)` dependency would
    document it too, but FastAPI solves that dependency (and its scopes) on every request: GET one
    task cost ~120 µs more CPU with it (#8).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.openapi_extra = {"security": BEARER_SECURITY, **(self.openapi_extra or {})}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            check_path_user(request.path_params.get("user_id"), await authenticate(request))
            return await handle(request)

        return authenticated


async def get_current_user(request: Request) -> User:
    """The verified caller (already verified by `AuthenticatedRoute` on the API routes).

    Every failure is our problem+json with its code: the header is parsed by `bearer_token`.
    """
    return await authenticate(request)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_request_transaction(request: Request) -> OneStatementTransaction:
    """The request's one transaction, as `todo_app` with `app.user_id` = the caller (T003).

    It carries the verified caller (`.user`), so a data route needs this one dependency: FastAPI
    solves each dependency's parameters on every request, even when its value is cached (#8).
    """
    database: Database = request.app.state.database
    return database.transaction(await authenticate(request))


Transaction = Annotated[OneStatementTransaction, Depends(get_request_transaction)]
