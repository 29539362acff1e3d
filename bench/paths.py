"""Every place snnbench reads or writes, and the environment variables that move them: one owner.

``results/`` (``$SNNBENCH_RESULTS``): ``runs/<run_id>.json`` records, ``running/<run_id>.json`` claims,
``tables/``, ``plots/``, ``README.md``. ``logs/`` (``$SNNBENCH_LOGS``): ``checkpoints/<run_id>/last.ckpt``,
``<method>/<dataset>/<run_id>/`` training logs, ``sweeps/<sweep>/`` local cell logs, ``slurm/<sweep>/``
submitit files. ``models/`` (``$SNNBENCH_MODELS``): ``<run_id>.pt``, the final weights every ``ok`` run
keeps (its state dict), which ``bench test --run`` re-tests. The data root (``$SNNBENCH_DATA``, else
``~/.cache/snnbench``) holds ``<dataset key>/``.
``configs/defaults.yaml`` reads the defaults through the ``snnbench_path`` resolver, so they are written here
only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ENVIRONMENT = {
    "results": "SNNBENCH_RESULTS",
    "logs": "SNNBENCH_LOGS",
    "models": "SNNBENCH_MODELS",
    "data": "SNNBENCH_DATA",
}
FALLBACK = {"results": "results", "logs": "logs", "models": "models", "data": "~/.cache/snnbench"}


#: A name that becomes part of a path (run id, method, dataset, sweep): a letter or digit, then letters,
#: digits and ``. _ + -``, at most 128 characters; so never ``..``, a separator or an absolute path.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")


#: :data:`NAME` in words, for the messages that refuse a name.
NAME_RULE = "letters, digits and . _ + -, starting with a letter or digit"


def is_name(value) -> bool:
    """Whether ``value`` may become part of a path (:data:`NAME`)."""
    return isinstance(value, str) and NAME.fullmatch(value) is not None


def is_label(value) -> bool:
    """Whether ``value`` is a label (a sweep variant's name): one printable line, never made a path."""
    return isinstance(value, str) and value.isprintable()


def default(kind: str) -> str:
    """The default ``results``, ``logs``, ``models`` or ``data`` location: its environment variable, else
    the fallback (as written: ``~`` is expanded where the path is used)."""
    return os.environ.get(ENVIRONMENT[kind], FALLBACK[kind])


def results_root() -> Path:
    return Path(default("results"))


def logs_root() -> Path:
    return Path(default("logs"))


def models_root() -> Path:
    return Path(default("models"))


def data_root() -> Path:
    return Path(default("data")).expanduser()


def runs_dir(results: str | Path) -> Path:
    return Path(results) / "runs"


def claim_path(results: str | Path, rid: str) -> Path:
    return Path(results) / "running" / f"{rid}.json"


def tables_dir(results: str | Path) -> Path:
    return Path(results) / "tables"


def plots_dir(results: str | Path) -> Path:
    return Path(results) / "plots"


def checkpoint_dir(logs: str | Path, rid: str) -> Path:
    """Where a run keeps ``last.ckpt``: keyed by run id, so a re-run or a requeued task finds it."""
    return Path(logs) / "checkpoints" / rid


def model_path(models: str | Path, rid: str) -> Path:
    """Where run ``rid`` keeps its final weights: ``<models>/<run_id>.pt``, its name made from the run id
    (a record's ``model.file`` is checked to be exactly this name, never read as a path)."""
    return Path(models) / model_file(rid)


def model_file(rid: str) -> str:
    return f"{rid}.pt"


def sweep_log_dir(logs: str | Path, sweep: str) -> Path:
    return Path(logs) / "sweeps" / sweep


def slurm_dir(logs: str | Path, sweep: str) -> Path:
    return Path(logs) / "slurm" / sweep
