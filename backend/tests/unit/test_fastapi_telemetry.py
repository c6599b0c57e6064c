"""FastAPI's OpenTelemetry instrumentation is on exactly when the process uses OpenTelemetry."""

from __future__ import annotations

import os

import pytest
from opentelemetry import trace

from todo_api.config import Settings
from todo_api.main import FASTAPI_TELEMETRY_OFF, create_app, fastapi_telemetry


def test_it_is_off_when_nothing_configures_opentelemetry() -> None:
    assert fastapi_telemetry({"PATH": "/usr/bin", "DATABASE_URL": "x"}) == FASTAPI_TELEMETRY_OFF


@pytest.mark.parametrize(
    "variable",
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "FASTAPI_OTEL_AUTO_CONFIGURE"],
)
def test_an_opentelemetry_setting_keeps_fastapis_defaults(variable: str) -> None:
    assert fastapi_telemetry({variable: "x"}) == {}


def test_a_tracer_provider_set_before_the_app_keeps_fastapis_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", trace.NoOpTracerProvider)
    assert fastapi_telemetry({}) == {}


def test_the_app_asks_nothing_per_request_without_opentelemetry(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    for name in [name for name in os.environ if name.startswith(("OTEL_", "FASTAPI_OTEL_"))]:
        monkeypatch.delenv(name)
    app = create_app(settings)
    # FastAPI keeps no public flag: its own per-request check is what must say no.
    assert app._native_telemetry.enabled() is False
