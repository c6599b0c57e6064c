"""Schemathesis against /openapi.json with a valid token: no 5xx, every response fits the schema.

It runs schemathesis's own command line against the real app on a loopback port, bounded by a
fixed number of examples per operation and a deterministic seed, so CI runs are reproducible.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_token, new_user_id
from tests.support.live_server import live_server
from todo_api.config import Settings
from todo_api.main import create_app


def test_schemathesis_finds_no_server_error_or_schema_violation(
    settings: Settings, tmp_path: Path
) -> None:
    user_id = new_user_id()
    token = make_token(user_id, ttl_seconds=1800)
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is part of the dev extra"
    with live_server(create_app(settings)) as base_url:
        result = subprocess.run(  # noqa: S603 - our own dev tool, loopback target
            [
                cli,
                "run",
                f"{base_url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "25",
                "--seed",
                "20261126",
                "--generation-database",
                "none",
                "--request-timeout",
                "10",
                "--workers",
                "2",
                "--no-color",
                "--report-dir",
                str(tmp_path),
                "-H",
                f"Authorization: Bearer {token}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
