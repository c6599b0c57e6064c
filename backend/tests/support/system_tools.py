"""Tests that need a system program, and whether this machine has it.

Tests marked `pgbouncer` run the app through a real PgBouncer (Debian `pgbouncer`); tests marked
`chromium` render the docs in a headless browser (Debian `chromium`, or Google Chrome). .ci/run
installs both and sets TODO_API_REQUIRE_SYSTEM_TOOLS=1, so their absence fails CI. Tests marked
`pgtap` run the pgTAP policy tests in sql/tests with pg_prove; they need pgTAP on the server,
which only CI's PostgreSQL 15 run has, so they have their own switch, TODO_API_REQUIRE_PGTAP=1.
Tests marked `node` run the Node tools of clients/typescript (Debian `nodejs npm`, then `npm ci`
there, as .ci/run does).
On a machine without a tool its tests are deselected (conftest's collection hook), and the run
says so at the end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from tests.support import node, pgtap
from tests.support.pgbouncer import pgbouncer_binary


def chromium_binary() -> str | None:
    """Debian's chromium; hosted Ubuntu runners ship Google Chrome instead."""
    return next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )


SYSTEM_TOOLS: dict[str, tuple[Callable[[], str | None], str]] = {
    "pgbouncer": (pgbouncer_binary, "apt-get install pgbouncer"),
    "chromium": (chromium_binary, "apt-get install chromium"),
    "pgtap": (pgtap.pgtap_runner, pgtap.INSTALL_HINT),
    "node": (node.node_tools, node.INSTALL_HINT),
}
# The setting that makes a tool's tests mandatory (run, and fail without the tool).
REQUIRE_SETTINGS = {"pgtap": pgtap.REQUIRE_SETTING}


def required(marker: str) -> bool:
    """Must the tests marked `marker` run here (and fail without their tool)?"""
    return os.environ.get(REQUIRE_SETTINGS.get(marker, "TODO_API_REQUIRE_SYSTEM_TOOLS")) == "1"


def missing_tools(markers: set[str]) -> set[str]:
    """The markers among `markers` whose tool is absent and not required."""
    return {
        marker for marker in markers if not required(marker) and SYSTEM_TOOLS[marker][0]() is None
    }
