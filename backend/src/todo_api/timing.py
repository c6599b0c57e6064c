"""`Server-Timing` (W3C Server Timing): where a request's time went, on every response.

`EdgeMiddleware` starts a `RequestTiming` per request and writes the header when the response
starts: `auth;dur=0.412, db;dur=1.208, total;dur=2.130` (milliseconds), as PostgREST does. The
token check (`dependencies.authenticate`) and the request transaction (`db.OneStatementTransaction`)
add their share through `timing_var`, so neither needs the request object; a part that did not
run is left out.
"""

from __future__ import annotations

from contextvars import ContextVar
from time import perf_counter_ns


class RequestTiming:
    __slots__ = ("auth_ns", "db_ns", "started_ns")

    def __init__(self) -> None:
        self.started_ns = perf_counter_ns()
        self.auth_ns: int | None = None
        self.db_ns: int | None = None

    def elapsed_ns(self) -> int:
        return perf_counter_ns() - self.started_ns

    def header(self) -> bytes:
        """The header's value, the total measured now (one format string per case: it runs on
        every response)."""
        total = self.elapsed_ns() / 1e6
        auth, db = self.auth_ns, self.db_ns
        if db is not None:
            if auth is not None:
                text = f"auth;dur={auth / 1e6:.3f}, db;dur={db / 1e6:.3f}, total;dur={total:.3f}"
            else:
                text = f"db;dur={db / 1e6:.3f}, total;dur={total:.3f}"
        elif auth is not None:
            text = f"auth;dur={auth / 1e6:.3f}, total;dur={total:.3f}"
        else:
            text = f"total;dur={total:.3f}"
        return text.encode()


timing_var: ContextVar[RequestTiming | None] = ContextVar("request_timing", default=None)


def add_auth_time(started_ns: int) -> None:
    """Count the time since `started_ns` (perf_counter_ns) as the token check's."""
    timing = timing_var.get()
    if timing is not None:
        timing.auth_ns = (timing.auth_ns or 0) + perf_counter_ns() - started_ns


def add_db_time(started_ns: int) -> None:
    """Count the time since `started_ns` as the database's (waiting for a connection included)."""
    timing = timing_var.get()
    if timing is not None:
        timing.db_ns = (timing.db_ns or 0) + perf_counter_ns() - started_ns
