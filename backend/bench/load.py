"""Load over loopback with wrk: one Lua script that rotates random users' tokens.

Each scenario is a wrk run of the same script with the scenario's name as its argument; the
script's `done` hook prints one JSON line with the counts and latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

WRK_MISSING = (
    "wrk is not installed: the benchmark drives its load with wrk.\n"
    "  Debian/Ubuntu: apt-get install -y wrk    macOS: brew install wrk\n"
    "  (or rerun with --install-wrk to let the benchmark run apt-get for you)"
)

# Scenario name -> what it requests. `rand` picks a light user (token + a task of theirs).
SCENARIOS = {
    "ceiling": "GET /ceiling (JWT verify only, fixed body)",
    "list": "GET /api/tasks?limit=50, random light user",
    "get": "GET /api/tasks/{id}, random light user's task",
    "create": "POST /api/tasks, random light user",
    "toggle": "PATCH /api/tasks/{id}/complete, random light user's task",
    "me": "GET /api/users/me, random light user",
    "heavy": "GET /api/tasks?limit=50, the user with the most tasks",
    "light": "GET /api/tasks?limit=50, one light user",
    "healthz": "GET /healthz (the API's middleware and routing, no token, no database)",
}

_LUA = """
local tokens = {%(tokens)s}
local first_ids = {%(first_ids)s}
local per_user = %(per_user)d
local heavy_token = "%(heavy_token)s"
local scenario
local json_headers = {["Content-Type"] = "application/json"}

function init(args)
  scenario = args[1]
  math.randomseed(os.time())
end

local function pick()
  local n = math.random(#tokens)
  return n, "Bearer " .. tokens[n]
end

local function a_task(n)
  return first_ids[n] + math.random(per_user) - 1
end

function request()
  if scenario == "heavy" then
    return wrk.format("GET", "/api/tasks?limit=50", {Authorization = "Bearer " .. heavy_token})
  elseif scenario == "light" then
    return wrk.format("GET", "/api/tasks?limit=50", {Authorization = "Bearer " .. tokens[1]})
  end
  if scenario == "healthz" then
    return wrk.format("GET", "/healthz")
  end
  local n, auth = pick()
  if scenario == "ceiling" then
    return wrk.format("GET", "/ceiling", {Authorization = auth})
  elseif scenario == "list" then
    return wrk.format("GET", "/api/tasks?limit=50", {Authorization = auth})
  elseif scenario == "get" then
    return wrk.format("GET", "/api/tasks/" .. a_task(n), {Authorization = auth})
  elseif scenario == "me" then
    return wrk.format("GET", "/api/users/me", {Authorization = auth})
  elseif scenario == "create" then
    json_headers["Authorization"] = auth
    return wrk.format("POST", "/api/tasks", json_headers, '{"title": "Benchmark task"}')
  elseif scenario == "toggle" then
    return wrk.format("PATCH", "/api/tasks/" .. a_task(n) .. "/complete", {Authorization = auth})
  end
  error("unknown scenario " .. tostring(scenario))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"mean_us": %%.1f, "connect_errors": %%d, "read_errors": %%d, "write_errors": %%d, ' ..
    '"non_2xx": %%d, "timeouts": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class LoadResult:
    scenario: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect/read/write errors, timeouts and non-2xx responses

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def write_script(
    path: Path, tokens: Sequence[str], first_ids: Sequence[int], per_user: int, heavy_token: str
) -> Path:
    path.write_text(
        _LUA
        % {
            "tokens": ",".join(f'"{token}"' for token in tokens),
            "first_ids": ",".join(str(first) for first in first_ids),
            "per_user": per_user,
            "heavy_token": heavy_token,
        },
        encoding="utf-8",
    )
    return path


async def run_wrk(
    script: Path,
    base_url: str,
    scenario: str,
    *,
    seconds: float,
    connections: int,
    pin: Sequence[str] = (),
) -> LoadResult:
    command = [
        *pin,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        base_url,
        "--",
        scenario,
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCH-RESULT "):
            data = json.loads(line.removeprefix("BENCH-RESULT "))
            break
    else:
        raise RuntimeError(f"wrk printed no result for {scenario}:\n{text}")
    errors = sum(
        data[key]
        for key in ("connect_errors", "read_errors", "write_errors", "non_2xx", "timeouts")
    )
    return LoadResult(
        scenario=scenario,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=int(errors),
    )
