"""Run records: one JSON file per run in ``<results>/runs/<run_id>.json``, written atomically.

Tables and plots are computed from these files only. A record is written to a temporary file in the same
directory and renamed over the target, so a crash mid-write never leaves a partial record, and a failed
re-run never replaces a record that says ``ok``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import subprocess
import tempfile
from datetime import datetime
from importlib import metadata
from pathlib import Path

from bench import PROJECT_ROOT
from bench.errors import BenchError, storage_error
from bench.metrics.rules import RAW_FIELDS
from bench.paths import NAME_RULE, is_label, is_name, model_file, runs_dir
from bench.results import predictions

_log = logging.getLogger("bench")

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


#: The states a record can be in.
STATUSES = ("ok", "failed", "interrupted", "running")
#: The metrics that are not numbers (or null), and what they are.
TEXT_METRICS = {
    "cost_table": str,
    "ann_reference_table": str,
    "qnn_reference_table": str,
    "memory_model": str,
    "conventions": dict,
}
#: A sweep's comparison track (its file's ``track:``), in the README's order: ``matched`` (one backbone,
#: settings matched across methods), ``paper`` (each method's own network and settings), ``ablation`` (a
#: method's components switched off).
TRACKS = ("matched", "paper", "ablation")
#: What a sweep cell's record says of its sweep file, as the file was when the cell ran: its track,
#: description, reference variant and path. The tables read these, never the file (renaming or editing it
#: moves no published row). Beside the config, not in it: no run id depends on them. ``None`` in a
#: ``bench run`` record; absent from records made before they were recorded.
SWEEP_FACTS = ("track", "sweep_description", "sweep_reference", "sweep_file")
#: What a cell's record says of its place in a tuned sweep (bench.sweep.tuning): ``stage`` is ``tuning``
#: for a tuning run (validated, never tested), ``tuning`` the configurations a ranked cell's choice was made
#: from and the choice. ``None`` elsewhere; absent from records made before they were recorded.
CELL_FACTS = ("stage", "tuning")
TUNING_STAGE = "tuning"
#: A tested run is *at chance* when its test accuracy is at most this many points above chance (one over
#: its dataset's number of classes): it learnt next to nothing, whatever its status says.
CHANCE_POINTS = 2


def at_chance(accuracy: float, num_classes: int) -> bool:
    """Whether a test accuracy lies within :data:`CHANCE_POINTS` points of chance, or below it."""
    return 100 * (accuracy - 1 / num_classes) <= CHANCE_POINTS + 1e-9


def record_at_chance(record: dict) -> bool:
    """Whether an ok record's run ended at chance: its ``at_chance``, or for a record made before records
    said so, its test accuracy against its dataset's classes (``dataset_facts``) where it has them."""
    if "at_chance" in record:
        return bool(record["at_chance"])
    classes = (record.get("dataset_facts") or {}).get("num_classes")
    accuracy = (record.get("metrics") or {}).get("test_acc")
    usable = isinstance(classes, int) and not isinstance(classes, bool) and classes > 0 and _number(accuracy)
    return record.get("status") == "ok" and usable and at_chance(accuracy, classes)


def chance_note(record: dict) -> str | None:
    """What ``bench run`` says of a run its record marks ``at_chance`` (None for any other run)."""
    if not record.get("at_chance"):
        return None
    classes = (record.get("dataset_facts") or {}).get("num_classes")
    chance = f" ({100 / classes:.2f} %, 1 of {classes} classes)" if isinstance(classes, int) else ""
    return (
        f"Test accuracy {100 * record['metrics']['test_acc']:.2f} % is within {CHANCE_POINTS} points of "
        f"chance{chance}: this run learnt next to nothing (too few epochs or steps?). Its record says so "
        "(at_chance: true). `bench tables` never publishes or ranks a `bench run`; keep scratch runs out "
        "of the results folder altogether with paths.results=/tmp/scratch (or SNNBENCH_RESULTS)."
    )


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def first_non_finite(node, where: str = "") -> tuple[str, float] | None:
    """The first inf or nan in JSON-like content (what a record cannot hold), as (its dotted key, value);
    None if there is none."""
    if isinstance(node, dict):
        items = ((f"{where}.{key}" if where else str(key), value) for key, value in node.items())
    elif isinstance(node, list):
        items = ((f"{where}[{i}]", value) for i, value in enumerate(node))
    else:
        return (where, node) if isinstance(node, float) and not math.isfinite(node) else None
    return next((found for key, value in items if (found := first_non_finite(value, key)) is not None), None)


def _no_constant(name: str):
    raise ValueError(f"it holds {name}, which a run record never does")


def record_problem(record, path: Path) -> str | None:
    """Why ``record`` (read from ``path``) is not a run record this code may use, or None. Records may come
    from someone else: every name that becomes a path (run id, method, dataset, sweep) is checked here,
    where it is read, and so is every value the tables compute with."""
    if not isinstance(record, dict):
        return f"it is a JSON {type(record).__name__}, not an object"
    for key in ("run_id", "method", "dataset"):
        if not is_name(record.get(key)):
            return f"its {key} {record.get(key)!r} is not a name ({NAME_RULE})"
    if record["run_id"] != path.stem:
        return f"its run_id {record['run_id']} is not its file's name"
    if record.get("sweep") is not None and not is_name(record["sweep"]):
        return f"its sweep {record['sweep']!r} is not a name ({NAME_RULE})"
    if record.get("variant") is not None and not is_label(record["variant"]):
        return f"its variant {record['variant']!r} is not a line of text"
    if record.get("track") is not None and record["track"] not in TRACKS:
        return f"its track {record['track']!r} is not one of {', '.join(TRACKS)}"
    if record.get("sweep_reference") is not None and not is_label(record["sweep_reference"]):
        return f"its sweep_reference {record['sweep_reference']!r} is not a line of text"
    for key in ("outside_design", "at_chance"):
        if not isinstance(record.get(key, False), bool):
            return f"its {key} {record[key]!r} is not true or false"
    if record.get("outside_design_reason") is not None and not isinstance(
        record["outside_design_reason"], str
    ):
        return f"its outside_design_reason {record['outside_design_reason']!r} is not a text"
    for key in ("sweep_description", "sweep_file"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"its {key} {record[key]!r} is not a text"
    if record.get("sweep") is None and any(record.get(key) is not None for key in SWEEP_FACTS):
        return "it carries a sweep file's facts (track, ...) but names no sweep"
    found = _cell_facts_problem(record)
    if found is not None:
        return found
    history = record.get("val_history")
    if history is not None and not (
        isinstance(history, list) and all(v is None or (_number(v) and 0 <= v <= 1) for v in history)
    ):
        return "its val_history is not a list of validation accuracies (fractions or null)"
    if record.get("status") not in STATUSES:
        return f"its status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    seed = record.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        return f"its seed {seed!r} is not an integer"
    for key, kind in (("metrics", dict), ("config", dict), ("error", str)):
        if record.get(key) is not None and not isinstance(record[key], kind):
            return f"its {key} is not a JSON {'object' if kind is dict else 'string'}"
    if record.get("test_predictions") is not None:
        found = predictions.problem(record["test_predictions"])
        if found is not None:
            return found
    details = record.get("method_details")
    facts = details.get("facts") if isinstance(details, dict) else None
    if facts is not None and not (
        isinstance(facts, dict)
        and all(v is None or isinstance(v, bool) or _number(v) or is_label(v) for v in facts.values())
    ):
        return "its method_details.facts is not an object of numbers, true/false, null and lines of text"
    if record.get("wall_time_s") is not None and not _number(record["wall_time_s"]):
        return f"its wall_time_s {record['wall_time_s']!r} is not a number"
    if record.get("started_at") is not None:
        try:
            datetime.fromisoformat(record["started_at"])
        except (TypeError, ValueError):
            return f"its started_at {record['started_at']!r} is not an ISO date"
    metrics = record.get("metrics") or {}
    for key, value in metrics.items():
        kind = TEXT_METRICS.get(key)
        if not (value is None or (isinstance(value, kind) if kind else _number(value))):
            expected = {str: "a text", dict: "an object"}.get(kind, "a number or null")
            return f"its metric {key} is {value!r}, not {expected}"
        if kind is str and value is not None and not is_name(value):  # it names a file to load
            return f"its metric {key} {value!r} is not a name ({NAME_RULE})"
    if record["status"] == "ok" and record.get("stage") == TUNING_STAGE:  # validated, never tested
        accuracy = metrics.get("val_acc")
        if not _number(accuracy) or not 0 <= accuracy <= 1:
            return f"it is an ok tuning run but its validation accuracy {accuracy!r} is not a fraction"
        return _model_problem(record)
    if record["status"] == "ok":
        accuracy, steps = metrics.get("test_acc"), metrics.get("time_steps")
        if not _number(accuracy) or not 0 <= accuracy <= 1:
            return f"it says ok but its test accuracy {accuracy!r} is not a fraction between 0 and 1"
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            return f"it says ok but its time_steps {steps!r} is not a whole number >= 1"
        return layers_problem(record) or _model_problem(record)
    return _model_problem(record)


#: A kept model's entry in its record: ``{"file": "<run_id>.pt", "bytes": N, "sha256": "<hex>"}``.
MODEL_KEYS = {"file", "bytes", "sha256"}
SHA256 = re.compile(r"[0-9a-f]{64}")


def _model_problem(record: dict) -> str | None:
    """Why a record's ``model`` (the kept weights, or null) or ``tested_from`` (the run a ``bench test``
    record re-tested, or null) is not what snnbench writes, or None. The file is never a path taken from
    the record: it must be exactly ``<run_id>.pt``, and ``bench test`` opens that name in ``paths.models``."""
    tested_from = record.get("tested_from")
    if tested_from is not None and (not is_name(tested_from) or tested_from == record["run_id"]):
        return f"its tested_from {tested_from!r} is not another run's id ({NAME_RULE})"
    model = record.get("model")
    if model is None:
        return None
    if not isinstance(model, dict) or set(model) != MODEL_KEYS:
        return "its model is not an object of file, bytes and sha256, or null"
    if model["file"] != model_file(record["run_id"]):
        return f"its model file {model['file']!r} is not {model_file(record['run_id'])} (its run id's)"
    size = model["bytes"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return f"its model's bytes {size!r} is not a whole number >= 1"
    if not isinstance(model["sha256"], str) or SHA256.fullmatch(model["sha256"]) is None:
        return f"its model's sha256 {model['sha256']!r} is not 64 lower-case hex digits"
    if record.get("status") != "ok" or record.get("stage") == TUNING_STAGE or tested_from is not None:
        return "it keeps a model but is not an ok run that was trained and tested"
    return None


def _scalar(value) -> bool:
    return value is None or isinstance(value, bool | str) or _number(value)


def _cell_facts_problem(record: dict) -> str | None:
    """Why a record's ``stage`` or ``tuning`` (:data:`CELL_FACTS`) is not what a tuned sweep writes, or
    None: the tables print the tried and chosen configurations."""
    if record.get("stage") not in (None, TUNING_STAGE):
        return f"its stage {record['stage']!r} is not tuning or null"
    tuning = record.get("tuning")
    if tuning is None:
        return None
    shape = "an object of sweep, rule, space, candidates and chosen"
    if not isinstance(tuning, dict) or set(tuning) != {"sweep", "rule", "space", "candidates", "chosen"}:
        return f"its tuning is not {shape}"
    if not is_name(tuning["sweep"]) or not isinstance(tuning["rule"], str):
        return "its tuning's sweep is not a name or its rule not a text"
    settings = [tuning["chosen"]] + [c.get("overrides") for c in tuning["candidates"] if isinstance(c, dict)]
    if not isinstance(tuning["candidates"], list) or len(settings) != len(tuning["candidates"]) + 1:
        return "its tuning's candidates are not a list of objects"
    for setting in settings:
        if not isinstance(setting, dict) or not all(
            is_label(key) and _scalar(value) for key, value in setting.items()
        ):
            return "its tuning holds a configuration that is not an object of config keys and plain values"
    for candidate in tuning["candidates"]:
        score = candidate.get("val_acc")
        if score is not None and not (_number(score) and 0 <= score <= 1):
            return f"its tuning holds a validation accuracy {score!r} that is not a fraction"
    space = tuning["space"]
    if not isinstance(space, dict) or not all(
        isinstance(values, list) and all(_scalar(v) for v in values) for values in space.values()
    ):
        return "its tuning's space is not an object of lists of plain values"
    return None


def layers_problem(record: dict) -> str | None:
    """Why an ok record's per-layer raw counts (what re-pricing computes with) are unusable, or None."""
    layers = record.get("layers")
    if layers is None:
        return None
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        return "its layers are not a list of JSON objects"
    for layer in layers:
        counts = layer.get("counts")
        if counts is None:
            continue
        if not isinstance(counts, dict):
            return f"the counts of its layer {layer.get('name')!r} are not a JSON object"
        name = layer.get("name")
        for key in RAW_FIELDS:
            if not _number(counts.get(key)) or counts[key] < 0:
                return f"its layer {name!r} has count {key} = {counts.get(key)!r}, not a number >= 0"
        if not _number(layer.get("weight_bits")) or layer["weight_bits"] <= 0:
            return f"its layer {name!r} has weight_bits {layer.get('weight_bits')!r}, not a number > 0"
    return None


def read_record(path: Path) -> dict:
    """The record at ``path``, checked (:func:`record_problem`); a :class:`BenchError` naming the file if
    it cannot be read or is not a run record."""
    try:
        record = json.loads(path.read_text(), parse_constant=_no_constant)
        problem = record_problem(record, path)
    except (OSError, json.JSONDecodeError) as error:
        raise BenchError(
            f"Run record {path} is unreadable ({error}). Records are written atomically, so this file "
            "was changed by something else: delete it and re-run that cell."
        ) from error
    except ValueError as error:  # NaN or Infinity (_no_constant)
        problem = str(error)
    if problem:
        raise BenchError(
            f"{path} is not a run record snnbench can use: {problem}. It was not written by snnbench (or "
            "was edited since): delete it, or move it out of the results folder, and re-run that cell."
        )
    return record


def read_status(path: Path) -> str | None:
    """The status of the record at ``path``; None when there is none or it is unreadable."""
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def write_record(record: dict, results_dir: str | Path) -> Path:
    """Write ``record`` atomically to ``<results>/runs/<run_id>.json`` and return its path; the file's mode
    follows the umask, like every other file (a temporary file is created 0600). An OS error (a full
    disk, a read-only folder) becomes a :class:`StorageError` naming the record.

    A ``failed`` record never replaces an existing ``ok`` one with the same run id.
    """
    directory = runs_dir(results_dir)
    target = directory / f"{record['run_id']}.json"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if record["status"] != "ok" and read_status(target) == "ok":
            return target
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{record['run_id']}.", suffix=".tmp")
    except OSError as error:
        raise storage_error(error, f"write the run record {target}") from error
    try:
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            json.dump(record, handle, indent=2, sort_keys=True, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise storage_error(error, f"write the run record {target}") from error
        raise
    return target


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_records(results_dir: str | Path) -> list[dict]:
    """All usable records under ``<results>/runs/``, sorted by file name; one that is not (unreadable, or
    not a run record: :func:`read_record`) is left out with a warning naming it, so one bad file does not
    stop the tables."""
    records = []
    for path in sorted(runs_dir(results_dir).glob("*.json")):
        try:
            records.append(read_record(path))
        except BenchError as error:
            _log.warning("%s Left out of the tables.", error)
    return records
