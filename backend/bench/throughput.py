"""Throughput: wrk drives each scenario against the FastAPI reference and then the API, back to
back, with the ceiling app first and last; CPU time per request of each server and of
PostgreSQL."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import load
from bench.cpu import cpu_seconds, postgres_cpu_seconds, steal_seconds
from bench.servers import (
    REFERENCE_SCENARIOS,
    Layout,
    Server,
    api_server,
    ceiling_server,
    reference_server,
)


@dataclass(frozen=True)
class Driven:
    result: load.LoadResult
    server_cpu_us: float  # per request
    server_busy: float  # share of one core the server used
    postgres_cpu_us: float  # per request; 0 when PostgreSQL is not ours to watch
    steal: float  # share of the machine's CPUs the hypervisor gave to other guests meanwhile


async def drive(
    args: argparse.Namespace,
    script: Path,
    server: Server,
    scenario: str,
    postgres: int | None,
    label: str = "",
) -> Driven:
    if args.warmup > 0:
        await load.run_wrk(
            script, server.base_url, scenario, seconds=args.warmup, connections=args.connections
        )
    assert server.process is not None
    server_before = cpu_seconds(server.process.pid)
    postgres_before = postgres_cpu_seconds(postgres)
    steal_before = steal_seconds()
    result = await load.run_wrk(
        script, server.base_url, scenario, seconds=args.duration, connections=args.connections
    )
    server_cpu = cpu_seconds(server.process.pid) - server_before
    postgres_cpu = postgres_cpu_seconds(postgres) - postgres_before
    stolen = steal_seconds() - steal_before
    requests = max(result.requests, 1)
    driven = Driven(
        result,
        server_cpu_us=server_cpu / requests * 1e6,
        server_busy=server_cpu / result.seconds if result.seconds else 0.0,
        postgres_cpu_us=postgres_cpu / requests * 1e6,
        steal=stolen / (result.seconds * (os.cpu_count() or 1)) if result.seconds else 0.0,
    )
    print(
        f"  {label:9} {scenario:8} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
        f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}  server {driven.server_cpu_us:.0f}"
        f" us CPU/req ({driven.server_busy:.0%} of its core)  steal {driven.steal:.0%}",
        flush=True,
    )
    return driven


@dataclass(frozen=True)
class Figure:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_us: float
    server_busy: float
    postgres_cpu_us: float
    steal: float
    rounds_rps: tuple[float, ...] = ()  # every round's req/s, when this figure is the best of them

    @classmethod
    def of(cls, driven: Driven) -> Figure:
        result = driven.result
        return cls(
            result.rps, result.p50_ms, result.p99_ms, result.errors,
            driven.server_cpu_us, driven.server_busy, driven.postgres_cpu_us, driven.steal,
        )  # fmt: skip

    @classmethod
    def best(cls, runs: Sequence[Driven]) -> Figure:
        """The round with the most req/s (the least disturbed one: on a shared host the other
        guests only ever take throughput away), all of its own figures, and every round's
        req/s. Errors are those of all rounds."""
        best = max(runs, key=lambda run: run.result.rps)
        figure = cls.of(best)
        return replace(
            figure,
            errors=sum(run.result.errors for run in runs),
            rounds_rps=tuple(run.result.rps for run in runs),
        )

    @classmethod
    def mean(cls, runs: Sequence[Driven]) -> Figure:
        figures = [cls.of(run) for run in runs]
        return cls(
            statistics.fmean(f.rps for f in figures),
            statistics.fmean(f.p50_ms for f in figures),
            statistics.fmean(f.p99_ms for f in figures),
            sum(f.errors for f in figures),
            statistics.fmean(f.server_cpu_us for f in figures),
            statistics.fmean(f.server_busy for f in figures),
            statistics.fmean(f.postgres_cpu_us for f in figures),
            statistics.fmean(f.steal for f in figures),
        )


@dataclass
class Throughput:
    """What the load phase measured, by scenario."""

    api: dict[str, Figure] = field(default_factory=dict)
    reference: dict[str, Figure] = field(default_factory=dict)
    # Per round: the API's req/s over the reference's, each pair run back to back.
    reference_ratios: dict[str, list[float]] = field(default_factory=dict)
    # Per round: the heavy user's first-page p50 over the light user's, run back to back.
    heavy_to_light: list[float] = field(default_factory=list)
    ceiling_runs: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    reference_peak_rss_mb: float = 0.0
    ceiling_peak_rss_mb: float = 0.0


# Scenarios compared with each other run round by round together (see measure_throughput).
PAIRED_SCENARIOS = ("heavy", "light")


def _groups(scenarios: Sequence[str]) -> list[list[str]]:
    """The scenarios in the order given, the paired ones in one group (where the first was)."""
    groups: list[list[str]] = []
    paired = [s for s in scenarios if s in PAIRED_SCENARIOS]
    for scenario in scenarios:
        if scenario not in PAIRED_SCENARIOS:
            groups.append([scenario])
        elif scenario == paired[0]:
            groups.append(paired)
    return groups


async def measure_throughput(
    args: argparse.Namespace,
    layout: Layout,
    workdir: Path,
    login_url: str,
    script: Path,
    ready_token: str,
    postgres: int | None,
) -> Throughput:
    """Start the three servers and drive every scenario of `args.scenarios` but the ceiling.

    Each scenario runs in rounds, its reference run and its API run back to back in every round
    (the heavy and the light user's pages alternate the same way), so the machine's drift hits
    both sides of a comparison alike; each comparison is the median of its rounds' ratios.
    """
    scenarios = [s for s in args.scenarios if s != "ceiling"]
    print(
        f"driving load ({args.rounds} rounds of {args.duration:.0f} s per scenario and server) ...",
        flush=True,
    )
    ceiling = ceiling_server(layout, workdir)
    reference = reference_server(layout, workdir)
    api = api_server(args, layout, login_url, workdir, "direct")
    for server in (ceiling, reference, api):
        server.start()
    try:
        await ceiling.wait_ready("/ceiling", {"Authorization": f"Bearer {ready_token}"})
        await reference.wait_ready("/readyz", {})
        await api.wait_ready("/readyz", {})
        measured = Throughput()
        first = await drive(args, script, ceiling, "ceiling", postgres)
        for group in _groups(scenarios):
            reference_runs: dict[str, list[Driven]] = {scenario: [] for scenario in group}
            api_runs: dict[str, list[Driven]] = {scenario: [] for scenario in group}
            for _ in range(args.rounds):
                for scenario in group:
                    if not args.no_reference and scenario in REFERENCE_SCENARIOS:
                        reference_runs[scenario].append(
                            await drive(args, script, reference, scenario, postgres, "reference")
                        )
                    api_runs[scenario].append(await drive(args, script, api, scenario, postgres))
            for scenario in group:
                measured.api[scenario] = Figure.best(api_runs[scenario])
                if reference_runs[scenario]:
                    measured.reference[scenario] = Figure.best(reference_runs[scenario])
                    measured.reference_ratios[scenario] = [
                        ours.result.rps / theirs.result.rps
                        for ours, theirs in zip(
                            api_runs[scenario], reference_runs[scenario], strict=True
                        )
                        if theirs.result.rps
                    ]
            if group == list(PAIRED_SCENARIOS):
                measured.heavy_to_light = [
                    heavy.result.p50_ms / light.result.p50_ms
                    for heavy, light in zip(api_runs["heavy"], api_runs["light"], strict=True)
                    if light.result.p50_ms
                ]
        last = await drive(args, script, ceiling, "ceiling", postgres)
        measured.ceiling_runs = [first.result.rps, last.result.rps]
        measured.api = {"ceiling": Figure.mean([first, last]), **measured.api}
        measured.peak_rss_mb = api.peak_rss_mb()
        measured.ceiling_peak_rss_mb = ceiling.peak_rss_mb()
        measured.reference_peak_rss_mb = reference.peak_rss_mb()
        return measured
    finally:
        api.stop()
        reference.stop()
        ceiling.stop()
