"""Can the suite run the pgTAP policy tests (sql/tests) here? pg_prove, and pgTAP on the server.

The server is the one the suite will start or use: asked directly when TEST_DATABASE_URL names
it; for a cluster made from TEST_PG_BIN, the extension must be installed for that major (Debian's
postgresql-NN-pgtap). The embedded PostgreSQL 18 and the testcontainers image ship no pgTAP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg

REQUIRE_SETTING = "TODO_API_REQUIRE_PGTAP"
INSTALL_HINT = (
    "apt-get install postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl, then run on that "
    "server with TEST_PG_BIN=/usr/lib/postgresql/15/bin or TEST_DATABASE_URL"
)


def pg_prove_binary() -> str | None:
    return shutil.which("pg_prove")


def _server_offers_pgtap(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute(
                "select exists (select from pg_available_extensions where name = 'pgtap')"
            ).fetchone()
    except psycopg.Error:
        return False
    return bool(row and row[0])


def _pg_bin_offers_pgtap(bin_dir: str) -> bool:
    pg_config = Path(bin_dir) / "pg_config"
    if not pg_config.is_file():
        return False
    share = subprocess.run(  # noqa: S603 - a fixed program from the configured directory
        [str(pg_config), "--sharedir"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.strip()
    return bool(share) and (Path(share) / "extension" / "pgtap.control").is_file()


def pgtap_runner() -> str | None:
    """pg_prove's path when both it and a pgTAP-capable server are at hand, else None."""
    pg_prove = pg_prove_binary()
    if pg_prove is None:
        return None
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return pg_prove if _server_offers_pgtap(url) else None
    bin_dir = os.environ.get("TEST_PG_BIN")
    if bin_dir:
        return pg_prove if _pg_bin_offers_pgtap(bin_dir) else None
    return None
