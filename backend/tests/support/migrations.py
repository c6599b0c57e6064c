"""Databases at a chosen point of the migration chain, for the tests of one migration."""

from __future__ import annotations

from yoyo import get_backend, read_migrations

from tests.support.databases import create_scratch_database
from todo_api import migrations


def apply_until(url: str, stop_before: str) -> None:
    """Apply every migration before `stop_before`, and none from it on."""
    backend = get_backend("postgresql+psycopg://" + url.partition("://")[2])
    try:
        everything = read_migrations(str(migrations.sql_dir()))
        ids = [m.id for m in everything]
        earlier = everything.filter(lambda m: ids.index(m.id) < ids.index(stop_before))
        with backend.lock():
            backend.apply_migrations(backend.to_apply(earlier))
    finally:
        backend.connection.close()


def database_before(admin_url: str, migration: str, *, prefix: str) -> str:
    """A new database (as the login role) migrated up to just before `migration`."""
    url = create_scratch_database(admin_url, prefix=prefix)
    apply_until(url, migration)
    assert migration in migrations.pending(url)
    return url


def roll_back_through(url: str, migration: str) -> None:
    """Roll back one at a time, newest first, up to and including `migration`."""
    while migration not in migrations.pending(url):
        rolled_back = migrations.rollback(url)
        assert rolled_back, f"{migration} was never rolled back"
