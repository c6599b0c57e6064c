"""Error types and their one rendering: RFC 9457 problem+json with a machine `code`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout
from starlette.responses import JSONResponse

REALM = "todo-api"
PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger("todo_api.db")


class ApiError(Exception):
    """An error a client should see. Subclasses fix the status, code and title."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"
    default_detail: ClassVar[str] = "The server could not complete the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        reason: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        # Short machine reason for the security log (e.g. "expired", "bad_signature").
        self.reason = reason or self.code
        self.errors = list(errors) if errors is not None else None
        super().__init__(self.detail)

    def headers(self) -> dict[str, str]:
        return {}


class AuthenticationError(ApiError):
    """401: the request carries no usable credentials."""

    status = 401
    code = "invalid_token"
    title = "Invalid token"
    default_detail = "The access token is invalid."
    # The token's subject when its signature was valid but a claim was not (security log only).
    user_id: str | None = None

    def headers(self) -> dict[str, str]:
        description = self.detail.replace('"', "'").replace("\\", "/")
        return {
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'
            )
        }


class MissingToken(AuthenticationError):
    code = "missing_token"
    title = "Missing token"
    default_detail = "This endpoint needs an Authorization: Bearer token."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}


class InvalidToken(AuthenticationError):
    pass


class TokenExpired(AuthenticationError):
    code = "token_expired"
    title = "Token expired"
    default_detail = "The access token has expired."


class TokenRevoked(AuthenticationError):
    code = "token_revoked"
    title = "Token revoked"
    default_detail = "The access token has been revoked."


class Forbidden(ApiError):
    status = 403
    code = "forbidden"
    title = "Forbidden"
    default_detail = "The token does not grant access to this resource."


class NotFound(ApiError):
    status = 404
    code = "not_found"
    title = "Not found"
    default_detail = "The requested resource does not exist."


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"
    default_detail = "This method is not allowed on this resource."


class Conflict(ApiError):
    status = 409
    code = "conflict"
    title = "Conflict"
    default_detail = "A request with this Idempotency-Key is still in progress; retry shortly."


class PreconditionFailed(ApiError):
    status = 412
    code = "precondition_failed"
    title = "Precondition failed"
    default_detail = "The task has changed since the version named in If-Match; nothing changed."


class IdempotencyKeyReused(ApiError):
    status = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"
    default_detail = "This Idempotency-Key was already used with a different request body."


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"
    default_detail = "The request body is larger than this service accepts."


class CorsRefused(ApiError):
    """400: a CORS preflight for an origin, method or header this service does not allow."""

    status = 400
    code = "cors_refused"
    title = "CORS preflight refused"
    default_detail = "The preflight asks for an origin, method or header that is not allowed."


class ValidationFailed(ApiError):
    status = 422
    code = "validation_error"
    title = "Validation error"
    default_detail = "The request is not valid."


class ServiceUnavailable(ApiError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"
    default_detail = "The service is temporarily unavailable; retry shortly."
    retry_after_seconds: ClassVar[int] = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class InternalError(ApiError):
    pass


def problem_response(error: ApiError, request_id: str) -> JSONResponse:
    """Render any error the same way."""
    body: dict[str, Any] = {
        "type": f"urn:todo-api:problem:{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "request_id": request_id,
    }
    if error.errors is not None:
        body["errors"] = error.errors
    return JSONResponse(
        body,
        status_code=error.status,
        headers={**error.headers(), "X-Request-ID": request_id},
        media_type=PROBLEM_MEDIA_TYPE,
    )


def database_error(exc: psycopg.Error | PoolTimeout | UnicodeEncodeError) -> ApiError:
    """The API error for a failed request transaction: the SQLSTATE decides; re-raised if none.

    `db.OneStatementTransaction.run` is its one caller.
    """
    if isinstance(exc, pg_errors.InvalidAuthorizationSpecification):
        return TokenRevoked()  # todo_begin_request refused a revoked token (28000)
    if isinstance(exc, pg_errors.UniqueViolation):
        # Only an idempotency key can collide (task ids are generated): a twin request with
        # the same key committed while this one ran. Nothing of this one was kept.
        log.info("unique violation: %s", exc.diag.constraint_name)
        return Conflict()
    if isinstance(exc, pg_errors.CheckViolation | pg_errors.NotNullViolation | pg_errors.DataError):
        # API validation should have caught it; the database is the last line.
        log.info("constraint refused a write: %s", exc.diag.constraint_name or exc.sqlstate)
        return _constraint_refused()
    if isinstance(exc, UnicodeEncodeError):
        # A value PostgreSQL text cannot hold (a lone surrogate): binding it client-side
        # fails before anything is sent, where the server would have refused it.
        log.info("constraint refused a write: not encodable")
        return _constraint_refused()
    if isinstance(exc, PoolTimeout | psycopg.OperationalError):
        log.warning("database unavailable: %s", type(exc).__name__)
        return ServiceUnavailable()
    raise exc


def _constraint_refused() -> ValidationFailed:
    return ValidationFailed(
        "The request violates a data constraint.",
        errors=[{"loc": ["body"], "msg": "violates a data constraint"}],
    )
