"""The report: the figures of a run, the verdicts against the targets, and the text printed."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import load
from bench.dbcost import RlsCost
from bench.round_trips import RoundTrips
from bench.throughput import PAGE_ROUND_SECONDS, Figure

# Throughput as a share of the FastAPI reference's on the same scenario (#8).
TARGETS = {"list": 0.40, "get": 0.50, "create": 0.50, "toggle": 0.50}
HEAVY_TO_LIGHT_MAX = 1.1
LIST_POSTGRES_CPU_MAX_US = 300.0
RLS_COST_MAX = 0.10
PEAK_RSS_MAX_MB = 150.0


@dataclass
class Report:
    machine: str
    layout: str
    load_average_at_start: str
    settings: dict[str, Any]
    throughput: dict[str, Figure] = field(default_factory=dict)
    reference: dict[str, Figure] = field(default_factory=dict)  # the FastAPI reference, by scenario
    reference_ratios: dict[str, list[float]] = field(default_factory=dict)  # per round, by scenario
    heavy_to_light: list[float] = field(default_factory=list)  # p50 ratio per pair of rounds
    ceiling_runs: list[float] = field(default_factory=list)
    round_trips: list[RoundTrips] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    ceiling_peak_rss_mb: float = 0.0
    reference_peak_rss_mb: float = 0.0
    rls: list[RlsCost] = field(default_factory=list)
    explain: dict[str, str] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ceiling_rps(self) -> float:
        return statistics.fmean(self.ceiling_runs) if self.ceiling_runs else 0.0

    def to_reference(self, scenario: str) -> float:
        """The API's throughput on `scenario` as a share of the FastAPI reference's: the median
        of the rounds' ratios, each round's two runs back to back."""
        ratios = self.reference_ratios.get(scenario)
        return statistics.median(ratios) if ratios else float("nan")

    def heavy_light_ratio(self) -> float:
        """The heavy user's first-page p50 over the light user's, the median of the rounds'."""
        return statistics.median(self.heavy_to_light) if self.heavy_to_light else float("nan")

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ceiling_rps"] = self.ceiling_rps
        data["ratios"] = {
            name: figure.rps / self.ceiling_rps
            for name, figure in self.throughput.items()
            if self.ceiling_rps
        }
        data["reference_ratios"] = {name: self.to_reference(name) for name in self.reference}
        for row, trips in zip(data["round_trips"], self.round_trips, strict=True):
            row["implied"] = trips.implied
        for row, rls in zip(data["rls"], self.rls, strict=True):
            row["cost"] = rls.cost
        return data


def _verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'MISS'}  {text}"


def judge(report: Report) -> None:
    verdicts = report.verdicts
    for scenario, share in TARGETS.items():
        if scenario in report.throughput and scenario in report.reference:
            ratio = report.to_reference(scenario)
            verdicts.append(
                _verdict(ratio >= share, f"{scenario}: {ratio:.2f}x the FastAPI reference "
                                         f"(target >= {share:.2f}x)")
            )  # fmt: skip
    listed = report.throughput.get("list")
    if listed and listed.postgres_cpu_us:
        verdicts.append(
            _verdict(listed.postgres_cpu_us <= LIST_POSTGRES_CPU_MAX_US, f"PostgreSQL CPU per list "
                     f"request {listed.postgres_cpu_us:.0f} us (target <= "
                     f"{LIST_POSTGRES_CPU_MAX_US:.0f} us)")
        )  # fmt: skip
    if report.heavy_to_light:
        ratio = report.heavy_light_ratio()
        verdicts.append(
            _verdict(ratio <= HEAVY_TO_LIGHT_MAX, f"heavy user's first page p50 = {ratio:.2f}x "
                     f"the light user's (target <= {HEAVY_TO_LIGHT_MAX}x)")
        )  # fmt: skip
    for rls in report.rls:
        verdicts.append(
            _verdict(rls.cost <= RLS_COST_MAX, f"RLS at the database, {rls.who} user: "
                     f"{rls.cost:+.1%} per transaction (target <= +{RLS_COST_MAX:.0%})")
        )  # fmt: skip
    if report.peak_rss_mb:
        verdicts.append(
            _verdict(report.peak_rss_mb <= PEAK_RSS_MAX_MB, f"worker peak RSS "
                     f"{report.peak_rss_mb:.0f} MB (target <= {PEAK_RSS_MAX_MB:.0f} MB)")
        )  # fmt: skip
    if report.round_trips:
        worst = max(trips.per_request for trips in report.round_trips)
        verdicts.append(
            _verdict(worst <= 1.0, f"database round trips per request: at most {worst:.2f} "
                                   "(target 1)")
        )  # fmt: skip


def render(report: Report) -> str:
    lines = [
        "",
        "=== todo-api benchmark ===",
        f"machine   {report.machine}",
        f"layout    {report.layout}",
        f"load avg  {report.load_average_at_start} (at start)",
        f"settings  {json.dumps(report.settings)}",
        "",
    ]
    if report.throughput:
        lines += _throughput_lines(report)
    if report.round_trips:
        lines += _round_trip_lines(report.round_trips)
    if report.rls:
        lines += _rls_lines(report)
    lines += ["targets:", *(f"  {verdict}" for verdict in report.verdicts)]
    lines.append(f"total time {report.seconds:.0f} s")
    return "\n".join(lines)


def _throughput_lines(report: Report) -> list[str]:
    ceiling = report.ceiling_rps
    lines = [
        f"{'scenario':10} {'req/s':>8} {'x ref':>6} {'x ceiling':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>7} {'server CPU':>11} {'core busy':>10} {'PG CPU':>8} "
        f"{'steal':>6}  {'rounds req/s':>22}  {'rounds x ref':>24}  what"
    ]
    rows: list[tuple[str, str | None, Figure]] = [
        (name, name, figure) for name, figure in report.throughput.items()
    ]
    rows += [(f"ref {name}", None, figure) for name, figure in report.reference.items()]
    for label, scenario, figure in rows:
        share = figure.rps / ceiling if ceiling else float("nan")
        to_reference = report.to_reference(scenario) if scenario else float("nan")
        lines.append(
            f"{label:10} {figure.rps:8.0f} {to_reference:6.2f} {share:10.2f} "
            f"{figure.p50_ms:8.2f} {figure.p99_ms:8.2f} {figure.errors:7d} "
            f"{figure.server_cpu_us:8.0f} us {figure.server_busy:10.0%} "
            f"{figure.postgres_cpu_us:5.0f} us {figure.steal:6.0%}  "
            f"{'/'.join(f'{rps:.0f}' for rps in figure.rounds_rps):>22}  "
            f"{'/'.join(f'{r:.2f}' for r in report.reference_ratios.get(scenario or '', [])):>24}  "
            f"{'FastAPI reference: ' if scenario is None else ''}"
            f"{load.SCENARIOS[label.removeprefix('ref ')]}"
        )
    lines.append(
        "x ref: the median over the rounds of the API's req/s over the FastAPI reference's, the"
        " two run back to back in each round (rounds x ref lists them); server CPU and PG CPU:"
        " CPU time per request of the server process and of PostgreSQL; core busy: the share of"
        " its core the server used; steal: the share of the machine's CPU time the hypervisor"
        " gave to other guests during the run (a disturbed run); rounds req/s: each round's,"
        " the other figures are the fastest round's"
    )
    if report.heavy_to_light:
        rounds = "/".join(f"{ratio:.2f}" for ratio in report.heavy_to_light)
        lines.append(
            f"heavy user's first-page p50 over the light user's on one connection, alternating"
            f" rounds of {PAGE_ROUND_SECONDS} s: {rounds}; median {report.heavy_light_ratio():.2f}"
        )
    runs = ", ".join(f"{rps:.0f}" for rps in report.ceiling_runs)
    return [
        *lines,
        f"ceiling = mean of its runs ({runs} req/s) = {ceiling:.0f} req/s",
        f"peak RSS: API worker {report.peak_rss_mb:.1f} MB, "
        f"FastAPI reference {report.reference_peak_rss_mb:.1f} MB, "
        f"ceiling app {report.ceiling_peak_rss_mb:.1f} MB",
        "",
    ]


def _round_trip_lines(round_trips: list[RoundTrips]) -> list[str]:
    lines = [
        f"{'route':8} {'round trips/request':>20} {'median ms':>10} {'+latency':>9} "
        f"{'median ms':>10} {'implied':>8}"
    ]
    for trips in round_trips:
        note = f"  ({trips.new_connections} new connection(s))" if trips.new_connections else ""
        lines.append(
            f"{trips.route:8} {trips.per_request:20.2f} {trips.base_ms:10.2f} "
            f"{trips.latency_ms:7.0f}ms {trips.delayed_ms:10.2f} {trips.implied:8.2f}{note}"
        )
    return [*lines, ""]


def _rls_lines(report: Report) -> list[str]:
    lines = [
        "RLS at the database (pgbench, the service's request string for a first page:"
        " todo_begin_request + the prepared list statement; best of 3 alternating runs each):"
    ]
    for rls in report.rls:
        lines.append(
            f"  {rls.who:5} user: with policies {rls.rls_tps:6.0f} tps, "
            f"{rls.rls_cpu_us:4.0f} us PG CPU/tx; bypassed {rls.bypass_tps:6.0f} tps, "
            f"{rls.bypass_cpu_us:4.0f} us PG CPU/tx: {rls.cost:+.1%}"
        )
    for name, plan in report.explain.items():
        lines += ["", f"EXPLAIN ANALYZE, {name}:", plan]
    return [*lines, ""]
