"""The multiprocess-metrics directory of one `todo-api serve` run (todo_api.server)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from todo_api.server import METRICS_DIR_ENV, metrics_directory


def test_several_workers_share_a_fresh_directory_removed_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"from an earlier run")
    monkeypatch.setenv(METRICS_DIR_ENV, str(stale))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with metrics_directory(shared=True):
        fresh = Path(os.environ[METRICS_DIR_ENV])
        assert fresh != stale
        assert fresh.parent == tmp_path
        assert fresh.is_dir()
        assert list(fresh.iterdir()) == []
        (fresh / "counter_2.db").write_bytes(b"this run")
    assert not fresh.exists()
    assert METRICS_DIR_ENV not in os.environ


def test_one_process_ignores_a_directory_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(METRICS_DIR_ENV, str(tmp_path))
    with metrics_directory(shared=False):
        assert METRICS_DIR_ENV not in os.environ
