"""Liveness and readiness probes: no authentication."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from todo_api.shutdown import drain

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable", "shutting_down"]
    database: Literal["ok", "unreachable", "migrations_pending", "not_checked"]


# No token: `security: []` says so explicitly (to linters, generators and readers).
PUBLIC: dict[str, Any] = {"security": []}


@router.get(
    "/healthz",
    summary="The process is alive (no database)",
    operation_id="getHealth",
    openapi_extra=PUBLIC,
)
async def healthz() -> Health:
    """The process is alive (no database)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="The database is reachable, migrations are at head, and no shutdown has begun",
    operation_id="getReadiness",
    response_model=Readiness,
    # A plain JSON body (what the probe sends), not a problem: load balancers read `status`.
    responses={
        503: {"model": Readiness, "description": "Not ready; `Retry-After` says when to ask again."}
    },
    openapi_extra=PUBLIC,
)
async def readyz(request: Request) -> Response:
    """The database is reachable, migrations are at head, and no shutdown has begun."""
    if drain.active:
        # Stopping: the load balancer should send no more, whatever the database says.
        body = Readiness(status="shutting_down", database="not_checked")
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    database = request.app.state.database
    expected: list[str] = request.app.state.migration_ids
    try:
        async with database.pool.connection(timeout=2.0) as conn:
            cursor = await conn.execute(
                "select count(distinct migration_id) from _yoyo_migration"
                " where migration_id = any(%s)",
                (expected,),
            )
            row = await cursor.fetchone()
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        body = Readiness(status="unavailable", database="unreachable")
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    if row is None or row[0] != len(expected):
        body = Readiness(status="unavailable", database="migrations_pending")
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})
    return JSONResponse(Readiness(status="ready", database="ok").model_dump())
