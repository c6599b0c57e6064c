"""Running the `todo-api` command as a real subprocess, talking to it over loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from tests.support.network import free_port
from tests.support.postgres import postmaster_pid
from tests.support.tokens import TEST_SECRET
from todo_api.config import Settings

TODO_API = str(Path(sys.executable).with_name("todo-api"))
# Generous: a first `todo-api dev` runs initdb; a loaded CI runner may be slow.
START_TIMEOUT = 60.0


@contextmanager
def port_held(port: int) -> Iterator[None]:
    """Listen on `port`, so a server that got as far as binding it would fail loudly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        yield


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any todo-api setting, plus `settings`."""
    names = {name.upper() for name in Settings.model_fields} | {"BETTER_AUTH_SECRET_FILE"}
    env = {key: value for key, value in os.environ.items() if key not in names}
    env.update(settings)
    return env


def serve_env(database_url: str, **extra: str) -> dict[str, str]:
    """What `todo-api serve` needs against `database_url` (quiet logs), plus `extra`."""
    settings = {"DATABASE_URL": database_url, "BETTER_AUTH_SECRET": TEST_SECRET}
    return clean_env(**{**settings, "LOG_LEVEL": "WARNING", **extra})


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `todo-api ARGS` to completion."""
    return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [TODO_API, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


class Server:
    """`todo-api dev|serve ...` running in the background, its output collected as it comes."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str], port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(  # noqa: S603 - our own console script
            [TODO_API, *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        streams = ((self.process.stdout, self._stdout), (self.process.stderr, self._stderr))
        for stream, sink in streams:
            threading.Thread(target=_drain, args=(stream, sink), daemon=True).start()

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_until_healthy(self, timeout: float = START_TIMEOUT) -> float:
        """Poll /healthz until it answers 200; return the seconds it took since launch."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"exited with {self.process.returncode} before serving:\n{self.stderr}"
                )
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not healthy after {timeout} s:\n{self.stdout}\n{self.stderr}")

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.base_url}{path}", headers=headers, timeout=10.0)

    def stop(self, signum: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send `signum` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"did not stop within {timeout} s after {signum.name}") from None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_serve(cwd: Path, database_url: str, *, workers: int = 1, **settings: str) -> Server:
    """`todo-api serve --workers N` on a free loopback port, once it answers /healthz."""
    port = free_port()
    args = ("serve", "--port", str(port), "--workers", str(workers))
    server = Server(*args, cwd=cwd, env=serve_env(database_url, **settings), port=port)
    try:
        server.wait_until_healthy()
    except BaseException:
        if server.process.poll() is None:
            server.kill()
        raise
    return server


def _drain(stream: object, sink: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line)


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """The postmaster serving `data_dir` and its children, while it runs."""
    pid = postmaster_pid(data_dir)
    if pid is None:
        return []
    try:
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` still running (zombies count as gone)."""
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            continue
    return running


def wait_gone(processes: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """Wait for `processes` to end; return the ones still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(processes)


def one_error_line(stderr: str) -> str:
    """The single line a refusing command prints; fails on tracebacks or extra lines."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("todo-api: "), stderr
    return lines[0]
