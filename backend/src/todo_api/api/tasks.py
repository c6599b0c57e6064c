"""Task routes (T008, T010): HTTP only; the SQL lives in services/task_service.py.

Every route runs exactly one statement in the request transaction (`Transaction`), and answers
with the JSON Postgres built. The same routes are served under `/api/tasks` and, for frontends
written to the hackathon API, under `/api/{user_id}/tasks`, where the path user must be the
token's user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import date, datetime
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
)
from typing_extensions import TypeAliasType

from todo_api.api.openapi import AUTHENTICATED_ERRORS, problem_responses
from todo_api.api.preconditions import etag, if_match_condition, none_match
from todo_api.api.routing import add_routes
from todo_api.api.schemas import NO_NUL_PATTERN, Task, TaskCreate, TaskPatch, TaskToggle, TaskUpdate
from todo_api.dependencies import AuthenticatedRoute, CurrentUser, Transaction, check_path_user
from todo_api.errors import (
    ApiError,
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from todo_api.services import task_service
from todo_api.services.task_service import (
    CursorKey,
    IdempotencyKey,
    KeyOutcome,
    ListQuery,
    NewTask,
    Refusal,
    SortKey,
    SortOrder,
    StoredTask,
    TaskChanges,
)

JSON = "application/json"
MAX_TASK_ID = 2**63 - 1  # bigint
MAX_CURSOR_LENGTH = 2048


def _decimal_digits(value: object) -> object:
    """Integers in paths and queries are plain decimal digits: no sign, `_`, point or space.

    Pydantic's lax mode would read `+80`, `1_0`, `81.0` and ` 81` as numbers.
    """
    if isinstance(value, str) and not (value.isascii() and value.isdigit() and len(value) <= 32):
        raise ValueError("must be a whole number written in plain decimal digits")
    return value


DecimalDigits = BeforeValidator(_decimal_digits)
# The validator comes after Path/Query: FastAPI reads its parameter metadata from the first item.
TaskId = Annotated[
    int, Path(ge=1, le=MAX_TASK_ID, description="The task's id (decimal digits)."), DecimalDigits
]

# Named, so the document has one component for each (both path styles use it) and a generated
# client one type, not one per operation.
StatusFilter = TypeAliasType("StatusFilter", Literal["all", "pending", "incomplete", "completed"])
SortField = TypeAliasType(
    "SortField", Literal["created", "created_at", "updated", "updated_at", "title", "due_date"]
)
_SORT_KEYS: dict[str, SortKey] = {
    "created": SortKey.CREATED,
    "created_at": SortKey.CREATED,
    "updated": SortKey.UPDATED,
    "updated_at": SortKey.UPDATED,
    "title": SortKey.TITLE,
    "due_date": SortKey.DUE_DATE,
}
_COMPLETED_FILTER: dict[str, bool | None] = {
    "all": None,
    "pending": False,
    "incomplete": False,
    "completed": True,
}
# Newest first for timestamps, alphabetical / soonest first otherwise.
_DEFAULT_ORDER: dict[SortKey, SortOrder] = {
    SortKey.CREATED: SortOrder.DESC,
    SortKey.UPDATED: SortOrder.DESC,
    SortKey.TITLE: SortOrder.ASC,
    SortKey.DUE_DATE: SortOrder.ASC,
}


async def require_path_user(
    user_id: Annotated[str, Path(description="Must equal the token's user id.")],
    user: CurrentUser,
) -> None:
    """Documents `{user_id}`; `AuthenticatedRoute` has already refused another user (403)."""
    check_path_user(user_id, user)


# Every task route: the query, path or body can be invalid (422). Each route adds its own; the
# hackathon paths add 403 (see `include`).
task_routes = APIRouter(
    prefix="/tasks",
    responses=problem_responses(*AUTHENTICATED_ERRORS, 422),
    route_class=AuthenticatedRoute,
)


def _json(body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status_code, media_type=JSON, headers=headers)


def _not_found() -> NotFound:
    return NotFound("No task with this id.")


def _collection_path(request: Request) -> str:
    """The path of the task collection the request addressed, percent-encoded.

    Built from the path parameters, never from the request's Host or raw path, so `Location`
    and `Link` are relative references that name the same collection whatever the user id.
    """
    path_user = request.path_params.get("user_id")
    if path_user is None:
        return "/api/tasks"
    return f"/api/{quote(path_user, safe='')}/tasks"


# --- the list cursor -------------------------------------------------------------------------


class _Cursor(BaseModel):
    """The keyset position after which the next page starts, bound to its sort and order."""

    model_config = ConfigDict(extra="forbid")

    s: SortKey
    o: SortOrder
    k: StrictStr | None
    i: StrictInt = Field(ge=1, le=MAX_TASK_ID)


def _encode_cursor(sort: SortKey, order: SortOrder, key: str | None, last_id: int) -> str:
    """`key` is the text PostgreSQL wrote for the last row's sort key (task_service._Ordering)."""
    # The JSON `_Cursor.model_dump_json()` would write, without building and validating a model
    # on every page: the values come from Postgres and from validated parameters.
    cursor = {
        "s": sort.value,
        "o": order.value,
        "k": key,
        "i": last_id,
    }
    raw = json.dumps(cursor, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _invalid_query(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"query.{name}: {message}", errors=[{"loc": ["query", name], "msg": message}]
    )


def _invalid_cursor(message: str) -> ValidationFailed:
    return _invalid_query("cursor", message)


def _decode_cursor(text: str, sort: SortKey, order: SortOrder) -> tuple[CursorKey, int]:
    """(key, id) of the cursor, or a 422 when it is malformed or made for another order."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = _Cursor.model_validate_json(raw)
        key = _cursor_key(cursor)
    except (ValidationError, ValueError):  # binascii and Unicode errors are ValueErrors too
        raise _invalid_cursor("is not a cursor this API issued") from None
    if cursor.s is not sort or cursor.o is not order:
        raise _invalid_cursor("was issued for another sort or order; start from page one")
    return key, cursor.i


def _cursor_key(cursor: _Cursor) -> CursorKey:
    """The keyset value in the type its sort compares: timestamp, text, or (nullable) date."""
    if cursor.s is SortKey.DUE_DATE:
        return None if cursor.k is None else date.fromisoformat(cursor.k)
    if cursor.k is None:
        raise ValueError("missing key")
    if "\x00" in cursor.k:
        raise ValueError("NUL in key")  # PostgreSQL text cannot hold it
    cursor.k.encode()  # a lone surrogate raises UnicodeEncodeError, a ValueError
    if cursor.s is SortKey.TITLE:
        return cursor.k
    timestamp = datetime.fromisoformat(cursor.k)
    if timestamp.tzinfo is None:
        raise ValueError("timestamp without offset")
    return timestamp


# --- routes ----------------------------------------------------------------------------------


@task_routes.get("", response_model=list[Task], summary="List the caller's tasks")
async def list_tasks(
    request: Request,
    tx: Transaction,
    status: Annotated[
        StatusFilter, Query(description="`incomplete` is the same as `pending`.")
    ] = "all",
    sort: Annotated[
        SortField, Query(description="`created_at`/`updated_at` are aliases.")
    ] = "created",
    order: Annotated[
        SortOrder | None,
        Query(description="Default: `desc` for created/updated, `asc` for title/due_date."),
    ] = None,
    sort_order: Annotated[SortOrder | None, Query(description="Same as `order`.")] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=1000,
            pattern=NO_NUL_PATTERN,
            description="Case-insensitive substring of title or description.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100), DecimalDigits] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_LENGTH, description="From the previous page's `Link`."),
    ] = None,
) -> Response:
    """The caller's tasks, one page at a time (keyset pagination; `Link: rel="next"`)."""
    if order is not None and sort_order is not None and order is not sort_order:
        raise _invalid_query("order", "order and sort_order disagree")
    sort_key = _SORT_KEYS[sort]
    direction = order or sort_order or _DEFAULT_ORDER[sort_key]
    after_key, after_id = (
        _decode_cursor(cursor, sort_key, direction) if cursor is not None else (None, None)
    )
    query = ListQuery(
        sort=sort_key,
        order=direction,
        limit=limit,
        completed=_COMPLETED_FILTER[status],
        q=q or None,
        after_key=after_key,
        after_id=after_id,
    )
    page = await task_service.list_tasks(tx, tx.user.id, query)
    headers: dict[str, str] = {}
    if page.has_more and page.last_id is not None:
        # status, sort and order are from fixed sets of URL-safe words and the cursor is
        # base64url, so only q needs percent-encoding.
        search = f"&q={quote(q, safe='')}" if q else ""
        next_cursor = _encode_cursor(sort_key, direction, page.last_key, page.last_id)
        query_string = (
            f"status={status}&sort={sort}&order={direction.value}{search}"
            f"&limit={limit}&cursor={next_cursor}"
        )
        headers["Link"] = f'<{_collection_path(request)}?{query_string}>; rel="next"'
    return _json(page.body, headers=headers)


def _idempotency_key(value: str | None) -> str | None:
    """The key of an `Idempotency-Key` header: an sf-string (`"…"`), or a bare token.

    1-255 printable ASCII characters once unquoted; RFC 8941 escapes (`\\"`, `\\\\`) are honoured.
    """
    if value is None:
        return None
    text = value.strip(" \t")
    if text.startswith('"'):
        match = _SF_STRING.fullmatch(text)
        if match is None:
            raise ValueError("must be a quoted string (sf-string) or a bare token")
        text = re.sub(r"\\(.)", r"\1", match.group(1))
    elif not _BARE_KEY.fullmatch(text):
        raise ValueError("must be a quoted string (sf-string) or a bare token")
    if not 1 <= len(text) <= MAX_IDEMPOTENCY_KEY:
        raise ValueError(f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return text


MAX_IDEMPOTENCY_KEY = 255
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_BARE_KEY = re.compile(r"[\x21\x23-\x7e]+")

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "Makes a retried create safe: the same key and body answer the original 201 and "
            'create nothing. An sf-string (`"8e03978e-…"`) or a bare token; keys live 24 h.'
        ),
    ),
    AfterValidator(_idempotency_key),
]
# A list because a request may repeat the header; documented as the one string a client sends
# (a comma-separated list of entity tags is one value), which every generator can type
# (openapi-python-client skips an operation with an array header).
_ENTITY_TAGS_SCHEMA = WithJsonSchema({"type": "string", "examples": ['"1.1"', '"1.1", "1.2"']})
IfMatchHeader = Annotated[
    list[str] | None,
    Header(
        alias="If-Match",
        description=(
            "Write only if the task's ETag is one of these (comma-separated; `*`: any); else 412."
        ),
    ),
    _ENTITY_TAGS_SCHEMA,
]
IfNoneMatchHeader = Annotated[
    list[str] | None,
    Header(alias="If-None-Match", description="304 when the task's ETag matches (weak)."),
    _ENTITY_TAGS_SCHEMA,
]


def _fingerprint(body: TaskCreate) -> str:
    """The same request body, however it was spelled (key order, spaces, ignored fields)."""
    normal = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(normal.encode()).hexdigest()


def _task_response(task_id: int, task: StoredTask, status_code: int = 200) -> Response:
    return _json(task.body, status_code, {"ETag": etag(task_id, task.version)})


def _refused(refusal: Refusal) -> ApiError:
    if refusal is Refusal.STALE:
        return PreconditionFailed()
    return _not_found()


@task_routes.post(
    "",
    status_code=201,
    response_model=Task,
    summary="Create a task",
    responses=problem_responses(409, 413),
)
async def create_task(
    request: Request,
    tx: Transaction,
    body: Annotated[TaskCreate, Body()],
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Create a task for the caller; `Location` names it."""
    # Computed before the statement commits: nothing after the commit may fail.
    collection = _collection_path(request)
    new = NewTask(body.title, body.description, body.completed, body.due_date)
    key = None if idempotency_key is None else IdempotencyKey(idempotency_key, _fingerprint(body))
    outcome = await task_service.create_task(tx, tx.user.id, new, key)
    if outcome is KeyOutcome.REUSED:
        raise IdempotencyKeyReused()
    if outcome is KeyOutcome.IN_FLIGHT:
        raise Conflict()
    response = _task_response(outcome.task_id, outcome.task, 201)
    response.headers["Location"] = f"{collection}/{outcome.task_id}"
    return response


@task_routes.get(
    "/{task_id}",
    response_model=Task,
    summary="Get a task",
    responses={304: {"description": "Not modified"}, **problem_responses(404)},
)
async def read_task(
    task_id: TaskId, tx: Transaction, if_none_match: IfNoneMatchHeader = None
) -> Response:
    """One of the caller's tasks."""
    task = await task_service.get_task(tx, tx.user.id, task_id)
    if task is None:
        raise _not_found()
    tag = etag(task_id, task.version)
    if if_none_match and none_match(if_none_match, tag):
        return Response(status_code=304, headers={"ETag": tag})
    return _task_response(task_id, task)


def _changes(body: TaskUpdate | TaskPatch) -> TaskChanges:
    supplied = body.model_fields_set
    return TaskChanges(
        title=body.title,
        completed=body.completed,
        set_description="description" in supplied,
        description=body.description,
        set_due_date="due_date" in supplied,
        due_date=body.due_date,
    )


async def _update(
    tx: Transaction, user_id: str, task_id: int, changes: TaskChanges, if_match: list[str] | None
) -> Response:
    condition = if_match_condition(if_match or [], task_id)
    task = await task_service.update_task(tx, user_id, task_id, changes, condition)
    if isinstance(task, Refusal):
        raise _refused(task)
    return _task_response(task_id, task)


_WRITE_RESPONSES = problem_responses(404, 412, 413)


@task_routes.put(
    "/{task_id}",
    response_model=Task,
    summary="Replace a task's fields",
    responses=_WRITE_RESPONSES,
)
async def update_task(
    task_id: TaskId,
    tx: Transaction,
    body: Annotated[TaskUpdate, Body()],
    if_match: IfMatchHeader = None,
) -> Response:
    """Update a task: `title` is required, omitted fields keep their values."""
    return await _update(tx, tx.user.id, task_id, _changes(body), if_match)


@task_routes.patch(
    "/{task_id}",
    response_model=Task,
    summary="Change some of a task's fields",
    responses=_WRITE_RESPONSES,
)
async def patch_task(
    task_id: TaskId,
    tx: Transaction,
    body: Annotated[TaskPatch, Body()],
    if_match: IfMatchHeader = None,
) -> Response:
    """Partial update: only the fields sent change; null clears description or due_date."""
    return await _update(tx, tx.user.id, task_id, _changes(body), if_match)


@task_routes.delete(
    "/{task_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a task",
    responses=problem_responses(404, 412),
)
async def delete_task(task_id: TaskId, tx: Transaction, if_match: IfMatchHeader = None) -> Response:
    """Delete one of the caller's tasks."""
    condition = if_match_condition(if_match or [], task_id)
    refusal = await task_service.delete_task(tx, tx.user.id, task_id, condition)
    if refusal is not None:
        raise _refused(refusal)
    return Response(status_code=204)


# No body, `{}` and a JSON `null` all mean: flip. Declared as an optional TaskToggle with a
# default, not `TaskToggle | None`, so the document says "optional body, a TaskToggle" rather than
# "a TaskToggle or null", which generated clients could not omit (openapi-python-client then sent
# its `UNSET` marker as JSON).
FLIP = TaskToggle()  # no body: flip `completed`


def _null_is_no_body(value: object) -> object:
    return {} if value is None else value


ToggleBody = Annotated[TaskToggle, Body(), BeforeValidator(_null_is_no_body)]


@task_routes.patch(
    "/{task_id}/complete",
    response_model=Task,
    summary="Toggle completion",
    responses=_WRITE_RESPONSES,
    openapi_extra={"requestBody": {"required": False}},
)
async def toggle_task(
    task_id: TaskId,
    tx: Transaction,
    body: ToggleBody = FLIP,
    if_match: IfMatchHeader = None,
) -> Response:
    """Flip `completed`, or set it with `{"completed": true|false}`; the body is optional."""
    completed = body.completed
    condition = if_match_condition(if_match or [], task_id)
    task = await task_service.toggle_task(tx, tx.user.id, task_id, completed, condition)
    if isinstance(task, Refusal):
        raise _refused(task)
    return _task_response(task_id, task)


# Explicit operation ids, (`/api/tasks...`, `/api/{user_id}/tasks...`) by route: generated clients
# name their functions and types after them, so they are part of the API. A new route without one
# fails at start-up (KeyError), not with a FastAPI-made name.
OPERATION_IDS: dict[str, tuple[str, str]] = {
    "list_tasks": ("listTasks", "listUserTasks"),
    "create_task": ("createTask", "createUserTask"),
    "read_task": ("getTask", "getUserTask"),
    "update_task": ("updateTask", "updateUserTask"),
    "patch_task": ("patchTask", "patchUserTask"),
    "delete_task": ("deleteTask", "deleteUserTask"),
    "toggle_task": ("toggleTask", "toggleUserTask"),
}


def _operation_id(route: APIRoute) -> str:
    return OPERATION_IDS[route.name][0]


def _user_operation_id(route: APIRoute) -> str:
    return OPERATION_IDS[route.name][1]


def include(app: FastAPI) -> None:
    """Serve the task routes under both path styles, as the app's own routes (`add_routes`)."""
    add_routes(app, task_routes, prefix="/api", tags=["tasks"], operation_id=_operation_id)
    add_routes(
        app,
        task_routes,
        prefix="/api/{user_id}",
        tags=["user-tasks"],
        dependencies=[Depends(require_path_user)],
        responses=problem_responses(403),
        operation_id=_user_operation_id,
    )
