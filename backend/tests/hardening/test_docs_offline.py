"""/docs and /redoc render in a real browser with no network but the app itself."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.support.live_server import live_server
from tests.support.system_tools import chromium_binary
from todo_api.config import Settings
from todo_api.main import create_app

CHROMIUM = chromium_binary()


@pytest.fixture(scope="module")
def live_url(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on loopback, for the browser."""
    with live_server(create_app(settings)) as url:
        yield url


def _render(url: str, tmp_path: Path) -> tuple[str, set[str]]:
    """The DOM after scripts ran, and every URL the browser requested."""
    assert CHROMIUM, "chromium is not installed (.ci/run installs it)"
    net_log = tmp_path / "net-log.json"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Anything but loopback fails to resolve: the page cannot reach out even if it tried.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--log-net-log={net_log}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)  # noqa: S603 - fixed argv, loopback URL
    text = net_log.read_text(encoding="utf-8").rstrip()
    # A browser that exits before finishing the file leaves the events array open.
    events = json.loads(text if text.endswith("}") else text.rstrip(",") + "]}")
    # Requests the page itself made carry its origin as initiator; the browser's own background
    # traffic (updates, sign-in) says "not an origin" and is no part of the page.
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    requested = {
        event["params"]["url"]
        for event in events.get("events", [])
        if isinstance(event.get("params"), dict)
        and event["params"].get("initiator") == origin
        and "url" in event["params"]
    }
    return result.stdout, requested


def _assert_only_loopback(requested: set[str], base: str) -> None:
    outside = {url for url in requested if not url.startswith(("data:", "blob:", base))}
    assert not outside, f"fetched from outside the app: {sorted(outside)}"
    assert any("/static-offline-docs/" in url for url in requested)


@pytest.mark.chromium
def test_swagger_ui_renders_operations_and_authorize_offline(live_url: str, tmp_path: Path) -> None:
    dom, requested = _render(f"{live_url}/docs", tmp_path)

    assert "swagger-ui" in dom
    assert "opblock" in dom  # the rendered operations
    assert "/api/users/me/token" in dom
    assert "authorize" in dom.lower()
    assert "btn authorize" in dom
    _assert_only_loopback(requested, live_url)
    assert f"{live_url}/openapi.json" in requested


@pytest.mark.chromium
def test_redoc_renders_offline(live_url: str, tmp_path: Path) -> None:
    dom, requested = _render(f"{live_url}/redoc", tmp_path)

    assert "Revoke every token of the caller issued so far" in dom
    _assert_only_loopback(requested, live_url)


def test_openapi_documents_bearer_auth_and_every_error_with_an_example(
    client: TestClient,
) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values())
    for path in ("/api/users/me", "/api/users/me/token", "/api/users/me/tokens"):
        for operation in schema["paths"][path].values():
            assert operation.get("security"), path
            errors = {k: v for k, v in operation["responses"].items() if k[0] in "45"}
            assert {"401", "503", "500"} <= set(errors), path
            for status, response in errors.items():
                content = response["content"]["application/problem+json"]
                assert content["example"]["status"] == int(status)
                assert "schema" in content


def test_docs_page_points_only_at_local_assets(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "cdn.jsdelivr.net" not in html
    assert "unpkg.com" not in html
    asset = client.get("/static-offline-docs/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.content) > 100_000
