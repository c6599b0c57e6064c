"""The application: create_app(), lifespan, routers, global exception handling."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import cast
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.telemetry import TelemetryConfig
from fastapi_offline import FastAPIOffline
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from todo_api import migrations
from todo_api.api import health, openapi, tasks, users
from todo_api.api.routing import add_routes
from todo_api.config import Settings, get_settings
from todo_api.db import Database
from todo_api.errors import (
    ApiError,
    AuthenticationError,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
    problem_response,
)
from todo_api.log import configure_logging, request_id_var, security_event, security_log
from todo_api.metrics import Metrics
from todo_api.middleware import EdgeMiddleware, cors_policy
from todo_api.security import TokenVerifier

EXPOSED_HEADERS = ["Link", "Location", "X-Request-ID", "Retry-After", "ETag", "Server-Timing"]
# FastAPI's own OpenTelemetry instrumentation asks on every request whether a tracer, meter or
# logger provider is configured: three environment look-ups, 4.5 µs of a ~300 µs request (#10).
FASTAPI_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def fastapi_telemetry(environ: Mapping[str, str]) -> TelemetryConfig:
    """FastAPI's OpenTelemetry instrumentation when the process uses OpenTelemetry, else none.

    In use: the environment configures it (any `OTEL_*` variable, or FastAPI's
    `FASTAPI_OTEL_AUTO_CONFIGURE`), or a tracer or meter provider was set before the app was
    built (`opentelemetry-instrument`). Otherwise it would only ever find nothing to report to.
    """
    if any(name.startswith(("OTEL_", "FASTAPI_OTEL_")) for name in environ):
        return {}
    tracer_set = not isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider)
    # The meter API's stand-in until a provider is set has no public name.
    meter_set = type(otel_metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"
    return {} if tracer_set or meter_set else FASTAPI_TELEMETRY_OFF


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", None) or request_id_var.get())


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _api_error(request: Request, exc: Exception) -> Response:
    exc = cast(ApiError, exc)
    metrics: Metrics | None = request.app.state.metrics
    if metrics is not None and isinstance(exc, AuthenticationError):
        metrics.authentication_failed(exc.reason)
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
    elif exc.status_code == 413:
        error = PayloadTooLarge(
            f"The request body is larger than {request.app.state.settings.max_body_bytes} bytes."
        )
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
    """Every method some route serves at this path (Starlette names only the first route's).

    HEAD is answered wherever GET is (middleware.EdgeMiddleware serves it as GET).
    """
    served = {
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    }
    if "GET" in served:
        served.add("HEAD")
    return [method for method in _METHODS if method in served]


def _lifespan(
    settings: Settings, metrics: Metrics | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What the app holds while it serves: the pool, the token verifier, the metrics' watch."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        verifier = TokenVerifier(settings)
        app.state.settings = settings
        app.state.database = database
        app.state.verifier = verifier
        app.state.migrations = migrations.on_disk()
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
        watching = metrics.watching(database) if metrics is not None else nullcontext()
        try:
            async with watching:
                yield
        finally:
            await verifier.aclose()
            await database.close()

    return lifespan


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application. Settings default to the environment."""
    settings = settings or get_settings()
    metrics = Metrics() if settings.metrics_enabled else None
    # FastAPIOffline serves Swagger UI and ReDoc from assets shipped in the package (no CDN).
    app = FastAPIOffline(
        title="todo-api",
        version="0.1.0",
        summary="Multi-user todo API. Isolation between users is enforced by PostgreSQL RLS.",
        lifespan=_lifespan(settings, metrics),
        redirect_slashes=False,
        telemetry=fastapi_telemetry(os.environ),
    )
    app.state.metrics = metrics
    openapi.install(app)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    framework_routes = list(app.router.routes)  # openapi.json and the offline docs
    tasks.include(app)
    add_routes(app, users.router)
    add_routes(app, health.router)
    # Every request is matched against the routes in order: the tasks' first, the probes after
    # the API (two fewer paths tried for every API request), the docs last.
    app.router.routes[:] = [*app.router.routes[len(framework_routes) :], *framework_routes]
    if metrics is not None:
        metrics.install(app)
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=settings.max_body_bytes,
        cors=cors_policy(settings.cors_origins, EXPOSED_HEADERS),
        metrics=metrics,
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
    app = create_app(settings)
    # What start-up built (modules, the app, its routes and models) lives as long as the worker:
    # moved out of the collector's sight, full collections stop walking it again and again while
    # requests run (in-process GET one task: -10 % of instructions, callgrind). Only here, in
    # the served process: tests build many apps in one process and must get them collected.
    gc.freeze()
    return app
