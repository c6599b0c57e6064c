"""The application: create_app(), lifespan, routers, global exception handling."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_api import migrations
from todo_api.api import health, tasks, users
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
from todo_api.log import app_log, configure_logging, request_id_var, security_event
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
        request_id = candidate if _REQUEST_ID.match(candidate) else uuid.uuid4().hex
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
    else:
        error = InternalError()
    response = problem_response(error, _request_id(request))
    if exc.status_code == 405 and exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    app_log.error(
        "unhandled error",
        exc_info=exc,
        extra={"event": "internal_error", "method": request.method, "path": request.url.path},
    )
    return problem_response(InternalError(), _request_id(request))


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
        app_log.info("configuration", extra={"event": "startup", "config": settings.masked()})
        try:
            yield
        finally:
            await verifier.aclose()
            await database.close()

    app = FastAPI(
        title="todo-api",
        version="0.1.0",
        summary="Multi-user todo API. Isolation between users is enforced by PostgreSQL RLS.",
        lifespan=lifespan,
    )
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.include_router(users.router)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory used by `todo-api serve` and `todo-api dev`."""
    settings = get_settings()
    configure_logging(settings.log_level)
    logging.captureWarnings(True)
    return create_app(settings)
