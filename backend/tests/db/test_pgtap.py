"""The pgTAP policy tests in sql/tests pass under pg_prove, as a DBA runs them, and catch leaks.

The tests that run pg_prove are marked `pgtap`: deselected (with a note) where pg_prove or the
server's pgTAP is missing, and mandatory with TODO_API_REQUIRE_PGTAP=1, as on CI's PostgreSQL 15
run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.support.databases import create_scratch_database, url_for_database
from tests.support.pgtap import INSTALL_HINT, pg_prove_binary
from tests.support.postgres import PostgresServer
from todo_api import migrations

SQL_TESTS = migrations.sql_dir() / "tests"


def _pg_prove(url: str, *files: Path) -> subprocess.CompletedProcess[str]:
    pg_prove = pg_prove_binary()
    if pg_prove is None:
        pytest.fail(f"pg_prove is not installed ({INSTALL_HINT})")
    return subprocess.run(  # noqa: S603 - pg_prove from PATH, on our own files
        [pg_prove, "-d", url, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def pgtap_database(postgres_server: PostgresServer) -> tuple[str, str]:
    """A fresh migrated database with the pgtap extension: (login-role URL, superuser URL)."""
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_pgtap")
    migrations.apply(url)
    admin_url = url_for_database(postgres_server.admin_url, conninfo_to_dict(url)["dbname"])
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "select exists (select from pg_available_extensions where name = 'pgtap')"
        ).fetchone()
        if not (row and row[0]):
            pytest.fail(f"the pgtap extension is not available on this server ({INSTALL_HINT})")
        conn.execute("create extension pgtap")
    return url, admin_url


def test_there_is_one_policy_test_file_per_user_data_table() -> None:
    names = {path.stem for path in SQL_TESTS.glob("*.sql")}
    assert {
        "tasks",
        "revoked_tokens",
        "user_token_revocations",
        "idempotency_keys",
        "rls_everywhere",
    } <= names


@pytest.mark.pgtap
def test_the_policy_tests_pass_as_the_migration_role_and_as_a_superuser(
    pgtap_database: tuple[str, str],
) -> None:
    files = sorted(SQL_TESTS.glob("*.sql"))
    for url in pgtap_database:
        result = _pg_prove(url, *files)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "All tests successful." in result.stdout
        assert f"Files={len(files)}," in result.stdout


@pytest.mark.pgtap
@pytest.mark.parametrize(
    ("breakage", "test_file", "failed_test"),
    [
        (
            "alter policy tasks_select on tasks using (true)",
            "tasks.sql",
            "alice sees her own tasks and no one else's",
        ),
        (
            "alter policy revoked_tokens_insert on revoked_tokens with check (true)",
            "revoked_tokens.sql",
            "alice cannot record a revocation for bob (WITH CHECK)",
        ),
        (
            "grant delete on user_token_revocations to todo_app",
            "user_token_revocations.sql",
            "a request may not DELETE a revoke-all marker, not even its own",
        ),
        (
            "alter table tasks no force row level security",
            "rls_everywhere.sql",
            "every table with a user_id column has row-level security enabled and forced",
        ),
        (
            "alter policy tasks_delete on tasks"
            " using (user_id = (select nullif(current_setting('app.user_id', true), '')))",
            "rls_everywhere.sql",
            "every policy of todo_app reads the user only as (select todo_current_user_id())",
        ),
        (
            "alter function todo_current_user_id() security definer",
            "rls_everywhere.sql",
            "todo_current_user_id() is not SECURITY DEFINER",
        ),
    ],
)
def test_the_policy_tests_fail_on_a_leaking_database(
    pgtap_database: tuple[str, str], breakage: str, test_file: str, failed_test: str
) -> None:
    login_url, _ = pgtap_database
    with psycopg.connect(login_url, autocommit=True) as conn:
        conn.execute(breakage)  # type: ignore[arg-type]
    result = _pg_prove(login_url, SQL_TESTS / test_file)
    assert result.returncode != 0
    # pg_prove names each failed test: `# Failed test 4: "alice sees ..."`.
    output = result.stdout + result.stderr
    assert f': "{failed_test}"' in output, output
