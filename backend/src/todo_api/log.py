"""JSON log lines on stdout, one per event; the request id rides along in a context variable."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

security_log = logging.getLogger("todo_api.security")
app_log = logging.getLogger("todo_api")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO") -> None:
    """Route every logger (ours, uvicorn's) through one JSON formatter on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            timestamp=False,
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
