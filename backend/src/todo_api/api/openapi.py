"""What the OpenAPI document says about errors, headers and authentication, in one place.

Each route declares the errors it can really answer with (`problem_responses`) and an explicit
`operationId`; authenticated routes require the Bearer scheme of security/bearer.py, which
`install` declares. `install` also labels every Problem body `application/problem+json` (what
errors.problem_response sends), documents the response headers, and adds what a generated client
or a linter needs: `servers`, tags, a license, and shapes generators read the way the API means.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from todo_api.errors import (
    PROBLEM_MEDIA_TYPE,
    ApiError,
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServiceUnavailable,
    TokenExpired,
    ValidationFailed,
    problem_response,
)
from todo_api.security.bearer import BEARER_SCHEME, SCHEME_NAME


def without_default(schema: dict[str, Any]) -> None:
    """`json_schema_extra` for an optional field whose default the schema must not state.

    openapi-typescript (at its defaults) and others read a `default` as "always present", which
    holds for a response but makes an optional request field required in the generated type.
    """
    schema.pop("default", None)


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
    # Absent (not null) unless the request was invalid: no `default` and no `null` in the schema,
    # or a generated type would promise a member most bodies do not have.
    errors: list[ProblemFieldError] | SkipJsonSchema[None] = Field(
        default=None,
        description="Present on validation errors (422) only.",
        json_schema_extra=without_default,
    )


_DESCRIPTIONS: dict[int, str] = {
    401: "Missing, invalid, expired or revoked Bearer token (`WWW-Authenticate: Bearer ...`).",
    403: "The `{user_id}` in the path is not the token's user.",
    404: "No such task for this user (absent and another user's are indistinguishable).",
    409: "A create with this `Idempotency-Key` is still in progress; retry shortly.",
    412: "`If-Match` names no current version of the task; nothing changed.",
    413: "The request body is larger than the service accepts (`MAX_BODY_BYTES`).",
    422: (
        "Invalid body, query parameter, path parameter or header (`validation_error`, `errors` "
        "lists each problem), or an `Idempotency-Key` reused with another body "
        "(`idempotency_key_reused`)."
    ),
    503: (
        "Database unreachable, pool exhausted or no signing keys to be had; retry after "
        "`Retry-After` seconds."
    ),
    500: "An unexpected error; the body carries no internals, only the `request_id` to report.",
}

_EXAMPLE_ERRORS: dict[int, ApiError] = {
    401: TokenExpired(),
    403: Forbidden(),
    404: NotFound(),
    409: Conflict(),
    412: PreconditionFailed(),
    413: PayloadTooLarge(),
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


# Every route that needs a token and touches data can answer with these (401 before anything
# else, 503 when the database or the key set is out of reach). The routes add their own.
AUTHENTICATED_ERRORS = (401, 503, 500)


def _header(description: str, *, required: bool = True) -> dict[str, Any]:
    """A response header; `required` when every response of its kind carries it."""
    return {"description": description, "required": required, "schema": {"type": "string"}}


_TASK_REF = "#/components/schemas/Task"
_ETAG = _header('The task\'s strong entity tag (`"<id>.<version>"`); send it as `If-Match`.')
_LOCATION = _header(
    "The new task, as a relative reference: `/api/tasks/{id}`, or `/api/{user_id}/tasks/{id}` "
    "on the hackathon paths."
)
_LINK = _header(
    'The next page (`<…>; rel="next"`, a relative reference); absent on the last.',
    required=False,
)
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


_PROBLEM_REF = "#/components/schemas/Problem"

# Relative: the origin the document was fetched from (Swagger UI's "Try it out" calls it); a
# generated client is given its base URL when it is made.
SERVERS = [{"url": "/", "description": "The origin serving this document."}]
TAGS = [
    {"name": "tasks", "description": "The caller's tasks."},
    {
        "name": "user-tasks",
        "description": (
            "The same task operations at the hackathon API's paths, `/api/{user_id}/tasks...`: "
            "`{user_id}` must be the token's user (else 403). These paths overlap the `tasks` "
            "ones only for a user whose id is literally `tasks` (`GET /api/tasks/tasks` is read "
            "as task id `tasks`, a 422); Better Auth ids are 32 random characters."
        ),
    },
    {"name": "users", "description": "The caller's account and tokens."},
    {"name": "health", "description": "Probes for load balancers and orchestrators; no token."},
]
LICENSE = {"name": "MIT", "identifier": "MIT"}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` as X: a query value or a header is never JSON null.

    FastAPI writes the `None` default of an optional parameter that way; generators then type the
    parameter `X | null` (or `None | Unset | X`), which says nothing a client can send.
    """
    members = schema.get("anyOf")
    if not isinstance(members, list) or {"type": "null"} not in members:
        return schema
    rest = [member for member in members if member != {"type": "null"}]
    outer = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**rest[0], **outer} if len(rest) == 1 else {**outer, "anyOf": rest}


def _finish_operation(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") in ("query", "header"):
            parameter["schema"] = _without_null(parameter["schema"])
    for status, response in operation.get("responses", {}).items():
        response.setdefault("headers", {}).update(_response_headers(status, response))
        content = response.get("content", {})
        body = content.get("application/json", {})
        if body.get("schema", {}).get("$ref") == _PROBLEM_REF:
            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")


def install(app: FastAPI) -> None:
    """Finish the document FastAPI generates (see the module docstring), once, when first asked."""
    # Copies: FastAPI adds a `root_path` server to the app's list in place.
    app.servers = [dict(server) for server in SERVERS]
    app.openapi_tags = [dict(tag) for tag in TAGS]
    app.license_info = dict(LICENSE)
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
                _finish_operation(operation)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
