"""Task routes (T008, T010): HTTP only; the SQL lives in services/task_service.py."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["tasks"])
