"""Shared fixtures: every test writes results, logs and data under its own temporary directory. What test
modules share besides fixtures is in helpers.py (test modules never import each other)."""

from __future__ import annotations

import os

import pytest
import torch

from bench.runner import quiet_lightning

quiet_lightning()

# pytest-xdist (pyproject's addopts) runs one worker per core: one torch thread each, not one per core each.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Point results, logs and the data root at a fresh temporary directory."""
    monkeypatch.setenv("SNNBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("SNNBENCH_LOGS", str(tmp_path / "logs"))
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "data"))
    return tmp_path
