"""The benchmark's comparisons: paired rounds, medians (backend/bench)."""

from __future__ import annotations

import math

from bench.report import Report


def test_a_comparison_is_the_median_of_its_rounds_ratios() -> None:
    report = Report("machine", "layout", "0", {})
    report.reference_ratios["create"] = [0.66, 0.43, 0.51, 0.55, 0.90]
    report.heavy_to_light = [1.2, 0.9, 1.0]
    assert report.to_reference("create") == 0.55
    assert report.heavy_light_ratio() == 1.0
    assert math.isnan(report.to_reference("toggle"))
