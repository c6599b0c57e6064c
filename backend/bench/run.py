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

This module runs the phases in that order; each phase lives in its own module (round_trips,
throughput, dbcost), the processes in servers, the CPU accounting in cpu, the text in report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql
from pydantic import SecretStr

from bench import database, dbcost, load
from bench.report import Report, judge, render
from bench.round_trips import count_round_trips
from bench.servers import SECRET, Layout, describe_machine, plan_cores
from bench.throughput import measure_throughput
from tests.support.postgres import ThrowawayEmbeddedPostgres, postmaster_pid
from todo_api.security.minting import mint_token

BUSY_LOAD_AVERAGE = 0.5


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
            "duration_s": args.duration, "rounds": args.rounds,
            "server": f"{args.server_loop}+{args.server_http}",
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
            server_admin_url = start_embedded(embedded, args.shared_buffers)
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
    postgres = postmaster_pid(embedded.data_dir) if embedded else None

    if args.round_trip_requests > 0:
        report.round_trips = await count_round_trips(args, layout, workdir, db)

    if any(s != "ceiling" for s in args.scenarios):
        measured = await measure_throughput(
            args, layout, workdir, db.login_url, script, tokens[0], postgres
        )
        report.ceiling_runs = measured.ceiling_runs
        report.throughput.update(measured.api)
        report.reference.update(measured.reference)
        report.reference_ratios.update(measured.reference_ratios)
        report.heavy_to_light = measured.heavy_to_light
        report.peak_rss_mb = measured.peak_rss_mb
        report.ceiling_peak_rss_mb = measured.ceiling_peak_rss_mb
        report.reference_peak_rss_mb = measured.reference_peak_rss_mb

    if args.pgbench_seconds > 0:
        pgbench = dbcost.pgbench_binary(embedded is not None)
        if pgbench is None:
            print("pgbench not found: skipping the RLS measurement", file=sys.stderr)
            return
        report.rls = await dbcost.measure_rls(args, layout, workdir, db, pgbench, postgres)
        report.explain = dbcost.explain_both(db.admin_url)


def start_embedded(embedded: ThrowawayEmbeddedPostgres, shared_buffers: str) -> str:
    """Start the embedded server with `shared_buffers` (a restart: it is read at start-up only).

    As in production, the buffer cache holds the working set: the seeded database is ~195 MB
    (tasks 74 MB, its six indexes ~120 MB), more than PostgreSQL's default of 128 MB, which
    would make the benchmark measure pages read back from the kernel's cache and their checksums
    verified (`pg_checksum_page`, `memcpy`) instead of the service's statements.
    """
    admin_url = embedded.start()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("alter system set shared_buffers = {}").format(sql.Literal(shared_buffers))
        )
    embedded.stop()
    return embedded.start()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000, help="light users (default 1000)")
    parser.add_argument("--tasks-per-user", type=int, default=100, help="default 100")
    parser.add_argument("--heavy-tasks", type=int, default=100_000, help="default 100000")
    parser.add_argument("--duration", type=float, default=2, help="seconds per round")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of wrk before each round")
    parser.add_argument(
        "--rounds", type=int, default=9,
        help="rounds per scenario and server, reference and API back to back in each; the median"
        " of the rounds' ratios counts",
    )  # fmt: skip
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
    parser.add_argument(
        "--shared-buffers", default="1GB",
        help="shared_buffers of the embedded PostgreSQL (default 1GB: it holds the seeded data,"
        " PostgreSQL's own default of 128MB does not)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--install-wrk", action="store_true", help="apt-get install wrk if missing")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
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
