"""Scratch databases on a test (or benchmark) server, owned by a non-superuser login role."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

# The tests' login role: LOGIN, CREATEROLE, not a superuser (what production should use).
LOGIN_ROLE = "todo_login"
LOGIN_PASSWORD = "login-password-not-secret"


def url_for_database(admin_url: str, database: str) -> str:
    """The same server URL with another database name."""
    head, _, tail = admin_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{tail}" if tail else "")


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


def create_scratch_database(admin_url: str, prefix: str = "todo_test") -> str:
    """A new, empty database owned by the login role; returns its URL as the login role."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    return create_owned_database(admin_url, name, role=LOGIN_ROLE, password=LOGIN_PASSWORD)
