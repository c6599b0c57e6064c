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
    # Per pair of one-connection rounds: the heavy user's first-page p50 over the light user's.
    heavy_to_light: list[float] = field(default_factory=list)
    ceiling_runs: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    reference_peak_rss_mb: float = 0.0
    ceiling_peak_rss_mb: float = 0.0


# The heavy and the light user's first pages, compared: one connection, so a request's latency is
# its own cost and no queue's, in short rounds alternating the two, so drift hits both alike.
PAGE_ROUNDS = 10
PAGE_ROUND_SECONDS = 2


async def heavy_against_light(script: Path, server: Server) -> list[float]:
    """The heavy user's first-page p50 over the light user's, one ratio per pair of rounds."""
    ratios = []
    for _ in range(PAGE_ROUNDS):
        heavy = await load.run_wrk(
            script, server.base_url, "heavy", seconds=PAGE_ROUND_SECONDS, connections=1
        )
        light = await load.run_wrk(
            script, server.base_url, "light", seconds=PAGE_ROUND_SECONDS, connections=1
        )
        ratios.append(heavy.p50_ms / light.p50_ms)
        print(
            f"  one connection: heavy p50 {heavy.p50_ms:.3f} ms, light p50 {light.p50_ms:.3f} ms:"
            f" {ratios[-1]:.2f}x",
            flush=True,
        )
    return ratios


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

    Each scenario runs in rounds, its reference run and its API run back to back in every round,
    so the machine's drift hits both sides of a comparison alike; each comparison is the median
    of its rounds' ratios. Then the heavy and the light user's first pages are compared on one
    connection (`heavy_against_light`).
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
        for scenario in scenarios:
            # Back to back in every round, so drift on a shared machine hits both alike.
            with_reference = not args.no_reference and scenario in REFERENCE_SCENARIOS
            reference_runs, api_runs = [], []
            for _ in range(args.rounds):
                if with_reference:
                    reference_runs.append(
                        await drive(args, script, reference, scenario, postgres, "reference")
                    )
                api_runs.append(await drive(args, script, api, scenario, postgres))
            measured.api[scenario] = Figure.best(api_runs)
            if reference_runs:
                measured.reference[scenario] = Figure.best(reference_runs)
                measured.reference_ratios[scenario] = [
                    ours.result.rps / theirs.result.rps
                    for ours, theirs in zip(api_runs, reference_runs, strict=True)
                    if theirs.result.rps
                ]
        if {"heavy", "light"} <= set(scenarios):
            measured.heavy_to_light = await heavy_against_light(script, api)
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
