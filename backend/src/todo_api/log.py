"""JSON log lines on stdout, one per event; the request id rides along in a context variable."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

security_log = logging.getLogger("todo_api.security")
app_log = logging.getLogger("todo_api")

# A JWT (header.payload.signature, base64url, header starting `{"`) anywhere in a line.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"


def contains_jwt(text: str) -> bool:
    return _JWT.search(text) is not None


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines with anything shaped like a JWT, and the configured secrets, blanked out.

    Our own code never logs a token or a secret; this is the net under it, for text we do not
    control (a library's exception message, a traceback, a value echoed by a dependency).
    """

    def __init__(self, *args: Any, secrets: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Longest first, so a secret containing another is blanked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = _JWT.sub(REDACTED, super().format(record))
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        return line


def configure_logging(
    level: str = "INFO", *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Route every logger (ours, uvicorn's) through one JSON formatter on stdout.

    `secrets` (the auth secret, the database password) are blanked out of every line.
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        RedactingJsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
            secrets=secrets,
        )
    )
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
    # Access lines would duplicate our own request log and carry query strings.
    logging.getLogger("uvicorn.access").disabled = True


def security_event(
    event: str,
    *,
    reason: str,
    method: str,
    path: str,
    client: str | None,
    user_id: str | None = None,
    level: int = logging.WARNING,
    **extra: Any,
) -> None:
    """One JSON line for a security-relevant event. Never pass a token or a secret here."""
    fields: dict[str, Any] = {
        "event": event,
        "reason": reason,
        "method": method,
        "path": path,
        "client": client,
        "request_id": request_id_var.get(),
    }
    if user_id is not None:
        fields["user_id"] = user_id
    fields.update(extra)
    security_log.log(level, event, extra=fields)
