"""yoyo migrations from `sql/`: apply, roll back, report. The tests migrate through this too."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

from yoyo import get_backend, read_migrations

_PACKAGE_DIR = Path(__file__).resolve().parent


def sql_dir() -> Path:
    """Where the migrations live: TODO_API_SQL_DIR, else the repository's `sql/`."""
    configured = os.environ.get("TODO_API_SQL_DIR")
    if configured:
        return Path(configured)
    for parent in _PACKAGE_DIR.parents:
        candidate = parent / "sql"
        if (candidate / "0001_request_role.sql").is_file():
            return candidate
    raise FileNotFoundError("cannot find the sql/ migrations; set TODO_API_SQL_DIR")


def _yoyo_url(database_url: str) -> str:
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


@dataclass(frozen=True)
class MigrationStatus:
    id: str
    applied: bool


@dataclass(frozen=True)
class MigrationFile:
    """A migration on disk, and the hash yoyo records in `_yoyo_migration` once it is applied
    (yoyo derives it from the id alone, so editing a file's content does not change it)."""

    id: str
    hash: str


# What yoyo's own backend reads (get_applied_migration_hashes), for callers with a connection of
# their own, such as /readyz on the service's pool.
APPLIED_HASHES_QUERY: LiteralString = "select migration_hash from _yoyo_migration"


def statuses(
    files: Iterable[MigrationFile], applied_hashes: Iterable[str]
) -> list[MigrationStatus]:
    """The one meaning of "applied": the migration's hash is in `_yoyo_migration`."""
    applied = set(applied_hashes)
    return [MigrationStatus(m.id, m.hash in applied) for m in files]


def unapplied(files: Iterable[MigrationFile], applied_hashes: Iterable[str]) -> list[str]:
    """Ids of the migrations on disk not yet applied: empty means "at head"."""
    return [m.id for m in statuses(files, applied_hashes) if not m.applied]


def on_disk() -> list[MigrationFile]:
    """The migrations in `sql_dir()`, in order, without touching a database."""
    return [MigrationFile(m.id, m.hash) for m in read_migrations(str(sql_dir()))]


@contextmanager
def _backend_and_migrations(database_url: str) -> Iterator[tuple[Any, Any]]:
    """yoyo's backend and the migrations on disk; the backend's connection is closed after."""
    backend = get_backend(_yoyo_url(database_url))
    try:
        yield backend, read_migrations(str(sql_dir()))
    finally:
        backend.connection.close()


def apply(database_url: str) -> list[str]:
    """Apply every pending migration; return the ids applied."""
    with _backend_and_migrations(database_url) as (backend, migrations), backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def rollback(database_url: str, *, everything: bool = False) -> list[str]:
    """Roll back the latest applied migration (or all of them); return the ids rolled back."""
    with _backend_and_migrations(database_url) as (backend, migrations), backend.lock():
        to_rollback = backend.to_rollback(migrations)
        if not everything:
            to_rollback = to_rollback[:1]
        backend.rollback_migrations(to_rollback)
    return [m.id for m in to_rollback]


def status(database_url: str) -> list[MigrationStatus]:
    """Every known migration, in order, with whether it is applied."""
    with _backend_and_migrations(database_url) as (backend, migrations):
        files = [MigrationFile(m.id, m.hash) for m in migrations]
        return statuses(files, backend.get_applied_migration_hashes())


def pending(database_url: str) -> list[str]:
    """Ids of migrations not yet applied (empty when the database is at head)."""
    return [m.id for m in status(database_url) if not m.applied]
