"""The ASGI layers around the routes, outermost first: the edge, CORS, unexpected errors.

- `EdgeMiddleware` (outermost, so every response carries `X-Request-ID`, CORS preflights
  included): the request id, HEAD served as GET without a body, one trailing slash dropped, the
  request-body limit, the docs' Content-Security-Policy, and `Connection: close` once the
  process drains for shutdown.
- `AllowedOriginsCORSMiddleware`: Starlette's CORS, with refused preflights as problem+json.
- `UnexpectedErrorMiddleware` (innermost, so its 500s keep the CORS headers): any unhandled
  exception becomes a 500 problem response; the traceback goes to the server log only. A request
  cancelled at the end of the shutdown grace period is answered 503 (in doubt).
"""

from __future__ import annotations

import asyncio
import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_api.errors import CorsRefused, InternalError, ServiceUnavailable, problem_response
from todo_api.log import app_log, request_id_var
from todo_api.shutdown import drain

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
    """
    if len(supplied) == 1:
        candidate = supplied[0].decode("latin-1")
        if _REQUEST_ID.match(candidate) and not _JWS_SHAPED.match(candidate):
            return candidate
    return uuid.uuid4().hex


class EdgeMiddleware:
    """What every HTTP request goes through first; see the module docstring."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_for([v for k, v in scope["headers"] if k == b"x-request-id"])
        scope = _routable(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        head = scope["method"] == "HEAD"
        if head:
            scope["method"] = "GET"
        docs = scope["path"] in DOCS_PATHS
        context = request_id_var.set(request_id)

        async def send_at_edge(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                if drain.active:
                    # Stopping: no request after this one on this connection (uvicorn honours it).
                    headers["Connection"] = "close"
                if docs:
                    headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
            elif head and message["type"] == "http.response.body":
                # HEAD is GET without the body; the headers (Content-Length too) stay GET's.
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(scope, self._limited(scope, receive), send_at_edge)
        finally:
            request_id_var.reset(context)

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        """`receive`, refusing a body over the limit before reading any more of it.

        Nothing is read until a route asks for the body, and the routes authenticate first, so a
        request refused with 401 or 403 never has its body read at all.
        """
        limit = self.max_body_bytes
        declared = Headers(scope=scope).get("content-length", "")
        too_long = declared.isascii() and declared.isdigit() and int(declared) > limit
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


class AllowedOriginsCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, except that a refused origin gets no CORS header at all.

    Starlette still sends such an origin Allow-Credentials, Expose-Headers and, on preflight,
    Allow-Methods/Headers; only Allow-Origin is withheld. Here a simple request from it goes on
    untouched, a preflight from it is refused like any other refused preflight (problem+json
    400), and both carry `Vary: Origin` so caches keep them apart.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = Headers(scope=scope).get("origin") if scope["type"] == "http" else None
        if origin is None or self.is_allowed_origin(origin):
            await super().__call__(scope, receive, send)
            return
        if _is_preflight(scope):
            await _refused_preflight()(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                _vary_on_origin(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_vary)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        return _refused_preflight() if response.status_code == 400 else response


def _is_preflight(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return scope["method"] == "OPTIONS" and "access-control-request-method" in headers


def _refused_preflight() -> Response:
    response = problem_response(CorsRefused(), request_id_var.get())
    _vary_on_origin(response.headers)
    return response


def _vary_on_origin(headers: MutableHeaders) -> None:
    headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])


class UnexpectedErrorMiddleware:
    """Turn any unhandled exception into a 500 problem response, inside the CORS layer.

    Starlette's own `Exception` handler runs in ServerErrorMiddleware, outside every user
    middleware, so its 500s would carry neither CORS headers nor X-Request-ID.
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
        except asyncio.CancelledError:
            # At the end of the shutdown grace period uvicorn cancels the requests still running
            # and would answer them with a plain-text 500. Their commit may or may not have
            # happened: that is the contract's 503, in doubt.
            if not drain.active or response_started:
                raise
            app_log.warning(
                "request cancelled at the end of the shutdown grace period",
                extra={"event": "request_cancelled", "request_id": request_id_var.get()},
            )
            response = problem_response(ServiceUnavailable(), request_id_var.get())
            await response(scope, receive, send)
            # Answered: the request is over, so it ends normally rather than as cancelled.
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
