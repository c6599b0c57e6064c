"""Prometheus metrics at `/metrics`, when `METRICS_ENABLED` is on (prometheus-client).

What a request costs: `EdgeMiddleware` calls `Metrics.observe` once, which finds the request's
two label children in a dict (resolved once per route, method and status) and makes one counter
inc and one histogram observe. Everything else is counted where it is rare (authentication
failures, database errors) or read when scraped (the pool's figures).

Labels carry only route templates (`/api/tasks/{task_id}`; a path no route matched is
`unmatched`), methods from a fixed list, status codes, the fixed `reason`s of authentication
errors and two-character SQLSTATE classes: never a user id, token, concrete path or query value.

With `todo-api serve --workers N` every worker writes its values to files in a directory the
parent made for this run (prometheus-client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`,
see `todo_api.server`), and whichever worker answers a scrape reads them all: counters and
histograms add up over every worker that ran, pool gauges over the live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import psycopg
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.responses import Response
from starlette.types import Scope

if TYPE_CHECKING:
    from fastapi import FastAPI

    from todo_api.db import Database

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds. The API answers in 1-50 ms; the upper buckets catch pool waits and timeouts.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# How often each worker of `--workers N` writes its pool figures for the others' scrapes.
SAMPLE_INTERVAL_SECONDS = 1.0

# The `_created` series double every counter and mean nothing across restarts of workers.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    """The service's metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_DIR_ENV))
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "todo_api_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "todo_api_http_request_duration_seconds",
            "Time from a request's arrival to its last byte sent, by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.authentication_failures = Counter(
            "todo_api_authentication_failures",
            "Requests refused with 401, by reason (expired, bad_signature, no_header, ...).",
            ["reason"],
            registry=registry,
        )
        self.database_errors = Counter(
            "todo_api_db_errors",
            "Request statements the database refused, by SQLSTATE class (23 integrity, "
            "28 revoked token, 57 timeout or shutdown, ...).",
            ["sqlstate_class"],
            registry=registry,
        )
        self.connection_errors = Counter(
            "todo_api_db_connection_errors",
            "Connections to the database that could not be opened, or broke under a request.",
            registry=registry,
        )
        self.pool_connections = self._pool_gauge(
            "todo_api_db_pool_connections", "Database connections open (in use or idle)."
        )
        self.pool_idle = self._pool_gauge(
            "todo_api_db_pool_idle_connections", "Database connections open and idle."
        )
        self.pool_max = self._pool_gauge(
            "todo_api_db_pool_max_connections", "Most database connections the pools may open."
        )
        self.pool_waiting = self._pool_gauge(
            "todo_api_db_pool_waiting_requests", "Requests waiting for a database connection."
        )
        self._children: dict[tuple[int, str, int], tuple[Counter, Histogram]] = {}
        self._failure_children: dict[str, Counter] = {}
        self._database: Database | None = None
        self._pool_errors_counted = 0

    def _pool_gauge(self, name: str, documentation: str) -> Gauge:
        # livesum: with --workers, the sum over the workers alive now.
        return Gauge(name, documentation, multiprocess_mode="livesum", registry=self.registry)

    # --- per request (hot path) ---------------------------------------------------------------

    def observe(self, scope: Scope, method: str, status: int, elapsed_ns: int) -> None:
        """Count one answered request (`scope` after routing: its route is known)."""
        # What matched: an API route (the app's own, so its template is the whole path; see
        # api/routing.py); Starlette routes and mounts leave only their endpoint; a 404 nothing.
        matched = scope.get("route") or scope.get("endpoint")
        if method not in KNOWN_METHODS:
            method = "other"
        key = (id(matched), method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._resolve(scope, matched, method, status)
        counter, histogram = children
        counter.inc()
        histogram.observe(elapsed_ns / 1e9)

    def _resolve(
        self, scope: Scope, matched: Any, method: str, status: int
    ) -> tuple[Counter, Histogram]:
        template = getattr(matched, "path_format", None)
        if template is None and matched is not None:
            router = getattr(scope.get("app"), "router", None)
            for route in getattr(router, "routes", ()):
                if matched in (getattr(route, "endpoint", None), getattr(route, "app", None)):
                    template = getattr(route, "path_format", None)
                    break
        template = template or UNMATCHED_ROUTE
        return (
            self.requests.labels(method, template, str(status)),
            self.duration.labels(method, template),
        )

    # --- rare events --------------------------------------------------------------------------

    def authentication_failed(self, reason: str) -> None:
        # Cached too: a client retrying a bad token can make this as frequent as requests.
        child = self._failure_children.get(reason)
        if child is None:
            child = self._failure_children[reason] = self.authentication_failures.labels(reason)
        child.inc()

    def database_failed(self, error: BaseException) -> None:
        """A request statement raised `error` (db.Database.on_error)."""
        if not isinstance(error, psycopg.Error):
            return  # cancelled, or a value that could not be bound: not the database's
        if error.sqlstate:
            self.database_errors.labels(error.sqlstate[:2]).inc()
        elif isinstance(error, psycopg.OperationalError):
            self.connection_errors.inc()  # the connection broke: no SQLSTATE came back

    # --- the pool, read when scraped ----------------------------------------------------------

    def watch(self, database: Database) -> None:
        self._database = database
        database.on_error = self.database_failed

    def sample(self) -> None:
        """Write the pool's current figures into the gauges."""
        database = self._database
        if database is None:
            return
        stats = database.pool.get_stats()
        self.pool_connections.set(stats.get("pool_size", 0))
        self.pool_idle.set(stats.get("pool_available", 0))
        self.pool_max.set(stats.get("pool_max", 0))
        self.pool_waiting.set(database.waiting + stats.get("requests_waiting", 0))
        # psycopg_pool counts its failed connection attempts; count the new ones.
        failed = stats.get("connections_errors", 0)
        if failed > self._pool_errors_counted:
            self.connection_errors.inc(failed - self._pool_errors_counted)
            self._pool_errors_counted = failed

    async def sample_periodically(self) -> None:
        """With --workers: keep this worker's pool figures fresh for scrapes another answers."""
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_INTERVAL_SECONDS)

    def exposition(self) -> bytes:
        self.sample()
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    # --- wiring -------------------------------------------------------------------------------

    def install(self, app: FastAPI) -> None:
        """Serve `/metrics` (not in the OpenAPI document: it is for Prometheus, not frontends)."""

        async def metrics_endpoint() -> Response:
            return Response(self.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

        app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)

    @contextlib.asynccontextmanager
    async def watching(self, database: Database) -> AsyncIterator[None]:
        """For the app's lifespan: the pool watched, and sampled periodically with --workers."""
        self.watch(database)
        sampler = asyncio.create_task(self.sample_periodically()) if self.multiprocess else None
        try:
            yield
        finally:
            if sampler is not None:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
