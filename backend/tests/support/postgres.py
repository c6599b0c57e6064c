"""Throwaway PostgreSQL clusters for the tests: the embedded 18, or any installed major.

`TEST_PG_BIN` names a directory holding `initdb`, `pg_ctl` and `postgres` of some installed
PostgreSQL (Debian: `/usr/lib/postgresql/15/bin`); the suite then runs on a fresh cluster made
with those binaries, so CI can prove the oldest supported major as well as the embedded newest.
Both kinds offer the same `Cluster` interface, so the fault tests can stop and restart either.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import psycopg
from psycopg import sql

from tests.support.network import free_port
from todo_api.embedded import EmbeddedPostgres

PG_BIN_SETTING = "TEST_PG_BIN"
SUPERUSER = "postgres"
# Throwaway clusters: durability buys nothing and costs half of every commit.
FAST_UNSAFE_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
# Debian's postgres package creates this user; pgserver's user would do as well.
UNPRIVILEGED_USERS = ("postgres", "pgserver", "nobody")


class Cluster(Protocol):
    """A server the tests own: `start()` (first time or again) returns a superuser URL."""

    def start(self) -> str: ...

    def stop(self) -> object: ...


@dataclass(frozen=True)
class PostgresServer:
    """A running server: a superuser URL, and how to stop/start it (fault tests).

    `cluster` is set when the session owns the server (TEST_PG_BIN or embedded); `kind` says
    which: "external", "testcontainers", "pg_bin" or "embedded".
    """

    admin_url: str
    kind: str
    cluster: Cluster | None = None


def docker_answers() -> bool:
    """Does a Docker engine answer within 2 s (so testcontainers can start a server)?"""
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no usable engine
        return False


def configured_pg_bin() -> Path | None:
    """The binaries named by TEST_PG_BIN, checked, or None for the default (embedded 18)."""
    configured = os.environ.get(PG_BIN_SETTING)
    if not configured:
        return None
    bin_dir = Path(configured)
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (bin_dir / name).is_file()]
    if missing:
        raise RuntimeError(f"{PG_BIN_SETTING}={configured} has no {', '.join(missing)}")
    return bin_dir


@contextmanager
def running_cluster() -> Iterator[tuple[Cluster, str]]:
    """A fresh cluster of the configured kind (TEST_PG_BIN, else the embedded 18), started:
    yields it and its superuser URL; stopped and deleted afterwards."""
    bin_dir = configured_pg_bin()
    if bin_dir is None:
        with tempfile.TemporaryDirectory(prefix="todo-api-pg-") as tmp:
            embedded = ThrowawayEmbeddedPostgres(Path(tmp) / "data")
            try:
                yield embedded, embedded.start()
            finally:
                embedded.stop()
        return
    cluster = PgBinCluster(bin_dir)
    try:
        yield cluster, cluster.start()
    finally:
        cluster.remove()


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the postmaster serving `data_dir` (postmaster.pid's first line), if it runs."""
    try:
        return int((data_dir / "postmaster.pid").read_text(encoding="utf-8").split("\n")[0])
    except (OSError, ValueError):
        return None


class ThrowawayEmbeddedPostgres(EmbeddedPostgres):
    """The dev server's embedded PostgreSQL as the tests and the benchmark use it: fast and
    unsafe unless `durable`, and restartable within one process."""

    def __init__(self, data_dir: Path, *, durable: bool = False) -> None:
        super().__init__(data_dir)
        self.durable = durable

    def start(self, database: str = "postgres") -> str:
        admin_url = super().start(database)
        if not self.durable:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                for name, value in FAST_UNSAFE_SETTINGS.items():
                    conn.execute(
                        sql.SQL("alter system set {} = {}").format(
                            sql.Identifier(name), sql.Literal(value)
                        )
                    )
                conn.execute("select pg_reload_conf()")
        return admin_url

    def stop(self) -> bool:
        server = self.server
        stopped = super().stop()
        if stopped:
            # pgserver caches one handle per data directory; drop it so a later start() in this
            # process starts the cluster again instead of returning the stopped handle.
            type(server)._instances.pop(self.data_dir, None)
        return stopped


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs the server: nobody else when we are not root (Postgres refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"running as root, and none of the users {UNPRIVILEGED_USERS} exists")


class PgBinCluster:
    """A cluster made by `initdb` from `bin_dir`, in its own temporary folder, on 127.0.0.1.

    As root, the folder is handed to an unprivileged user and every command runs as that user.
    The port is chosen once, so a restarted server answers at the same URL (the fault tests keep
    their connection pools). Password authentication over TCP, as a hosted Postgres would ask;
    no Unix socket, so nothing is written outside the folder.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="todo-api-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self._user = _unprivileged_user()
        self._initialized = False
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)

    @property
    def admin_url(self) -> str:
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/postgres"
        )

    def _run(self, *command: str) -> None:
        if self._user is not None:
            command = ("runuser", "-u", self._user.pw_name, "--", *command)
        result = subprocess.run(  # noqa: S603 - the configured Postgres binaries, our arguments
            command, capture_output=True, text=True, timeout=120, check=False, cwd=self.root
        )
        if result.returncode != 0:
            log = ""
            if self.log_file.exists():
                log = self.log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{log}"
            )

    def _initdb(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self._user is not None:
            os.chown(password_file, self._user.pw_uid, self._user.pw_gid)
        # UTF8 + C locale: the same on every machine, and what the title constraint's chr() of
        # non-ASCII code points needs.
        self._run(
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--pwfile",
            str(password_file),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        password_file.unlink()
        settings = {
            **FAST_UNSAFE_SETTINGS,
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "''",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("".join(f"{key} = {value}\n" for key, value in settings.items()))
        self._initialized = True

    def start(self) -> str:
        if not self._initialized:
            self._initdb()
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "start",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_file),
            "--wait",
            "--timeout",
            "60",
        )
        return self.admin_url

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        # fast: roll back open transactions and close connections, as a crash or failover would.
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "stop",
            "--pgdata",
            str(self.data_dir),
            "--mode",
            "fast",
            "--wait",
        )

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
