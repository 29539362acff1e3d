"""Shared fixtures: every test writes results, logs and data under its own temporary directory. What test
modules share besides fixtures is in helpers.py (test modules never import each other)."""

from __future__ import annotations

import os

import pytest
import torch

from bench.runner import quiet_lightning

quiet_lightning()

# pytest-xdist (pyproject's addopts) runs a worker per core: their share of the cores each, and so do the
# `bench` commands they start (torch's default of a thread per core, times the workers, oversubscribes).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    THREADS = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(THREADS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Point results, logs, kept models and the data root at a fresh temporary directory."""
    monkeypatch.setenv("SNNBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("SNNBENCH_LOGS", str(tmp_path / "logs"))
    monkeypatch.setenv("SNNBENCH_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "data"))
    return tmp_path
