"""Liveness and readiness probes: no authentication."""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response

from todo_api import migrations
from todo_api.shutdown import drain

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


ReadyStatus = Literal["ready", "unavailable", "shutting_down"]
DatabaseStatus = Literal["ok", "unreachable", "migrations_pending", "not_checked"]


class Readiness(BaseModel):
    status: ReadyStatus
    database: DatabaseStatus


def _not_ready(status: ReadyStatus, database: DatabaseStatus) -> Response:
    body = Readiness(status=status, database=database)
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "5"})


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
        return _not_ready("shutting_down", "not_checked")
    database = request.app.state.database
    on_disk: list[migrations.MigrationFile] = request.app.state.migrations
    try:
        async with database.pool.connection(timeout=2.0) as conn:
            cursor = await conn.execute(migrations.APPLIED_HASHES_QUERY)
            applied = [hash_ for (hash_,) in await cursor.fetchall()]
    except psycopg.errors.UndefinedTable:
        # No yoyo bookkeeping at all: the database was never migrated.
        applied = []
    except Exception:  # noqa: BLE001 - any other failure means "not ready"
        return _not_ready("unavailable", "unreachable")
    if migrations.unapplied(on_disk, applied):
        return _not_ready("unavailable", "migrations_pending")
    return JSONResponse(Readiness(status="ready", database="ok").model_dump())
