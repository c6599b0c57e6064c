"""uvicorn with a graceful shutdown on SIGTERM, in one process or with `--workers N`.

In each serving process, on SIGTERM (or SIGINT):
1. the drain starts at once (todo_api.shutdown): /readyz answers 503 and every response carries
   `Connection: close`;
2. after `SHUTDOWN_DELAY_SECONDS` (0 by default) uvicorn closes the listener, so new connections
   are refused, and closes idle keep-alive connections;
3. requests in flight get until the end of `SHUTDOWN_GRACE_SECONDS`, less a margin for closing the
   pool; any still running then is cancelled and answered 503 (in doubt), and the process exits.

With `--workers N` the parent holds a copy of the listening socket too, and a socket listens
while any process holds it: the parent forwards the signal, closes its copy when the delay is
over, and kills a worker that is still alive when the grace period ends.

With metrics on and `--workers N`, the parent makes a fresh directory for prometheus-client's
multiprocess mode before the workers start (they inherit `PROMETHEUS_MULTIPROC_DIR`), marks a
worker that exited as dead (its pool gauges leave the sums; its counts stay), and removes the
directory when it exits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from todo_api.shutdown import drain

log = logging.getLogger("uvicorn.error")

# Time kept back from the grace period for what follows the drain: the parent's signal
# forwarding (up to 0.5 s), answering cancelled requests, closing the pool, the interpreter's exit.
CLOSING_MARGIN_SECONDS = 1.5
# How long requests cancelled at the end of the drain get to write their 503.
CANCELLED_ANSWER_SECONDS = 0.5


@dataclass(frozen=True)
class ShutdownPlan:
    grace_seconds: float
    delay_seconds: float

    @property
    def drain_timeout(self) -> int:
        """uvicorn's `timeout_graceful_shutdown`: how long in-flight requests may still run."""
        return max(0, math.floor(self.grace_seconds - self.delay_seconds - CLOSING_MARGIN_SECONDS))


class GracefulServer(uvicorn.Server):
    """uvicorn's server, draining on SIGTERM before it stops listening."""

    def __init__(self, config: uvicorn.Config, plan: ShutdownPlan) -> None:
        super().__init__(config)
        self.plan = plan

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        drain.start()
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if should_exit and drain.active and not self.force_exit:
            # Keep listening (and answering /readyz with 503) until the load balancer has seen it.
            return drain.elapsed() >= self.plan.delay_seconds
        return should_exit

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        # uvicorn cancels the requests still running when the drain times out, but does not wait
        # for them; its re-raised SIGTERM would end the process before they answer 503.
        cancelled = list(self.server_state.tasks)
        if cancelled:
            await asyncio.wait(cancelled, timeout=CANCELLED_ANSWER_SECONDS)


class GracefulWorker(Process):
    """A `--workers` child running the graceful server (created in the child, after spawn)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], plan: ShutdownPlan):
        self.plan = plan
        super().__init__(config, sockets)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = GracefulServer(self.config, self.plan)
        return self._server


class GracefulSupervisor(Multiprocess):
    """uvicorn's `--workers` parent, with graceful workers and a bounded, ordered shutdown.

    uvicorn creates workers by its module's own `Process` class in four places; the two used
    here (start and replacing a dead worker) are overridden, the two that resize or reload on
    SIGHUP/SIGTTIN are refused rather than starting workers without a graceful shutdown.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], plan: ShutdownPlan):
        super().__init__(config, sockets)
        self.plan = plan

    def _worker(self) -> GracefulWorker:
        worker = GracefulWorker(self.config, self.sockets, self.plan)
        worker.start()
        return worker

    def init_processes(self) -> None:
        self.processes = [self._worker() for _ in range(self.processes_num)]

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung or gone
            process.join()
            _worker_exited(process.pid)
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving: every replacement would fail the same way.
                log.error("Child process [%s] failed to start, stopping.", process.pid)
                self.should_exit.set()
                return
            log.info("Child process [%s] died", process.pid)
            self.processes[index] = self._worker()

    def handle_hup(self) -> None:
        log.warning("SIGHUP ignored: restart the service to reload it")

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: set --workers and restart the service to resize it")

    def run(self) -> None:
        log.info("Started parent process [%d]", os.getpid())
        self.init_processes()
        while not self.should_exit.wait(0.5):
            self.handle_signals()
            self.keep_subprocess_alive()
        started = time.monotonic()
        self.terminate_all()
        # The workers keep listening through the delay; then the socket must close here too.
        time.sleep(max(0.0, self.plan.delay_seconds - (time.monotonic() - started)))
        for sock in self.sockets:
            sock.close()
        for process in self.processes:
            process.process.join(max(0.0, self.plan.grace_seconds - (time.monotonic() - started)))
            if process.process.is_alive():
                log.error("Child process [%s] still running after the grace period", process.pid)
                process.process.kill()
                process.process.join()
        log.info("Stopping parent process [%d]", os.getpid())


# prometheus-client reads it when first imported: it must be set (or not) before the app loads.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_directory(shared: bool) -> Iterator[None]:
    """`PROMETHEUS_MULTIPROC_DIR` for this run.

    Shared (metrics on, several workers): a fresh directory, removed at exit, so no figure of an
    earlier run is ever added in. Otherwise none, even if the environment named one: a single
    process keeps its metrics in memory.
    """
    os.environ.pop(METRICS_DIR_ENV, None)
    if not shared:
        yield
        return
    path = tempfile.mkdtemp(prefix="todo-api-metrics-")
    os.environ[METRICS_DIR_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(METRICS_DIR_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def _worker_exited(pid: int | None) -> None:
    path = os.environ.get(METRICS_DIR_ENV)
    if path and pid is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def run(
    app: str,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    plan: ShutdownPlan,
    metrics: bool = False,
) -> None:
    """Serve the app factory `app` ("module:function") until SIGTERM or SIGINT."""
    with metrics_directory(metrics and workers > 1):
        _run(app, host=host, port=port, workers=workers, log_level=log_level, plan=plan)


def _run(
    app: str, *, host: str, port: int, workers: int, log_level: str, plan: ShutdownPlan
) -> None:
    config = uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_config=None,
        log_level=log_level.lower(),
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=plan.drain_timeout,
    )
    if workers > 1:
        GracefulSupervisor(config, [config.bind_socket()], plan).run()
        return
    server = GracefulServer(config, plan)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT once it has shut down: a clean stop
        return
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
