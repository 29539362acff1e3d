"""Run records: one JSON file per run in ``<results>/runs/<run_id>.json``, written atomically.

Tables and plots are computed from these files only. A record is written to a temporary file in the same
directory and renamed over the target, so a crash mid-write never leaves a partial record, and a failed
re-run never replaces a record that says ``ok``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

from bench import PROJECT_ROOT
from bench.errors import BenchError
from bench.results.paths import runs_dir

VERSIONED_PACKAGES = (
    "snnbench",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "torchmetrics",
    "spikingjelly",
    "omegaconf",
    "numpy",
)


def git_state(root: Path = PROJECT_ROOT) -> dict:
    """Commit of the checkout the code runs from, and whether tracked files differ from it."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_name(device) -> str:
    """A ``torch.device`` in words: the GPU's name, or the CPU's and its core count."""
    if device.type == "cuda":
        import torch  # here: reading records (`bench status`, `bench tables`) needs no torch

        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type}: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def read_record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchError(
            f"Run record {path} is unreadable ({error}). Records are written atomically, so this file "
            "was changed by something else: delete it and re-run that cell."
        ) from error


def read_status(path: Path) -> str | None:
    """The status of the record at ``path``; None when there is none or it is unreadable."""
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def write_record(record: dict, results_dir: str | Path) -> Path:
    """Write ``record`` atomically to ``<results>/runs/<run_id>.json`` and return its path.

    A ``failed`` record never replaces an existing ``ok`` one with the same run id.
    """
    directory = runs_dir(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{record['run_id']}.json"
    if record["status"] != "ok" and read_status(target) == "ok":
        return target
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{record['run_id']}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=2, sort_keys=True, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def load_records(results_dir: str | Path) -> list[dict]:
    """All records under ``<results>/runs/``, sorted by file name."""
    return [read_record(p) for p in sorted(runs_dir(results_dir).glob("*.json"))]
