"""Round trips per request: every data route called in turn through a counting proxy, then with
latency added to the proxy (a request that gets that much slower made one round trip)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from bench import database
from bench.proxy import CountingProxy, Upstream, url_through
from bench.servers import SECRET, Layout, Server, api_server
from todo_api.security.minting import mint_token


@dataclass
class RoundTrips:
    route: str
    requests: int
    per_request: float
    base_ms: float = 0.0  # median request time without added latency
    delayed_ms: float = 0.0  # median with the proxy's added latency
    latency_ms: float = 0.0
    new_connections: int = 0  # connections the pool opened meanwhile (their handshakes count)

    @property
    def implied(self) -> float:
        """Round trips implied by the slowdown under added latency."""
        return (self.delayed_ms - self.base_ms) / self.latency_ms if self.latency_ms else 0.0


@dataclass
class RouteCalls:
    """Sequential calls of every data route for one user, through the real HTTP API."""

    client: httpx.AsyncClient
    task_id: int = 0
    spare_ids: list[int] = field(default_factory=list)

    async def call(self, route: str) -> None:
        client = self.client
        if route == "create":
            response = await client.post("/api/tasks", json={"title": "Round-trip probe"})
            self.spare_ids.append(int(response.json()["id"]))
        elif route == "list":
            response = await client.get("/api/tasks", params={"limit": 50})
        elif route == "get":
            response = await client.get(f"/api/tasks/{self.task_id}")
        elif route == "put":
            response = await client.put(f"/api/tasks/{self.task_id}", json={"title": "Renamed"})
        elif route == "patch":
            response = await client.patch(f"/api/tasks/{self.task_id}", json={"completed": True})
        elif route == "toggle":
            response = await client.patch(f"/api/tasks/{self.task_id}/complete")
        elif route == "delete":
            response = await client.delete(f"/api/tasks/{self.spare_ids.pop()}")
        elif route == "me":
            response = await client.get("/api/users/me")
        else:
            raise ValueError(route)
        if response.status_code >= 300:
            raise RuntimeError(f"{route}: HTTP {response.status_code} {response.text[:300]}")


RT_ROUTES = ["create", "list", "get", "put", "patch", "toggle", "delete", "me"]


async def _timed(call: Callable[[], Awaitable[None]], count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def measure_round_trips(
    server: Server, proxy: CountingProxy, token: str, requests: int, latency_ms: float
) -> list[RoundTrips]:
    timed_calls = 15
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=10) as client:
        calls = RouteCalls(client)
        # Enough tasks for every delete below; the first one is the task the other routes use.
        for _ in range(requests + 2 * timed_calls + 10):
            await calls.call("create")
        calls.task_id = calls.spare_ids.pop(0)
        results = []
        for route in RT_ROUTES:
            # Past each statement's first use on a connection (which PREPAREs it, db.Statement),
            # so the counted runs are the EXECUTEs every later request sends.
            for _ in range(6):
                await calls.call(route)
            await asyncio.sleep(0.2)
            before, connections = proxy.round_trips, proxy.connections
            for _ in range(requests):
                await calls.call(route)
            results.append(
                RoundTrips(
                    route, requests, (proxy.round_trips - before) / requests,
                    new_connections=proxy.connections - connections,
                )
            )  # fmt: skip
        for result in results:
            call = functools.partial(calls.call, result.route)
            result.base_ms = await _timed(call, timed_calls)
            proxy.latency = latency_ms / 1000
            result.delayed_ms = await _timed(call, timed_calls)
            result.latency_ms = latency_ms
            proxy.latency = 0.0
    return results


async def count_round_trips(
    args: argparse.Namespace, layout: Layout, workdir: Path, db: database.BenchDatabase
) -> list[RoundTrips]:
    """Start the API behind the counting proxy and measure every route through it."""
    print("counting round trips through the proxy ...", flush=True)
    proxy = CountingProxy(Upstream.from_url(db.login_url))
    await proxy.start()
    server = api_server(args, layout, url_through(db.login_url, proxy.port), workdir, "proxied")
    server.start()
    try:
        await server.wait_ready("/readyz", {})
        probe_user = mint_token(
            SecretStr(SECRET), database.light_user_id(args.users), ttl_seconds=3600
        )
        return await measure_round_trips(
            server, proxy, probe_user, args.round_trip_requests, args.latency_ms
        )
    finally:
        server.stop()
        await proxy.close()
