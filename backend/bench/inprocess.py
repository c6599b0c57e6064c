"""In-process CPU per request of the app, metrics off vs on, and what Server-Timing costs.

    .venv/bin/python backend/bench/inprocess.py [--requests 2000] [--rounds 5]

No HTTP and no uvicorn: the app's ASGI callable is called directly, one request at a time
(scope, `receive` and `send` shaped as uvicorn makes them), against a migrated and seeded
embedded PostgreSQL (or the superuser URL in `BENCH_DATABASE_URL`), and `time.process_time()`
is read around each loop. So the figures are this process's CPU only: middleware, routing,
FastAPI, token check (cached), psycopg's client side, metrics; not PostgreSQL's.

Each variant runs in its own interpreter, because prometheus-client chooses between in-memory
values and multiprocess (mmap) files when it is first imported:
- `off`: METRICS_ENABLED unset (what the service does by default);
- `on`: METRICS_ENABLED=true, one process (in-memory values: `todo-api serve --workers 1`);
- `on-multiprocess`: the same with PROMETHEUS_MULTIPROC_DIR set (`--workers N`).
The variants alternate round by round, so drift of a busy machine hits all of them alike; the
median of the rounds is reported, with cProfile's function calls per request (deterministic,
the steadier A/B measure). Server-Timing is always on; its share is measured on its own: the
exact operations one request performs, timed in a loop.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make `bench` and `todo_api` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bench import database

SECRET = "bench-secret-" + "b" * 40
VARIANTS = ("off", "on", "on-multiprocess")
SCENARIOS = ("get", "list", "healthz", "unauthenticated")


def _scope(path: str, query: bytes, token: str | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _requests(
    app: Any, scenario: str, token: str, task_id: int
) -> Callable[[], Awaitable[list[int]]]:
    path, query, bearer = {
        "get": (f"/api/tasks/{task_id}", b"", token),
        "list": ("/api/tasks", b"limit=50", token),
        "healthz": ("/healthz", b"", None),
        "unauthenticated": ("/api/tasks", b"", None),
    }[scenario]

    async def one() -> list[int]:
        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(_scope(path, query, bearer), _receive, send)
        return statuses

    return one


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    """One variant, in this interpreter: CPU µs and Python calls per request, per scenario."""
    from pydantic import SecretStr

    from todo_api.config import Settings
    from todo_api.main import create_app
    from todo_api.security.minting import mint_token

    settings = Settings(
        database_url=SecretStr(args.database_url),
        better_auth_secret=SecretStr(SECRET),
        metrics_enabled=args.variant != "off",
        log_level="WARNING",
    )
    app = create_app(settings)
    user = database.light_user_id(1)
    token = mint_token(SecretStr(SECRET), user, ttl_seconds=3600)
    result: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        for scenario in args.scenarios:
            one = _requests(app, scenario, token, args.task_id)
            for _ in range(200):  # warm: token cache, prepared statements, label children
                statuses = await one()
            expected = 401 if scenario == "unauthenticated" else 200
            if statuses != [expected]:
                raise RuntimeError(f"{scenario}: answered {statuses}")
            started = time.process_time()
            for _ in range(args.requests):
                await one()
            cpu_us = (time.process_time() - started) / args.requests * 1e6
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(100):
                await one()
            profile.disable()
            calls = pstats.Stats(profile).total_calls / 100  # type: ignore[attr-defined]
            result[scenario] = {"cpu_us": cpu_us, "calls": calls}
        metrics = app.state.metrics
        if metrics is not None:
            result["observe_us"] = _observe_cost(metrics)
    return result


def _observe_cost(metrics: Any, loops: int = 100_000) -> float:
    """µs of one `Metrics.observe` (label children cached), as EdgeMiddleware makes it."""
    from types import SimpleNamespace

    route = SimpleNamespace(path_format="/api/tasks/{task_id}")
    scope = {"route": route}
    return _fastest(lambda: metrics.observe(scope, "GET", 200, 1_234_567), loops)


def _fastest(call: Callable[[], object], loops: int, repeat: int = 5) -> float:
    """µs per call, the fastest of `repeat` loops (the others were disturbed, not slower)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(loops):
            call()
        best = min(best, time.process_time() - started)
    return best / loops * 1e6


def _server_timing_cost(loops: int = 100_000) -> float:
    """µs of the Server-Timing work one data request does (start, both shares, the header)."""
    from time import perf_counter_ns

    from todo_api.timing import RequestTiming, add_auth_time, add_db_time, timing_var

    def one_request() -> None:
        timing = RequestTiming()
        token = timing_var.set(timing)
        add_auth_time(perf_counter_ns())
        add_db_time(perf_counter_ns())
        timing.header()
        timing_var.reset(token)

    return _fastest(one_request, loops)


def _run_child(variant: str, url: str, task_id: int, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with tempfile.TemporaryDirectory(prefix="todo-api-inprocess-") as tmp:
        if variant == "on-multiprocess":
            env["PROMETHEUS_MULTIPROC_DIR"] = tmp
        command = [
            sys.executable, __file__, "--child", "--variant", variant, "--database-url", url,
            "--task-id", str(task_id), "--requests", str(args.requests),
            "--scenarios", ",".join(args.scenarios),
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="per scenario and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--task-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.scenarios = args.scenarios.split(",")
    if args.child:
        import uvloop

        print(json.dumps(uvloop.run(_child(args))))
        return
    # Stopped early: still stop the embedded PostgreSQL and remove its directory.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    external = os.environ.get("BENCH_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="todo-api-inprocess-") as tmp:
        embedded = None
        if external:
            admin_url = external
        else:
            from tests.support.postgres import ThrowawayEmbeddedPostgres

            embedded = ThrowawayEmbeddedPostgres(Path(tmp) / "postgres")
            admin_url = embedded.start()
        try:
            db = database.create(admin_url)
            try:
                seeded = database.seed(db, users=10, tasks_per_user=100, heavy_tasks=1)
                rounds: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
                for number in range(args.rounds):
                    for variant in VARIANTS:
                        rounds[variant].append(
                            _run_child(variant, db.login_url, seeded.first_ids[0], args)
                        )
                    print(f"round {number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
            finally:
                database.drop(admin_url, db)
        finally:
            if embedded is not None:
                embedded.stop()
    _report(rounds, args, _server_timing_cost())


def _report(rounds: dict[str, list[dict[str, Any]]], args: argparse.Namespace, st: float) -> None:
    print(f"CPU µs per request: median (fastest) of {args.rounds} rounds x {args.requests}")
    print(f"{'scenario':<16}" + "".join(f"{v:>18}" for v in VARIANTS) + f"{'on - off':>10}")
    for scenario in args.scenarios:
        figures = {v: [r[scenario]["cpu_us"] for r in rounds[v]] for v in VARIANTS}
        median = {v: statistics.median(figures[v]) for v in VARIANTS}
        cells = "".join(f"{median[v]:>9.1f} ({min(figures[v]):>6.1f})" for v in VARIANTS)
        print(f"{scenario:<16}{cells}{median['on'] - median['off']:>+10.1f}")
    print("Python function calls per request (cProfile):")
    for scenario in args.scenarios:
        calls = "".join(f"{rounds[v][0][scenario]['calls']:>18.0f}" for v in VARIANTS)
        print(f"{scenario:<16}{calls}")
    for variant in VARIANTS[1:]:
        observe = min(r["observe_us"] for r in rounds[variant])
        print(f"Metrics.observe alone ({variant}): {observe:.2f} µs")
    print(f"Server-Timing work of one data request, alone: {st:.2f} µs")


if __name__ == "__main__":
    main()
