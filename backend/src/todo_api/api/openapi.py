"""What the OpenAPI document says about errors and authentication, in one place.

Routes add `responses=PROBLEM_RESPONSES` (or a subset from `problem_responses`); authenticated
routes require the Bearer scheme of security/bearer.py, which `install` declares. `install` also
makes every documented error `application/problem+json`, which is what errors.problem_response
sends.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from todo_api.errors import (
    PROBLEM_MEDIA_TYPE,
    ApiError,
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
    TokenExpired,
    ValidationFailed,
    problem_response,
)
from todo_api.security.bearer import BEARER_SCHEME, SCHEME_NAME


class ProblemFieldError(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    loc: list[str] = Field(examples=[["body", "title"]])
    msg: str = Field(examples=["Field required"])


class Problem(BaseModel):
    """An error (RFC 9457 problem details) with a machine-readable `code`."""

    type: str = Field(examples=["urn:todo-api:problem:not_found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["The requested resource does not exist."])
    code: str = Field(examples=["not_found"])
    request_id: str = Field(examples=["5f0c8a3e9d2b4c1aa7e6f1b2c3d4e5f6"])
    errors: list[ProblemFieldError] | None = Field(
        default=None, description="Present on validation errors (422)."
    )


_DESCRIPTIONS: dict[int, str] = {
    401: "Missing, invalid, expired or revoked Bearer token (`WWW-Authenticate: Bearer ...`).",
    403: "The `{user_id}` in the path is not the token's user.",
    404: "No such task for this user (absent and another user's are indistinguishable).",
    409: "A create with this `Idempotency-Key` is still in progress; retry shortly.",
    412: "`If-Match` names no current version of the task; nothing changed.",
    422: "Invalid body, query parameter or path parameter; `errors` lists each problem.",
    503: "Database unreachable or pool exhausted; retry after `Retry-After` seconds.",
    500: "An unexpected error; the body carries no internals, only the `request_id` to report.",
}

_EXAMPLE_ERRORS: dict[int, ApiError] = {
    401: TokenExpired(),
    403: Forbidden(),
    404: NotFound(),
    409: Conflict(),
    412: PreconditionFailed(),
    422: ValidationFailed(
        "body.title: Field required", errors=[{"loc": ["body", "title"], "msg": "Field required"}]
    ),
    503: ServiceUnavailable(),
    500: InternalError(),
}


def _example(status: int) -> dict[str, Any]:
    # Rendered by the one error renderer, so the example is exactly what a client receives.
    response = problem_response(_EXAMPLE_ERRORS[status], "5f0c8a3e9d2b4c1aa7e6f1b2c3d4e5f6")
    body: dict[str, Any] = json.loads(bytes(response.body))
    return body


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Documented problem+json responses (schema and an example) for the given statuses."""
    return {
        status: {
            "model": Problem,
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"example": _example(status)}},
        }
        for status in statuses
    }


# Every route that needs a token and touches data can answer with these.
PROBLEM_RESPONSES = problem_responses(401, 403, 404, 422, 503, 500)


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_TASK_REF = "#/components/schemas/Task"
_ETAG = _header('The task\'s strong entity tag (`"<id>.<version>"`); send it as `If-Match`.')
_LOCATION = _header("The new task, as a relative reference (`/api/tasks/{id}`).")
_LINK = _header('The next page (`<…>; rel="next"`, a relative reference); absent on the last.')
_WWW_AUTHENTICATE = _header('`Bearer realm="todo-api"`, with `error="invalid_token"` and why.')
_RETRY_AFTER = _header("Seconds to wait before retrying.")
_REQUEST_ID = _header("The request's id (the client's `X-Request-ID` when well-formed).")


def _response_headers(status: str, response: dict[str, Any]) -> dict[str, Any]:
    """The headers a response of this status and body carries (see tasks.py, errors.py)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    headers: dict[str, Any] = {"X-Request-ID": _REQUEST_ID}
    if schema.get("$ref") == _TASK_REF or status == "304":
        headers["ETag"] = _ETAG
    if status == "201" and schema.get("$ref") == _TASK_REF:
        headers["Location"] = _LOCATION
    if schema.get("items", {}).get("$ref") == _TASK_REF:
        headers["Link"] = _LINK
    if status == "401":
        headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
    if status == "503":
        headers["Retry-After"] = _RETRY_AFTER
    return headers


def install(app: FastAPI) -> None:
    """Label every documented 4xx/5xx body as application/problem+json (FastAPI says JSON), and
    document the response headers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME_NAME] = (
            BEARER_SCHEME
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                for status, response in operation.get("responses", {}).items():
                    response.setdefault("headers", {}).update(_response_headers(status, response))
                    content = response.get("content", {})
                    if status[:1] in ("4", "5") and "application/json" in content:
                        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
