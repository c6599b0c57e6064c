"""Fixtures of the token tests: a real JWKS endpoint and a clock the tests move."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.jwks_server import JwksServer, ManualClock, serve_jwks


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    with serve_jwks() as server:
        yield server


@pytest.fixture
def jwks(jwks_server: JwksServer) -> JwksServer:
    """The module's JWKS endpoint, with no keys published and its counters at zero."""
    jwks_server.reset()
    return jwks_server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
