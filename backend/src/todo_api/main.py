"""The application: create_app(), lifespan, routers, global exception handling."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_api import migrations
from todo_api.api import health, openapi, tasks, users
from todo_api.config import Settings, get_settings
from todo_api.db import Database
from todo_api.errors import (
    ApiError,
    AuthenticationError,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    ValidationFailed,
    problem_response,
)
from todo_api.log import (
    app_log,
    configure_logging,
    contains_jwt,
    request_id_var,
    security_event,
    security_log,
)
from todo_api.security import TokenVerifier

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
EXPOSED_HEADERS = ["Link", "Location", "X-Request-ID", "Retry-After"]


class RequestIdMiddleware:
    """Give every request an id (the client's when well-formed) and echo it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = [v for k, v in scope["headers"] if k == b"x-request-id"]
        candidate = supplied[0].decode("latin-1") if len(supplied) == 1 else ""
        # A JWT-shaped id is replaced too: a token must never be echoed or logged.
        well_formed = _REQUEST_ID.match(candidate) and not contains_jwt(candidate)
        request_id = candidate if well_formed else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message["headers"] = [*headers, header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class StripTrailingSlashMiddleware:
    """`/api/tasks/` answers like `/api/tasks`: one trailing slash is dropped before routing.

    Clients never get a 307 redirect (which loses the Authorization header across origins in
    some browsers); the app is built with `redirect_slashes=False`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path[:-1]}
            raw_path = scope.get("raw_path")
            if raw_path and raw_path.endswith(b"/"):
                scope["raw_path"] = raw_path[:-1]
        await self.app(scope, receive, send)


class AllowedOriginsCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, except that an origin outside CORS_ORIGINS gets no CORS header at all.

    Starlette still sends such an origin Allow-Credentials, Expose-Headers and, on preflight,
    Allow-Methods/Headers; only Allow-Origin is withheld. Here the request goes on untouched
    (a preflight then meets the router's 405), with `Vary: Origin` so caches keep them apart.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = Headers(scope=scope).get("origin") if scope["type"] == "http" else None
        if origin is None or self.is_allowed_origin(origin):
            await super().__call__(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
            await send(message)

        await self.app(scope, receive, send_with_vary)


# The docs pages may load only what the app serves. ReDoc would otherwise fetch its logo from a
# CDN; Swagger UI and ReDoc need their inline bootstrap script and styles, and ReDoc a blob worker.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/redoc"})


class DocsContentSecurityPolicyMiddleware:
    """Pin the interactive docs to the app's own origin (no CDN, even by accident)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in DOCS_PATHS:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
            await send(message)

        await self.app(scope, receive, send_with_policy)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", None) or request_id_var.get())


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _api_error(request: Request, exc: Exception) -> Response:
    exc = cast(ApiError, exc)
    if isinstance(exc, AuthenticationError | Forbidden):
        security_event(
            "access_denied" if isinstance(exc, Forbidden) else "authentication_failed",
            reason=exc.reason,
            method=request.method,
            path=request.url.path,
            client=_client(request),
            user_id=getattr(request.state, "user_id", None),
            status=exc.status,
            code=exc.code,
        )
    return problem_response(exc, _request_id(request))


async def _validation_error(request: Request, exc: Exception) -> Response:
    exc = cast(RequestValidationError, exc)
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    first = errors[0] if errors else None
    detail = f"{'.'.join(first['loc'])}: {first['msg']}" if first else "The request is not valid."
    return problem_response(ValidationFailed(detail, errors=errors), _request_id(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    exc = cast(StarletteHTTPException, exc)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound("No such route.")
    elif exc.status_code == 405:
        error = MethodNotAllowed()
    elif 400 <= exc.status_code < 500:
        # FastAPI's own 400 is a body it could not decode (not UTF-8, say): the spec's 422.
        error = ValidationFailed(
            "body: the request body could not be parsed.",
            errors=[{"loc": ["body"], "msg": "could not be parsed"}],
        )
    else:
        error = InternalError()
    response = problem_response(error, _request_id(request))
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


class UnexpectedErrorMiddleware:
    """Turn any unhandled exception into a 500 problem response, inside the CORS layer.

    Starlette's own `Exception` handler runs in ServerErrorMiddleware, outside every user
    middleware, so its 500s would carry neither CORS headers nor X-Request-ID. This middleware
    sits just inside RequestIdMiddleware instead. The traceback goes to the server log only.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request = Request(scope)
            app_log.error(
                "unhandled error",
                exc_info=exc,
                extra={
                    "event": "internal_error",
                    "method": request.method,
                    "path": request.url.path,
                    "request_id": request_id_var.get(),
                },
            )
            if response_started:
                # Too late for a problem response: let the server drop the connection.
                raise
            response = problem_response(InternalError(), request_id_var.get())
            await response(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application. Settings default to the environment."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        verifier = TokenVerifier(settings)
        app.state.settings = settings
        app.state.database = database
        app.state.verifier = verifier
        app.state.migration_ids = [m.id for m in migrations.status_offline()]
        await database.open()
        security_log.info(
            "startup_configuration",
            extra={
                "event": "startup_configuration",
                "reason": "startup",
                "method": None,
                "path": None,
                "client": None,
                "request_id": None,
                "config": settings.masked(),
            },
        )
        try:
            yield
        finally:
            await verifier.aclose()
            await database.close()

    # FastAPIOffline serves Swagger UI and ReDoc from assets shipped in the package (no CDN).
    app = FastAPIOffline(
        title="todo-api",
        version="0.1.0",
        summary="Multi-user todo API. Isolation between users is enforced by PostgreSQL RLS.",
        lifespan=lifespan,
        redirect_slashes=False,
    )
    openapi.install(app)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.include_router(users.router)
    # Innermost first: the last one added wraps all the others.
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(DocsContentSecurityPolicyMiddleware)
    app.add_middleware(StripTrailingSlashMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(
        AllowedOriginsCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    return app


def _secrets_of(settings: Settings) -> list[str]:
    """Values that must never reach a log line: the auth secret and the database password."""
    secrets = [urlsplit(settings.database_url.get_secret_value()).password or ""]
    if settings.better_auth_secret is not None:
        secrets.append(settings.better_auth_secret.get_secret_value())
    return [secret for secret in secrets if secret]


def app_from_env() -> FastAPI:
    """The uvicorn factory used by `todo-api serve` and `todo-api dev`."""
    settings = get_settings()
    configure_logging(settings.log_level, secrets=_secrets_of(settings))
    logging.captureWarnings(True)
    return create_app(settings)
