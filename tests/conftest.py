"""Shared fixtures: every test writes results, logs and data under its own temporary directory."""

from __future__ import annotations

import pytest

from bench.runner import quiet_lightning

quiet_lightning()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Point results, logs and the data root at a fresh temporary directory."""
    monkeypatch.setenv("SNNBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("SNNBENCH_LOGS", str(tmp_path / "logs"))
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "data"))
    return tmp_path
