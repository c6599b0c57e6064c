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
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from todo_api.api.openapi import PROBLEM_RESPONSES, problem_responses
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

StatusFilter = Literal["all", "pending", "incomplete", "completed"]
SortParam = Literal["created", "created_at", "updated", "updated_at", "title", "due_date"]
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


task_routes = APIRouter(
    prefix="/tasks", responses=PROBLEM_RESPONSES, route_class=AuthenticatedRoute
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
        SortParam, Query(description="`created_at`/`updated_at` are aliases.")
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
IfMatchHeader = Annotated[
    list[str] | None,
    Header(
        alias="If-Match",
        description="Write only if the task's ETag is one of these (`*`: any); else 412.",
    ),
]
IfNoneMatchHeader = Annotated[
    list[str] | None,
    Header(alias="If-None-Match", description="304 when the task's ETag matches (weak)."),
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
    responses=problem_responses(409),
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
    responses={304: {"description": "Not modified"}},
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


_WRITE_RESPONSES = problem_responses(412)


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
    responses=_WRITE_RESPONSES,
)
async def delete_task(task_id: TaskId, tx: Transaction, if_match: IfMatchHeader = None) -> Response:
    """Delete one of the caller's tasks."""
    condition = if_match_condition(if_match or [], task_id)
    refusal = await task_service.delete_task(tx, tx.user.id, task_id, condition)
    if refusal is not None:
        raise _refused(refusal)
    return Response(status_code=204)


@task_routes.patch(
    "/{task_id}/complete",
    response_model=Task,
    summary="Toggle completion",
    responses=_WRITE_RESPONSES,
)
async def toggle_task(
    task_id: TaskId,
    tx: Transaction,
    body: Annotated[TaskToggle | None, Body()] = None,
    if_match: IfMatchHeader = None,
) -> Response:
    """Flip `completed`, or set it with `{"completed": true|false}`."""
    completed = body.completed if body is not None else None
    condition = if_match_condition(if_match or [], task_id)
    task = await task_service.toggle_task(tx, tx.user.id, task_id, completed, condition)
    if isinstance(task, Refusal):
        raise _refused(task)
    return _task_response(task_id, task)


def include(app: FastAPI) -> None:
    """Serve the task routes under both path styles, as the app's own routes (`add_routes`)."""
    add_routes(app, task_routes, prefix="/api", tags=["tasks"])
    add_routes(
        app,
        task_routes,
        prefix="/api/{user_id}",
        tags=["tasks (hackathon paths)"],
        dependencies=[Depends(require_path_user)],
    )
