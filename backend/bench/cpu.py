"""CPU time from /proc: of one process, and of a PostgreSQL postmaster with all it started."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """CPU time (user + system) a process has used, all threads; plus its children's if asked."""
    try:
        # Fields after the command name, which is in parentheses and may contain spaces.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # children that exited (waited for)
    return ticks / _TICKS_PER_SECOND


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests while this machine's vCPUs wanted to run
    (all CPUs; /proc/stat's `steal`). On a shared host it is what makes one run slower than the
    next: the benchmark reports it per scenario so a disturbed run can be told from a slow one."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / _TICKS_PER_SECOND
    except (OSError, IndexError, ValueError):
        return 0.0


def children(parent_pid: int) -> list[int]:
    """The pids of the live processes whose parent is `parent_pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == parent_pid:
            found.append(int(entry.name))
    return found


def postgres_cpu_seconds(postmaster_pid: int | None) -> float:
    """CPU time of the postmaster and every process it started: the live ones (backends,
    writers) and, through the postmaster's children counters, the ones that exited."""
    if postmaster_pid is None:
        return 0.0
    total = cpu_seconds(postmaster_pid, with_children=True)
    return total + sum(cpu_seconds(child) for child in children(postmaster_pid))


async def postgres_settled(postmaster_pid: int | None, processes: int) -> None:
    """Wait (up to 5 s) until the backends of closed connections have exited and been reaped,
    so their CPU time has moved into the postmaster's children counters."""
    if postmaster_pid is None:
        return
    deadline = time.monotonic() + 5
    # Polling /proc is the only way to see another process's children exit.
    while len(children(postmaster_pid)) > processes and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
