"""Process control: where each process runs (cores), and the servers under test as subprocesses:
the API, the FastAPI reference and the ceiling app."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.network import free_port

BACKEND_DIR = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "b" * 40  # a throwaway signing key for this run's tokens


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
