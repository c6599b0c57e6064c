"""The service's one ASGI layer, `EdgeMiddleware`, in front of FastAPI's own.

For every HTTP request it does, in one pass:
- the request id (`X-Request-ID` on every response, CORS preflights included);
- HEAD served as GET without a body, one trailing slash dropped;
- the request-body limit (413 before the rest of an oversized body is read);
- CORS, with the rules of Starlette's CORSMiddleware (`cors_policy`), except that a refused
  origin gets no CORS header at all and a refused preflight is a problem+json 400;
- the docs' Content-Security-Policy;
- any unhandled exception as a 500 problem response (with the CORS and request-id headers); the
  traceback goes to the server log only;
- `Server-Timing` on every response (todo_api.timing), and, with metrics on, one observation of
  the answered request (todo_api.metrics);
- while the process drains for shutdown, `Connection: close` on every response, and a request
  cancelled at the end of the grace period answered 503 (in doubt).
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_api.errors import CorsRefused, InternalError, ServiceUnavailable, problem_response
from todo_api.log import app_log, request_id_var
from todo_api.shutdown import drain
from todo_api.timing import RequestTiming, timing_var

if TYPE_CHECKING:
    from todo_api.metrics import Metrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# A JWS compact serialization: three dot-separated base64url segments (the signature may be empty).
_JWS_SHAPED = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")

# The docs pages may load only what the app serves. ReDoc would otherwise fetch its logo from a
# CDN; Swagger UI and ReDoc need their inline bootstrap script and styles, and ReDoc a blob worker.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/redoc"})


class RequestBodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the limit; rendered as 413 payload_too_large.

    An HTTPException because FastAPI re-raises those from its body reading (any other error
    there becomes a 400).
    """

    def __init__(self) -> None:
        super().__init__(status_code=413)


def request_id_for(supplied: list[bytes]) -> str:
    """The client's X-Request-ID when it is one well-formed value, else a new id.

    A value shaped like a token is replaced as well: a token must never be echoed or logged.
    A new id is 32 random hex digits (what uuid4().hex looked like, at a third of its cost).
    """
    if len(supplied) == 1:
        candidate = supplied[0].decode("latin-1")
        if _REQUEST_ID.match(candidate) and not _JWS_SHAPED.match(candidate):
            return candidate
    return os.urandom(16).hex()


class EdgeMiddleware:
    """The one ASGI layer of the service; see the module docstring.

    One class and one `send` wrapper instead of a stack of them: every layer costs each request
    a coroutine frame on the way in and a wrapper call per message on the way out (#8).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        cors: CORSMiddleware,
        metrics: Metrics | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.cors = cors
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timing = RequestTiming()
        supplied_ids: list[bytes] = []
        origin: str | None = None
        declared_length = b""
        preflight = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                supplied_ids.append(value)
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1")
            elif name == b"content-length" and not declared_length:
                declared_length = value
            elif name == b"access-control-request-method":
                preflight = scope["method"] == "OPTIONS"
        preflight = preflight and origin is not None
        request_id = request_id_for(supplied_ids)
        scope = _routable(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        method = scope["method"]
        head = method == "HEAD"
        if head:
            scope["method"] = "GET"
        allowed_origin = origin is not None and self.cors.is_allowed_origin(origin)
        response_headers = [(b"x-request-id", request_id.encode())]
        if scope["path"] in DOCS_PATHS:
            response_headers.append(
                (b"content-security-policy", DOCS_CONTENT_SECURITY_POLICY.encode())
            )
        if allowed_origin and not preflight:
            response_headers += self._simple_cors_headers(origin or "")
        # Set, not added: a problem response already names its request id.
        replaced = frozenset(name for name, _ in response_headers)
        context = request_id_var.set(request_id)
        timing_context = timing_var.set(timing)
        started = False
        status = 0  # of the response started and not yet counted
        metrics = self.metrics

        async def send_at_edge(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0] not in replaced]
                headers += response_headers
                headers.append((b"server-timing", timing.header()))
                if drain.active:
                    # Stopping: no request after this one on this connection (uvicorn honours it).
                    headers.append((b"connection", b"close"))
                if not preflight:
                    # Caches must keep apart the answers to different origins (and to none).
                    _vary_on_origin(headers)
                message["headers"] = headers
            elif (head or metrics is not None) and message["type"] == "http.response.body":
                final = not message.get("more_body", False)
                if head:
                    # HEAD is GET without the body; the headers (Content-Length too) stay GET's.
                    if not final:
                        return
                    message = {"type": "http.response.body", "body": b"", "more_body": False}
                if final and metrics is not None:
                    # Counted before the last byte leaves: a scrape never misses an answer.
                    metrics.observe(scope, method, status, timing.elapsed_ns())
                    status = 0
            await send(message)

        try:
            if preflight:
                await self._preflight(scope, allowed_origin)(scope, receive, send_at_edge)
                return
            limited = self._limited(declared_length, receive)
            try:
                await self.app(scope, limited, send_at_edge)
            except asyncio.CancelledError:
                # At the end of the shutdown grace period uvicorn cancels the requests still
                # running and would answer them with a plain-text 500. Their commit may or may
                # not have happened: that is the contract's 503, in doubt.
                if not drain.active or started:
                    raise
                app_log.warning(
                    "request cancelled at the end of the shutdown grace period",
                    extra={"event": "request_cancelled", "request_id": request_id},
                )
                await problem_response(ServiceUnavailable(), request_id)(
                    scope, receive, send_at_edge
                )
            except Exception as exc:
                # Starlette's own `Exception` handler runs outside every user middleware, so its
                # 500s would carry neither CORS headers nor X-Request-ID.
                _log_unexpected(scope, exc)
                if started:
                    raise  # too late for a problem response: let the server drop the connection
                await problem_response(InternalError(), request_id)(scope, receive, send_at_edge)
        finally:
            request_id_var.reset(context)
            timing_var.reset(timing_context)
            if metrics is not None and status:  # started, never finished
                metrics.observe(scope, method, status, timing.elapsed_ns())

    def _simple_cors_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        """Starlette's CORS headers for a simple request from an allowed origin."""
        headers = [
            (name.lower().encode(), value.encode("latin-1"))
            for name, value in self.cors.simple_headers.items()
        ]
        headers.append((b"access-control-allow-origin", origin.encode("latin-1")))
        return headers

    def _preflight(self, scope: Scope, allowed_origin: bool) -> Response:
        """Starlette's preflight answer; a refused one (any origin) is a problem+json 400."""
        if allowed_origin:
            response = self.cors.preflight_response(Headers(scope=scope))
            if response.status_code != 400:
                return response
        response = problem_response(CorsRefused(), request_id_var.get())
        raw = response.raw_headers
        _vary_on_origin(raw)
        response.raw_headers = raw
        return response

    def _limited(self, declared_length: bytes, receive: Receive) -> Receive:
        """`receive`, refusing a body over the limit before reading any more of it.

        Nothing is read until a route asks for the body, and the routes authenticate first, so a
        request refused with 401 or 403 never has its body read at all.
        """
        limit = self.max_body_bytes
        too_long = declared_length.isdigit() and int(declared_length) > limit
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if too_long:
                raise RequestBodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestBodyTooLarge()
            return message

        return receive_within_limit


def cors_policy(settings_origins: list[str], expose_headers: list[str]) -> CORSMiddleware:
    """The CORS rules, as Starlette's CORSMiddleware keeps them (used as a policy, not a layer)."""
    return CORSMiddleware(
        _no_app,
        allow_origins=settings_origins,
        allow_credentials=True,
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "X-Request-ID",
            "Idempotency-Key",
            "If-Match",
            "If-None-Match",
        ],
        expose_headers=expose_headers,
        max_age=600,
    )


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("the CORS policy is not an ASGI layer")


def _routable(scope: Scope) -> Scope:
    """A copy of the scope with one trailing slash dropped: `/api/tasks/` is `/api/tasks`.

    Clients never get a 307 redirect (which loses the Authorization header across origins in
    some browsers); the app is built with `redirect_slashes=False`.
    """
    scope = dict(scope)
    path: str = scope.get("path", "")
    if len(path) > 1 and path.endswith("/"):
        scope["path"] = path[:-1]
        raw_path = scope.get("raw_path")
        if raw_path and raw_path.endswith(b"/"):
            scope["raw_path"] = raw_path[:-1]
    return scope


def _vary_on_origin(headers: list[tuple[bytes, bytes]]) -> None:
    """Add Origin to the response's one Vary header (merging any Vary already there)."""
    vary = [value for name, value in headers if name == b"vary"]
    if vary:
        headers[:] = [(name, value) for name, value in headers if name != b"vary"]
    headers.append((b"vary", b", ".join([*vary, b"Origin"])))


def _log_unexpected(scope: Scope, exc: Exception) -> None:
    app_log.error(
        "unhandled error",
        exc_info=exc,
        extra={
            "event": "internal_error",
            "method": scope["method"],
            "path": scope["path"],
            "request_id": request_id_var.get(),
        },
    )
