"""/openapi.json works in the frontend's language: clients generated from it, the way frontend
developers generate them, against a live `todo-api serve`.

- Redocly's recommended ruleset finds no error (and only the warnings redocly.yaml explains).
- openapi-typescript at its defaults + openapi-fetch: clients/typescript type-checks with
  `tsc --strict` and its scenario (create, list following Link, get, PUT, PATCH with nulls, toggle
  with and without a body, delete, 401/403/412/422 problem bodies) passes against the server.
- openapi-python-client: the generated package runs clients/python/scenario.py (toggle without a
  body included).

The Node tools come from clients/typescript/node_modules (`npm ci` there; .ci/run does it), so
the `node` tests are deselected where it is missing. All of them are marked `clients`: CI runs
them in one of its two legs only (they do not depend on the PostgreSQL version).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import Server, serve_env
from tests.support.network import free_port
from tests.support.node import NODE_BIN, TYPESCRIPT_CLIENT
from tests.support.tokens import make_token, new_user_id

PYTHON_CLIENT = TYPESCRIPT_CLIENT.parent / "python"

pytestmark = pytest.mark.clients


def _run(
    *command: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `command`, which must succeed (else its output is the failure's message)."""
    result = subprocess.run(  # noqa: S603 - the repo's own tools, fixed arguments
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = f"{result.stdout}\n{result.stderr}"[-8000:]
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{output}"
    return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Server]:
    """The real `todo-api serve`, on a loopback port, against the test database."""
    port = free_port()
    cwd = tmp_path_factory.mktemp("serve")
    running = Server("serve", "--port", str(port), cwd=cwd, env=serve_env(database_url), port=port)
    try:
        running.wait_until_healthy()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def document(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The document as the server serves it, saved to a file."""
    response = server.get("/openapi.json")
    assert response.status_code == 200
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_bytes(response.content)
    return path


def _titles(server: Server, token: str) -> list[str]:
    response = server.get("/api/tasks?sort=title&limit=100", token)
    assert response.status_code == 200
    return [task["title"] for task in response.json()]


# The warnings of the recommended ruleset that remain, each explained in redocly.yaml.
EXPECTED_WARNINGS = {
    ("no-ambiguous-paths", "#/paths/~1api~1{user_id}~1tasks"),
    ("operation-4xx-response", "#/paths/~1healthz/get/responses"),
    ("operation-4xx-response", "#/paths/~1readyz/get/responses"),
}


@pytest.mark.node
def test_redocly_recommended_ruleset_finds_no_error(document: Path, tmp_path: Path) -> None:
    linted = _run(
        NODE_BIN / "redocly",
        "lint",
        "--config",
        TYPESCRIPT_CLIENT / "redocly.yaml",
        "--format",
        "json",
        document,
        cwd=tmp_path,
        # No telemetry or update check: CI reaches no service but the package registries.
        env={"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )
    report = json.loads(linted.stdout)
    assert report["totals"]["errors"] == 0, report["problems"]
    warnings = {
        (problem["ruleId"], problem["location"][0]["pointer"]) for problem in report["problems"]
    }
    assert warnings == EXPECTED_WARNINGS, report["problems"]


@pytest.mark.node
def test_typescript_client_type_checks_strictly_and_works(server: Server, tmp_path: Path) -> None:
    # A copy, so the checkout is left as it was; the installed packages are shared.
    work = tmp_path / "typescript"
    ignored = shutil.ignore_patterns("node_modules", "dist", "api.ts")
    shutil.copytree(TYPESCRIPT_CLIENT, work, ignore=ignored)
    (work / "node_modules").symlink_to(TYPESCRIPT_CLIENT / "node_modules")

    # openapi-typescript at its defaults, from the live document, as a frontend does it.
    _run(
        NODE_BIN / "openapi-typescript",
        f"{server.base_url}/openapi.json",
        "-o",
        "src/api.ts",
        cwd=work,
    )
    _run(NODE_BIN / "tsc", "--strict", "-p", ".", cwd=work)

    user = new_user_id()
    token = make_token(user, ttl_seconds=600)
    env = {"TODO_API_URL": server.base_url, "TODO_API_TOKEN": token}
    output = _run("node", "dist/main.js", cwd=work, env=env).stdout
    assert "typescript client: all 15 checks passed" in output, output
    # What the scenario left behind, seen by another client: four of its five tasks.
    titles = _titles(server, token)
    assert len(titles) == 4, titles
    assert all(title.startswith("ts-") for title in titles), titles


def test_python_client_generated_by_openapi_python_client_works(
    server: Server, document: Path, tmp_path: Path
) -> None:
    generator = Path(sys.executable).with_name("openapi-python-client")
    generated = _run(
        generator,
        "generate",
        "--path",
        document,
        "--config",
        PYTHON_CLIENT / "openapi-python-client.yaml",
        "--meta",
        "none",
        "--output-path",
        tmp_path / "todo_api_client",
        cwd=tmp_path,
    )
    # A warning means an operation or a model was left out of the client.
    assert "WARNING" not in generated.stdout + generated.stderr, generated.stdout

    token = make_token(new_user_id(), ttl_seconds=600)
    env = {"PYTHONPATH": str(tmp_path), "TODO_API_URL": server.base_url, "TODO_API_TOKEN": token}
    output = _run(sys.executable, PYTHON_CLIENT / "scenario.py", cwd=tmp_path, env=env).stdout
    assert "python client: every check passed" in output, output
    titles = _titles(server, token)
    assert len(titles) == 4, titles
    assert all(title.startswith("py-") for title in titles), titles
