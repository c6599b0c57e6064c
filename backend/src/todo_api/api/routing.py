"""Routers added to the app as its own routes (what `include_router` did before FastAPI 0.12x).

FastAPI now keeps an included router as one nested route and, on every request, walks it with
its own scope bookkeeping (`_IncludedRouter._match`, the routes version, the effective route
context): for GET one task that was ~40 of the ~95 FastAPI routing calls per request, against
the 16 of a FastAPI app whose routes are its own (#8, cProfile). The routes are copied here with
the router's prefix, tags, dependencies and responses folded in, so the OpenAPI document is
the one `include_router` gives and each request is matched against a flat list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.params import Depends
from fastapi.routing import APIRoute, APIRouter


def add_routes(
    app: FastAPI,
    router: APIRouter,
    *,
    prefix: str = "",
    tags: Sequence[str] = (),
    dependencies: Sequence[Depends] = (),
    responses: Mapping[int | str, dict[str, Any]] | None = None,
    operation_id: Callable[[APIRoute], str] | None = None,
) -> None:
    """Add every route of `router` to `app` itself, under `prefix`.

    `responses` are documented on every route added (as `include_router`'s); `operation_id`
    names each route's operation (two copies of one router need different ids).
    """
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"only API routes can be added flat, not {route!r}")
        combined: dict[Any, Any] = {**router.responses, **(responses or {}), **route.responses}
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=[*tags, *route.tags],
            dependencies=[*dependencies, *route.dependencies],
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=combined,
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=operation_id(route) if operation_id else route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            route_class_override=type(route),
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
        )
