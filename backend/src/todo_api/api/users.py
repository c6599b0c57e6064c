"""The caller's own account: who they are and how many tasks they have."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from todo_api.dependencies import Conn, CurrentUser
from todo_api.services import task_service

router = APIRouter(prefix="/api/users", tags=["users"])


class TaskCounts(BaseModel):
    total: int
    pending: int
    completed: int


class Me(BaseModel):
    id: str
    email: str | None
    name: str | None
    tasks: TaskCounts


@router.get("/me", summary="The caller and their task counts")
async def read_me(user: CurrentUser, conn: Conn) -> Me:
    """The caller and their task counts."""
    total, pending, completed = await task_service.count_tasks(conn, user.id)
    return Me(
        id=user.id,
        email=user.email,
        name=user.name,
        tasks=TaskCounts(total=total, pending=pending, completed=completed),
    )
