"""Kept models: the final weights of every ``ok`` run, ``<paths.models>/<run_id>.pt``, which ``bench test
--run RUN_ID`` re-tests without training.

The file is ``torch.save`` of the model's ``state_dict`` (plain tensors, on the CPU), written atomically
(temporary file + rename, like the records), and its record names it: ``model: {"file": "<run_id>.pt",
"bytes": N, "sha256": "..."}``. Reading it back checks the size and the SHA-256 before anything is
unpickled, then loads with ``weights_only=True``: a models folder may be shared, and a pickle can run code.
Whatever a method decides while training and needs at test time lives in its state dict (parameters and
buffers: each method's docstring says where its own state is), so a fresh model built from the record's
config and loaded with these weights is the trained network.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from bench.errors import BenchError, storage_error
from bench.paths import model_path
from bench.results.records import current_umask


def save_model(model, models: str | Path, rid: str) -> dict:
    """Write ``model``'s state dict to ``<models>/<rid>.pt`` atomically and return the record's ``model``
    entry. An OS error (a full disk, a read-only folder) is raised as it is, the temporary file removed:
    the caller decides what a run without its kept model does."""
    import torch

    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    target = model_path(models, rid)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{rid}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return {"file": target.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def retrain_advice(record: dict, path: Path) -> str:
    """How to train run ``record`` (read from ``path``) again, keeping a new model."""
    sweep = record.get("sweep")
    how = (
        f"delete its record {path} and run its sweep {sweep} again"
        if sweep
        else f"`bench run --method {record['method']} --dataset {record['dataset']} --rerun` with the "
        "run's overrides (its record's config)"
    )
    return f"Train it again to keep a new model: {how}."


def load_model(models: str | Path, record: dict, record_path: Path) -> dict:
    """The state dict run ``record`` kept, checked against its record (size and SHA-256) before it is
    unpickled, loaded with ``weights_only=True`` onto the CPU. A :class:`BenchError` saying to retrain
    when the record kept none, or the file is missing, changed or unreadable."""
    import torch

    rid, entry = record["run_id"], record.get("model")
    retrain = retrain_advice(record, record_path)
    if entry is None:
        raise BenchError(
            f"Run {rid} kept no model (its record says model: null: it was recorded before runs kept "
            "their models, or its model could not be written), so it cannot be re-tested. " + retrain
        )
    path = model_path(models, rid)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BenchError(
            f"Run {rid}'s kept model {path} is missing (paths.models, SNNBENCH_MODELS, points at "
            f"{Path(models)}: is it the folder the run kept its model in?), so it cannot be re-tested. "
            + retrain
        ) from None
    except OSError as error:
        raise storage_error(error, f"read the kept model {path}") from error
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != entry["bytes"] or digest != entry["sha256"]:
        raise BenchError(
            f"Run {rid}'s kept model {path} is not the file its record names ({len(data)} bytes, SHA-256 "
            f"{digest[:12]}..., where the record says {entry['bytes']} bytes, {entry['sha256'][:12]}...): "
            "it was changed or replaced since, so it is not loaded. " + retrain
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refused an object, or the file is not torch's
        reason = " ".join(str(error).split())[:300]
        raise BenchError(
            f"Run {rid}'s kept model {path} could not be loaded as tensors ({type(error).__name__}: "
            f"{reason}). " + retrain
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise BenchError(f"Run {rid}'s kept model {path} is not a state dict of tensors. " + retrain)
    return state
