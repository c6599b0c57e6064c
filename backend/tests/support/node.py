"""The Node tools of clients/typescript (`npm ci` there installs them; .ci/run does)."""

from __future__ import annotations

import shutil
from pathlib import Path

TYPESCRIPT_CLIENT = Path(__file__).resolve().parents[3] / "clients" / "typescript"
NODE_BIN = TYPESCRIPT_CLIENT / "node_modules" / ".bin"
INSTALL_HINT = "apt-get install nodejs npm, then npm ci --prefix clients/typescript"


def node_tools() -> str | None:
    """clients/typescript's installed TypeScript compiler, when Node is there to run it."""
    tsc = NODE_BIN / "tsc"
    return str(tsc) if tsc.exists() and shutil.which("node") else None
