"""Settings (T001): every bad value stops start-up with a line naming it, never echoing a secret."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from todo_api.config import Settings, describe_validation_error

GOOD_SECRET = "a-perfectly-fine-development-secret-0123456789"
DB = "postgresql://u:db-password-123@localhost/todo"


def _error_line(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key in ("BETTER_AUTH_SECRET", "BETTER_AUTH_URL", "BETTER_AUTH_JWKS_URL", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    return describe_validation_error(caught.value)


def test_short_secret_is_named_and_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    line = _error_line(monkeypatch, BETTER_AUTH_SECRET="too-short-secret", DATABASE_URL=DB)
    assert "BETTER_AUTH_SECRET" in line
    assert "too-short-secret" not in line


def test_missing_database_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    line = _error_line(monkeypatch, BETTER_AUTH_SECRET=GOOD_SECRET)
    assert "DATABASE_URL" in line


def test_no_verification_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    line = _error_line(monkeypatch, DATABASE_URL=DB)
    assert "BETTER_AUTH_SECRET" in line
    assert "BETTER_AUTH_URL" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JWT_LEEWAY_SECONDS", "soon"),
        ("JWT_ALGORITHMS", "none"),
        ("DB_POOL_MAX_SIZE", "0"),
        ("CORS_ORIGINS", "not a url"),
        ("LOG_LEVEL", "chatty"),
        ("BETTER_AUTH_URL", "ftp://auth.example.com"),
        ("SHUTDOWN_GRACE_SECONDS", "0"),
        ("SHUTDOWN_DELAY_SECONDS", "20"),  # not less than the default grace period
    ],
)
def test_invalid_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    line = _error_line(
        monkeypatch, **{"BETTER_AUTH_SECRET": GOOD_SECRET, "DATABASE_URL": DB, variable: value}
    )
    assert variable in line


def test_secret_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(GOOD_SECRET + "\n")
    monkeypatch.delenv("BETTER_AUTH_SECRET", raising=False)
    monkeypatch.setenv("BETTER_AUTH_SECRET_FILE", str(secret_file))
    monkeypatch.setenv("DATABASE_URL", DB)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.better_auth_secret is not None
    assert settings.better_auth_secret.get_secret_value() == GOOD_SECRET


def test_secrets_never_appear_in_repr_or_masked_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", GOOD_SECRET)
    monkeypatch.setenv("DATABASE_URL", DB)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    for text in (repr(settings), str(settings), str(settings.masked())):
        assert GOOD_SECRET not in text
        assert "db-password-123" not in text


def test_the_masked_config_names_every_setting_and_masks_the_secrets() -> None:
    config = Settings(  # type: ignore[call-arg]
        _env_file=None, better_auth_secret=SecretStr(GOOD_SECRET), database_url=SecretStr(DB)
    )
    masked = config.masked()
    assert set(Settings.model_fields) <= set(masked)
    assert masked["better_auth_secret"] == "***"
    assert masked["database_url"] == "postgresql://u:***@localhost/todo"
    assert masked["db_statement_timeout_ms"] == config.db_statement_timeout_ms
    assert masked["db_connect_timeout_seconds"] == config.db_connect_timeout_seconds
    assert masked["jwks_url"] is None
    json.dumps(masked)  # it goes into a JSON log line as it is


_URL_SAFE = st.text(string.ascii_letters + string.digits + "-._~", min_size=8, max_size=40)


@settings(max_examples=50, deadline=None)
@given(
    # Prefixed so that no value can occur by chance in what may be shown (`postgres`, `HS256`).
    secret=_URL_SAFE.map(lambda s: f"Secret-{s}".ljust(32, "x")),
    password=_URL_SAFE.map(lambda s: f"Passw0rd-{s}"),
    query=_URL_SAFE.map(lambda s: f"Qu3ry-{s}"),
)
def test_no_secret_value_reaches_the_masked_config(secret: str, password: str, query: str) -> None:
    config = Settings(  # type: ignore[call-arg]
        _env_file=None,
        better_auth_secret=SecretStr(secret),
        database_url=SecretStr(f"postgresql://todo_owner:{password}@db:5432/todo?password={query}"),
    )
    text = json.dumps(config.masked())
    for value in (secret, password, query):
        assert value not in text


def test_serve_with_bad_setting_exits_with_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "BETTER_AUTH_SECRET": "short-secret-value",
        "DATABASE_URL": DB,
    }
    result = subprocess.run(
        [sys.executable, "-m", "todo_api", "serve", "--port", "1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "BETTER_AUTH_SECRET" in lines[0]
    assert "short-secret-value" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
