"""`todo-api token`: a development token signed with the configured secret; the app accepts it."""

from __future__ import annotations

from pathlib import Path

import jwt
from fastapi.testclient import TestClient

from tests.support.cli import clean_env, one_error_line, run_cli
from tests.support.tokens import TEST_SECRET, new_user_id


def test_token_carries_the_requested_claims_and_needs_no_database(tmp_path: Path) -> None:
    user = new_user_id()
    result = run_cli(
        "token",
        *("--user", user, "--email", "ada@example.com", "--name", "Ada", "--ttl", "120"),
        cwd=tmp_path,
        env=clean_env(BETTER_AUTH_SECRET=TEST_SECRET),
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == user
    assert claims["email"] == "ada@example.com"
    assert claims["name"] == "Ada"
    assert claims["exp"] - claims["iat"] == 120


def test_minted_token_is_accepted_by_the_app(tmp_path: Path, client: TestClient) -> None:
    user = new_user_id()
    result = run_cli(
        "token", "--user", user, cwd=tmp_path, env=clean_env(BETTER_AUTH_SECRET=TEST_SECRET)
    )
    me = client.get("/api/users/me", headers={"Authorization": f"Bearer {result.stdout.strip()}"})
    assert me.status_code == 200
    assert me.json()["id"] == user


def test_token_from_a_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(TEST_SECRET + "\n")
    env = clean_env(BETTER_AUTH_SECRET_FILE=str(secret_file))
    result = run_cli("token", "--user", "u1", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"])["sub"] == "u1"


def test_token_without_any_secret_says_so_in_one_line(tmp_path: Path) -> None:
    result = run_cli("token", "--user", "u1", cwd=tmp_path, env=clean_env())
    assert result.returncode == 2
    assert "BETTER_AUTH_SECRET" in one_error_line(result.stderr)
    assert result.stdout == ""


def test_token_with_a_short_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    env = clean_env(BETTER_AUTH_SECRET="too-short-to-sign")
    result = run_cli("token", "--user", "u1", cwd=tmp_path, env=env)
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "BETTER_AUTH_SECRET" in line
    assert "too-short-to-sign" not in result.stderr + result.stdout


def test_token_refuses_an_overlong_user_id(tmp_path: Path) -> None:
    env = clean_env(BETTER_AUTH_SECRET=TEST_SECRET)
    result = run_cli("token", "--user", "u" * 256, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "--user" in one_error_line(result.stderr)
