"""The process's drain state: started by SIGTERM (todo_api.server), read while requests finish.

Once the drain has started, /readyz answers 503 and every response closes its connection, so a
load balancer stops sending here while the requests already in flight are answered.
"""

from __future__ import annotations

import time


class Drain:
    """Whether, and since when, this process has been told to stop."""

    def __init__(self) -> None:
        self.started_at: float | None = None

    def start(self) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()

    @property
    def active(self) -> bool:
        return self.started_at is not None

    def elapsed(self) -> float:
        """Seconds since the drain started (0 before)."""
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at


# One per process: a process stops as a whole, whichever of its servers got the signal.
drain = Drain()
