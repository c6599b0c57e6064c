"""`todo-api check`: a readable report, exit 0 on a safe database and 1 on an unsafe one."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support.databases import create_scratch_database
from tests.support.postgres import PostgresServer
from todo_api import migrations
from todo_api.cli import main
from todo_api.safety import ExpectedGrantsError, load_expected_grants, vulnerabilities_of


def _check(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    *options: str,
) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(SystemExit) as exit_info:
        main(["check", *options])
    return int(exit_info.value.code or 0), capsys.readouterr().out


def _check_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> tuple[int, dict[str, Any]]:
    code, out = _check(monkeypatch, capsys, url, "--format", "json")
    document: dict[str, Any] = json.loads(out)
    return code, document


def test_check_passes_a_migrated_database_and_names_everything(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _check(monkeypatch, capsys, database_url)
    assert code == 0, report
    for table in ("tasks", "revoked_tokens", "user_token_revocations", "idempotency_keys"):
        assert f"  {table}: rls_enabled=True rls_forced=True" in report
    for policy in ("tasks_select (select", "tasks_insert (insert", "tasks_update (update",
                   "tasks_delete (delete"):  # fmt: skip
        assert f"policy {policy}, to todo_app)" in report
    for attribute in ("superuser: False", "bypassrls: False", "can_login: False"):
        assert attribute in report
    assert "SAFE" in report
    assert "Migrations: at head" in report


@pytest.fixture
def scratch_url(postgres_server: PostgresServer) -> str:
    url = create_scratch_database(postgres_server.admin_url, prefix="todo_check")
    migrations.apply(url)
    return url


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        (
            "alter table tasks no force row level security",
            "tasks: row-level security is not force",
        ),
        (
            "alter table tasks disable row level security",
            "tasks: row-level security is not enabled",
        ),
        ("drop policy tasks_delete on tasks", "tasks: delete is granted to todo_app without"),
        (
            # A policy for another role does not cover the request role's commands.
            "drop policy tasks_delete on tasks;"
            " create policy other_delete on tasks for delete to todo_maintenance using (true)",
            "tasks: delete is granted to todo_app without",
        ),
    ],
)
def test_check_fails_a_database_where_rls_could_be_bypassed(
    scratch_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    breakage: str,
    problem: str,
) -> None:
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(breakage)  # type: ignore[arg-type]
    code, report = _check(monkeypatch, capsys, scratch_url)
    assert code == 1
    assert "UNSAFE" in report
    assert problem in report


def test_check_fails_when_the_request_role_can_bypass_rls(
    scratch_url: str,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Roles are cluster-wide: restore the attribute whatever happens.
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as admin:
        admin.execute("alter role todo_app bypassrls")
        try:
            code, report = _check(monkeypatch, capsys, scratch_url)
        finally:
            admin.execute("alter role todo_app nobypassrls")
    assert code == 1
    assert "role_bypassrls  role todo_app: has BYPASSRLS" in report
    assert "bypassrls: True" in report


def test_check_reports_an_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:pw@127.0.0.1:1/none")
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "database unreachable" in error
    assert "pw" not in error


def test_a_healthy_database_has_no_findings_and_the_json_report_says_so(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, text = _check(monkeypatch, capsys, database_url)
    assert "Findings (error 0, warning 0, info 0):\n  (none)" in text
    code, document = _check_json(monkeypatch, capsys, database_url)
    assert code == 0
    assert document["safe"] is True
    assert document["findings"] == []
    assert document["migrations"] == {"at_head": True, "pending": []}
    assert document["request_role"]["name"] == "todo_app"
    assert document["request_role"]["bypassrls"] is False
    tables = {table["name"]: table for table in document["tables"]}
    assert set(tables) == {"tasks", "revoked_tokens", "user_token_revocations", "idempotency_keys"}
    assert tables["revoked_tokens"]["grants"] == ["select", "insert", "update"]
    select_policy = next(p for p in tables["tasks"]["policies"] if p["name"] == "tasks_select")
    assert select_policy["command"] == "select"
    assert select_policy["roles"] == ["todo_app"]
    assert select_policy["using"] == (
        "(user_id = ( SELECT todo_current_user_id() AS todo_current_user_id))"
    )


_OWN_ROWS = "user_id = (select todo_current_user_id())"

# (what a careless migration did, the finding, its severity, the object it names)
FLAWS = [
    pytest.param(
        "create table notes (user_id text not null); create index on notes (user_id)",
        "rls_disabled", "error", "table notes", id="rls-disabled",
    ),
    pytest.param(
        "alter table tasks disable row level security",
        "policy_exists_rls_disabled", "error", "table tasks", id="policy-without-rls",
    ),
    pytest.param(
        "alter table tasks no force row level security",
        "rls_not_forced", "error", "table tasks", id="rls-not-forced",
    ),
    pytest.param(
        "create table audit_log (id int); alter table audit_log enable row level security",
        "rls_enabled_no_policy", "info", "table audit_log", id="rls-without-policy",
    ),
    pytest.param(
        "create policy tasks_select_all on tasks for select to todo_app using (true)",
        "policy_always_true", "error", "policy tasks_select_all on tasks", id="always-true",
    ),
    pytest.param(
        "create policy tasks_insert_any on tasks for insert to todo_app with check (true)",
        "policy_always_true", "error", "policy tasks_insert_any on tasks",
        id="always-true-check",
    ),
    pytest.param(
        f"drop policy tasks_select on tasks; create policy tasks_select on tasks for select"
        f" using ({_OWN_ROWS})",
        "policy_applies_to_public", "warning", "policy tasks_select on tasks", id="to-public",
    ),
    pytest.param(
        f"create policy tasks_select_again on tasks for select to todo_app using ({_OWN_ROWS})",
        "multiple_permissive_policies", "warning", "table tasks", id="overlapping-policies",
    ),
    pytest.param(
        # An ALL policy to PUBLIC overlaps the per-command policies to todo_app too.
        f"create policy tasks_everyone on tasks using ({_OWN_ROWS})",
        "multiple_permissive_policies", "warning", "table tasks", id="overlap-through-public",
    ),
    pytest.param(
        "drop policy tasks_delete on tasks; create policy tasks_delete on tasks for delete"
        " to todo_app using (user_id = nullif(current_setting('app.user_id', true), ''))",
        "policy_setting_read_per_row", "warning", "policy tasks_delete on tasks",
        id="setting-per-row",
    ),
    pytest.param(
        "drop policy tasks_delete on tasks; create policy tasks_delete on tasks for delete"
        " to todo_app using (user_id = (select current_setting('app.user_id', true)))",
        "policy_setting_without_nullif", "warning", "policy tasks_delete on tasks",
        id="setting-without-nullif",
    ),
    pytest.param(
        # The function is inlined: called for every row, it reads the setting for every row.
        "drop policy tasks_delete on tasks; create policy tasks_delete on tasks for delete"
        " to todo_app using (user_id = todo_current_user_id())",
        "policy_setting_read_per_row", "warning", "policy tasks_delete on tasks",
        id="function-per-row",
    ),
    pytest.param(
        "create or replace function todo_current_user_id() returns text language sql stable"
        " parallel safe as $$ select current_setting('app.user_id', true) $$",
        "policy_setting_without_nullif", "warning", "policy tasks_select on tasks",
        id="function-without-nullif",
    ),
    pytest.param(
        "alter function todo_current_user_id() immutable",
        "current_user_function_immutable", "error", "function todo_current_user_id()",
        id="function-immutable",
    ),
    pytest.param(
        "alter function todo_current_user_id() set search_path = pg_catalog",
        "current_user_function_not_inlinable", "warning", "function todo_current_user_id()",
        id="function-not-inlinable",
    ),
    pytest.param(
        "create function count_tasks() returns bigint language sql security definer"
        " as 'select count(*) from tasks'; revoke execute on function count_tasks() from public",
        "security_definer_search_path_mutable", "warning", "function count_tasks()",
        id="definer-search-path",
    ),
    pytest.param(
        "create function all_tasks() returns setof tasks language sql security definer"
        " set search_path = pg_catalog, public as 'select * from tasks'",
        "security_definer_executable_by_public", "error", "function all_tasks()",
        id="definer-public",
    ),
    pytest.param(
        "create view task_titles as select user_id, title from tasks;"
        " grant select on task_titles to todo_app",
        "view_bypasses_rls", "error", "view task_titles", id="view-without-invoker",
    ),
    pytest.param(
        # Through another view: the outer one still reads tasks as its owner.
        "create view task_titles with (security_invoker) as select user_id, title from tasks;"
        " create view titles as select title from task_titles; grant select on titles to todo_app",
        "view_bypasses_rls", "error", "view titles", id="view-over-view",
    ),
    pytest.param(
        "create materialized view task_counts as select user_id, count(*) from tasks group by 1;"
        " grant select on task_counts to todo_app",
        "view_bypasses_rls", "error", "materialized view task_counts", id="materialized-view",
    ),
    pytest.param(
        "grant truncate on tasks to todo_app",
        "truncate_granted", "error", "table tasks", id="truncate",
    ),
    pytest.param(
        "drop index tasks_user_created_idx, tasks_user_updated_idx, tasks_user_title_idx,"
        " tasks_user_due_asc_idx, tasks_user_due_desc_idx",
        "user_id_not_indexed", "warning", "table tasks", id="no-user-id-index",
    ),
    pytest.param(
        # The example; since 0006 no policy confines it either (an error as well).
        "grant delete on revoked_tokens to todo_app",
        "unexpected_grant", "warning", "table revoked_tokens", id="unexpected-grant",
    ),
    pytest.param(
        "grant update (user_id) on tasks to todo_app",
        "unexpected_grant", "warning", "column tasks.user_id", id="unexpected-column-grant",
    ),
    pytest.param(
        "revoke delete on tasks from todo_app",
        "missing_grant", "warning", "table tasks", id="missing-grant",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("flaw", "name", "severity", "subject"), FLAWS)
def test_check_reports_each_flaw_as_a_named_finding(
    scratch_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flaw: str,
    name: str,
    severity: str,
    subject: str,
) -> None:
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(flaw)  # type: ignore[arg-type]
    code, document = _check_json(monkeypatch, capsys, scratch_url)
    found = [f for f in document["findings"] if f["name"] == name and f["object"] == subject]
    assert found, document["findings"]
    assert {f["severity"] for f in found} == {severity}
    assert all(f["reason"] for f in found)
    errors = [f for f in document["findings"] if f["severity"] == "error"]
    assert code == (1 if errors else 0)
    assert document["safe"] is not errors
    if severity == "error":
        assert code == 1

    code, text = _check(monkeypatch, capsys, scratch_url)
    assert f"{severity:<7} {name}" in text
    assert f"{subject}: {found[0]['reason']}" in text
    assert ("UNSAFE" in text) is bool(errors)


def test_warnings_alone_do_not_fail_the_check(
    scratch_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute("grant update (user_id) on tasks to todo_app")
    code, report = _check(monkeypatch, capsys, scratch_url)
    assert code == 0, report
    assert "Findings (error 0, warning 1, info 0):" in report
    assert "SAFE" in report


def test_a_view_with_security_invoker_is_not_a_finding(
    scratch_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(scratch_url, autocommit=True) as conn:
        conn.execute(
            "create view open_tasks with (security_invoker = on) as"
            " select id, title from tasks where not completed"
        )
    code, document = _check_json(monkeypatch, capsys, scratch_url)
    assert code == 0
    assert document["findings"] == []


@pytest.mark.parametrize(
    ("version_num", "cves"),
    [
        (150002, ["CVE-2023-2455", "CVE-2025-8713"]),
        (150003, ["CVE-2025-8713"]),
        (150013, ["CVE-2025-8713"]),
        (150014, []),
        (140007, ["CVE-2023-2455", "CVE-2025-8713"]),
        (140019, []),
        (130010, ["CVE-2023-2455", "CVE-2025-8713"]),
        (160009, ["CVE-2025-8713"]),
        (160010, []),
        (170005, ["CVE-2025-8713"]),
        (170006, []),
        (180000, []),
        (100023, ["CVE-2023-2455", "CVE-2025-8713"]),
    ],
)
def test_known_rls_vulnerabilities_by_server_version(version_num: int, cves: list[str]) -> None:
    assert [flaw.cve for flaw in vulnerabilities_of(version_num)] == cves


def test_the_live_servers_version_is_judged_by_the_same_table(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select current_setting('server_version_num')::int").fetchone()
    assert row is not None
    _, document = _check_json(monkeypatch, capsys, database_url)
    reported = [f["reason"].split(":")[0] for f in document["findings"]
                if f["name"] == "server_version_vulnerable"]  # fmt: skip
    assert reported == [flaw.cve for flaw in vulnerabilities_of(row[0])]


def test_a_malformed_expected_grants_file_is_one_clear_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for migration in migrations.sql_dir().glob("*.sql"):
        (tmp_path / migration.name).write_text(migration.read_text())
    (tmp_path / "expected_grants.csv").write_text(
        "# notes\nkind,object,privilege\ntable,tasks,SELECT\nview,tasks\n"
    )
    with pytest.raises(ExpectedGrantsError, match="line 4"):
        load_expected_grants(tmp_path / "expected_grants.csv")
    monkeypatch.setenv("TODO_API_SQL_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("todo-api: ")
    assert "expected_grants.csv line 4" in error
    assert "Traceback" not in error
