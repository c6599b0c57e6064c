"""The Bearer scheme as OpenAPI documents it: declared once for the document (api/openapi.py)
and required by every operation of an authenticated route (dependencies.py)."""

from __future__ import annotations

from typing import Any

SCHEME_NAME = "BearerAuth"

BEARER_SCHEME: dict[str, Any] = {
    "type": "http",
    "description": "A Better Auth JWT: `Authorization: Bearer <token>`.",
    "scheme": "bearer",
    "bearerFormat": "JWT",
}
BEARER_SECURITY: list[dict[str, list[str]]] = [{SCHEME_NAME: []}]
