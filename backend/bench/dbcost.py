"""What row-level security costs at the database: the service's own list statement, run by pgbench
as `todo_app` (policies apply) and as a superuser (policies bypassed), prepared, in a pipelined
BEGIN / set_config / statement / COMMIT (the service sends one simple-protocol string instead;
the statement and its plan are the same); EXPLAIN ANALYZE of both explains the difference.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.database import HEAVY_USER_KEY
from todo_api.services.task_service import LIST_STATEMENTS, SortKey, SortOrder

FIRST_PAGE = LIST_STATEMENTS[SortKey("created"), SortOrder("desc"), False]
PAGE_SIZE = 50

_SCRIPT = """\\set n random(1, {users})
\\startpipeline
begin;
select set_config('role', {role}, true), set_config('app.user_id', {user}, true);
{statement};
commit;
\\endpipeline
"""

_ROLES = {"rls": "'todo_app'", "bypass": "session_user::text"}


@dataclass(frozen=True)
class PgbenchRun:
    tps: float
    latency_ms: float
    transactions: int


def _placeholders() -> set[str]:
    return set(re.findall(r"%\((\w+)\)s", FIRST_PAGE.as_string()))


def first_page_params(user_id: str) -> dict[str, Any]:
    """What the service sends for an unfiltered first page: the user, the limit, NULL for the rest
    (filters, cursor)."""
    params: dict[str, Any] = dict.fromkeys(_placeholders())
    params.update(user_id=user_id, limit=PAGE_SIZE)
    return params


def _pgbench_statement(user_sql: str) -> str:
    """The service's statement with pgbench's values in place of psycopg's placeholders."""
    values = dict.fromkeys(_placeholders(), "NULL")
    values.update(user_id=user_sql, limit=str(PAGE_SIZE))
    # pgbench reads every :word as a variable, also inside literals ('HH24:MI:SS'); chr(58) is
    # immutable, so the planner folds the spelled-out colon back into the same constant.
    text = re.sub(r"(?<!:):(?=[A-Za-z_])", "' || chr(58) || '", FIRST_PAGE.as_string())
    return re.sub(r"%\((\w+)\)s", lambda match: values[match.group(1)], text)


def write_scripts(directory: Path, users: int) -> dict[tuple[str, str], Path]:
    users_sql = {"light": "md5('bench-user-' || :n)", "heavy": f"md5('{HEAVY_USER_KEY}')"}
    scripts = {}
    for variant, role in _ROLES.items():
        for who, user_sql in users_sql.items():
            path = directory / f"list-{variant}-{who}.sql"
            path.write_text(
                _SCRIPT.format(
                    users=users, role=role, user=user_sql, statement=_pgbench_statement(user_sql)
                ),
                encoding="utf-8",
            )
            scripts[variant, who] = path
    return scripts


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
        *pin, pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", "1",
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
    with psycopg.connect(admin_url) as conn:
        if variant == "rls":
            conn.execute("select set_config('role', 'todo_app', true)")
        conn.execute("select set_config('app.user_id', %s, true)", (user_id,))
        statement = sql.SQL("explain (analyze, buffers, costs off) ") + FIRST_PAGE
        rows = conn.execute(statement, params).fetchall()
        conn.rollback()
    return "\n".join(str(row[0]) for row in rows)
