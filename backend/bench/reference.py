"""The FastAPI reference: what FastAPI itself costs for the service's routes, without the service.

The same paths, parameter and body declarations as `todo_api.api` (imported from it, so they
cannot drift), an `Annotated` dependency verifying the Bearer token with the service's own
`TokenVerifier` (its cache of verified tokens on, as in the service), and fixed pre-serialized
bodies of the service's sizes (a 50-task page, one task). No database, none of the service's
middleware, exception handlers or OpenAPI customisation. It is served exactly like the service
(`todo_api.cli`'s uvicorn settings: uvloop, httptools, one worker), so the service's figures
divided by its figures say how far the service is from plain FastAPI doing the same HTTP work.

    python -m bench.reference --port P  (BETTER_AUTH_SECRET from the environment)
"""

from __future__ import annotations

import argparse
import json
from typing import Annotated

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from todo_api.api.schemas import NO_NUL_PATTERN, TaskCreate
from todo_api.api.tasks import (
    FLIP,
    MAX_CURSOR_LENGTH,
    DecimalDigits,
    IdempotencyKeyHeader,
    IfMatchHeader,
    IfNoneMatchHeader,
    SortField,
    StatusFilter,
    TaskId,
    ToggleBody,
)
from todo_api.config import Settings
from todo_api.dependencies import bearer_token
from todo_api.errors import ApiError
from todo_api.identity import User
from todo_api.security import TokenVerifier
from todo_api.services.task_service import SortOrder


def _task(task_id: int) -> dict[str, object]:
    return {
        "id": task_id,
        "user_id": "3d3c1f4fc5daf63f5db7698fc28fb74d",
        "title": f"Task {task_id} for 3d3c1f",
        "description": f"Details of task {task_id}" if task_id % 2 else None,
        "completed": task_id % 3 == 0,
        "due_date": "2026-04-11" if task_id % 4 else None,
        "created_at": "2026-01-01T02:41:40.000000Z",
        "updated_at": "2026-01-01T02:28:20.000000Z",
    }


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


PAGE_BODY = _compact([_task(n) for n in range(3000, 2950, -1)])
TASK_BODY = _compact(_task(3000))
ME_BODY = _compact(
    {
        "id": "3d3c1f4fc5daf63f5db7698fc28fb74d",
        "email": None,
        "name": None,
        "tasks": {"total": 100, "pending": 50, "completed": 50},
    }
)
JSON = "application/json"
ETAG = {"ETag": '"3000.1"'}


async def current_user(request: Request) -> User:
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(bearer_token(request))


CurrentUser = Annotated[User, Depends(current_user)]


def create_app() -> FastAPI:
    app = FastAPI(title="FastAPI reference", redirect_slashes=False)
    settings = Settings()  # type: ignore[call-arg]  # from the environment, like the API
    app.state.verifier = TokenVerifier(settings)

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: Exception) -> Response:
        return JSONResponse({"code": getattr(exc, "code", "error")}, status_code=401)

    @app.get("/api/tasks")
    async def list_tasks(
        user: CurrentUser,
        status: Annotated[StatusFilter, Query()] = "all",
        sort: Annotated[SortField, Query()] = "created",
        order: Annotated[SortOrder | None, Query()] = None,
        sort_order: Annotated[SortOrder | None, Query()] = None,
        q: Annotated[str | None, Query(max_length=1000, pattern=NO_NUL_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=100), DecimalDigits] = 50,
        cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)] = None,
    ) -> Response:
        return Response(PAGE_BODY, media_type=JSON)

    @app.post("/api/tasks", status_code=201)
    async def create_task(
        user: CurrentUser,
        body: Annotated[TaskCreate, Body()],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        headers = {**ETAG, "Location": "/api/tasks/3000"}
        return Response(TASK_BODY, status_code=201, media_type=JSON, headers=headers)

    @app.get("/api/tasks/{task_id}")
    async def read_task(
        task_id: TaskId, user: CurrentUser, if_none_match: IfNoneMatchHeader = None
    ) -> Response:
        return Response(TASK_BODY, media_type=JSON, headers=ETAG)

    @app.patch("/api/tasks/{task_id}/complete")
    async def toggle_task(
        task_id: TaskId,
        user: CurrentUser,
        body: ToggleBody = FLIP,
        if_match: IfMatchHeader = None,
    ) -> Response:
        return Response(TASK_BODY, media_type=JSON, headers=ETAG)

    @app.get("/api/users/me")
    async def read_me(user: CurrentUser) -> Response:
        return Response(ME_BODY, media_type=JSON)

    @app.get("/readyz")
    async def ready() -> Response:
        return Response(b'{"status":"ready"}', media_type=JSON)

    return app


def main() -> None:
    from todo_api import server

    parser = argparse.ArgumentParser(prog="python -m bench.reference")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Served exactly as `todo-api serve` serves the service (same uvicorn options).
    plan = server.ShutdownPlan(grace_seconds=20, delay_seconds=0)
    server.run(
        "bench.reference:create_app",
        host="127.0.0.1",
        port=args.port,
        workers=1,
        log_level="warning",
        plan=plan,
    )


if __name__ == "__main__":
    main()
