"""One run: resolve and check the config, build DataModule + method + Trainer, train, validate, test, record.

This is the single code path behind ``bench run`` (and every sweep cell). Whatever happens, the run leaves
one record: ``ok`` with its metrics, or ``failed`` with the error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import pickle
import re
import shutil
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.utilities.warnings import PossibleUserWarning
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities import rank_zero_only

from bench import claims, paths
from bench import config as config_mod
from bench.errors import BenchError, ConfigError, Diverged, RunInterrupted, StorageError, storage_error
from bench.guards import DivergenceGuard, diverged
from bench.kept import load_model, save_model
from bench.loggers import ResumableCSVLogger, make_logger
from bench.metrics import EnergyMetrics
from bench.metrics.rules import PRICING_KEYS
from bench.paths import NAME_RULE, checkpoint_dir, claim_path, is_name, model_path, runs_dir
from bench.registry import get_dataset, get_method
from bench.results import predictions
from bench.results.pricing import Pricing, priced
from bench.results.records import (
    CELL_FACTS,
    SWEEP_FACTS,
    TUNING_STAGE,
    at_chance,
    device_name,
    first_non_finite,
    git_state,
    package_versions,
    read_record,
    read_status,
    write_record,
)
from bench.training_lines import ModelSummary, progress_display


@dataclass
class RunResult:
    record: dict
    path: Path
    trained: bool = True  # False: an ok record of this run id existed, shown priced under this config


_log = logging.getLogger("bench")


#: Warnings every run printed that say nothing about it, each silenced by its message, category and the
#: module it comes from (nothing else is): Lightning's hint to launch with ``srun``, given wherever srun is
#: installed (a sweep's SLURM tasks are launched by submitit, and `bench run` on a login node needs none),
#: and torch's deprecation of the ``LeafSpec`` class, which Lightning's own loader code still builds.
LIGHTNING_NOISE = (
    (
        "The `srun` command is available on your system but is not used",
        PossibleUserWarning,
        "lightning_fabric.plugins.environments.slurm",
    ),
    ("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "pytorch_lightning.utilities._pytree"),
)


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (accelerator lines, tips, :data:`LIGHTNING_NOISE`) out of the
    user's terminal."""
    for name in ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message, category, module in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", re.escape(message), category, re.escape(module) + r"\Z")


def _to_kwargs(group: DictConfig) -> dict:
    return OmegaConf.to_container(group, resolve=True)


def run_callbacks(cfg: DictConfig) -> tuple[EnergyMetrics, DivergenceGuard]:
    """The callbacks a run adds to ``build_trainer``'s own: the metrics callback and the divergence guard
    (benchmarks/harness_overhead.py times a Trainer with exactly these)."""
    return EnergyMetrics(**_to_kwargs(cfg.metrics)), DivergenceGuard()


class ValidationHistory(pl.Callback):
    """Each epoch's validation accuracy, for the record: where a run stood when its schedule ended (a
    comparison's training-length rule is judged on it). Kept in checkpoints: a resumed run has it all."""

    def __init__(self):
        self.history: list[float | None] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val/acc")
        self.history.append(None if value is None else round(float(value), 4))

    def state_dict(self) -> dict:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict["history"])


def build(cfg: DictConfig, method: str, dataset: str):
    """(datamodule, model) from a resolved config; the dataset's facts go into the method."""
    datamodule = get_dataset(dataset)(**_to_kwargs(cfg.data))
    try:
        model = get_method(method)(**datamodule.facts.for_method(), **_to_kwargs(cfg.method))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"Could not build method {method} from its config: {error}") from error
    EnergyMetrics.check_countable(model)  # a network whose ops cannot all be counted never trains
    return datamodule, model


def build_trainer(cfg: DictConfig, method: str, dataset: str, rid: str, callbacks=()) -> pl.Trainer:
    trainer_kwargs = _to_kwargs(cfg.trainer)
    # the Rich bar on a terminal, plain lines in a log (bench.training_lines)
    shown, trainer_kwargs["enable_progress_bar"] = progress_display(cfg)
    callbacks = [*callbacks, *shown]
    if trainer_kwargs.get("enable_model_summary") is not False:  # Lightning's default: a summary
        callbacks.append(ModelSummary())  # without Lightning's FLOPs (always 0 here)
    if trainer_kwargs.get("enable_checkpointing", True):
        # The newest epoch only, as last.ckpt, overwritten at every epoch end.
        latest = ModelCheckpoint(
            dirpath=checkpoint_dir(cfg.paths.logs, rid),
            filename="last",
            save_top_k=1,
            enable_version_counter=False,
        )
        callbacks.append(latest)
    plugins = []
    if SLURMEnvironment.detect():
        # Requeue has one owner, the sweep's submitit task; Lightning's SIGUSR1 auto-requeue stays off.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    logger = make_logger(cfg, method, dataset, rid)
    try:
        return pl.Trainer(
            **trainer_kwargs,
            callbacks=callbacks,
            logger=logger,
            plugins=plugins or None,
            default_root_dir=str(cfg.paths.logs),
        )
    except Exception as error:  # a device or precision this machine lacks: Lightning says which
        raise ConfigError(
            f"Lightning cannot build a Trainer from trainer.* {trainer_kwargs} on this machine: "
            f"{type(error).__name__}: {error}"
        ) from error


def _logged(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def _collect_metrics(trainer: pl.Trainer, model: pl.LightningModule, after_fit: dict) -> dict:
    logged = _logged(trainer)
    if "test/acc" not in logged:
        raise BenchError("The test loop produced no accuracy: is the test split empty?")
    # Information per step: a K-level spike carries ceil(log2(K + 1)) bits, so T steps of 2-bit spikes
    # carry what 2T binary steps do (comparisons at equal T x bits, not only equal T).
    levels = model.spike_levels()
    bits = None if levels is None else math.ceil(math.log2(levels + 1))
    return {
        "test_acc": logged["test/acc"],
        "test_loss": logged["test/loss"],
        "val_acc": after_fit.get("val/acc"),
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": trainer.current_epoch,
        "spike_levels": levels,
        "spike_bits": bits,
        "bit_steps": None if bits is None else bits * model.time_steps,
    }


def new_record(rid: str, method: str, dataset: str, cfg: DictConfig, **fields) -> dict:
    """A run's record as it starts (``running``): what it is, its resolved config and where it runs;
    ``fields`` (its sweep, variant, ...) in their place before the status."""
    record = {"run_id": rid, "method": method, "dataset": dataset, "seed": cfg.seed}
    record.update(dict.fromkeys((*SWEEP_FACTS, *CELL_FACTS)), **fields)
    return record | {
        "status": "running",
        "error": None,
        "metrics": {},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "git": git_state(),
        "versions": package_versions(),
        "device": None,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": None,
        "model": None,  # the kept weights (bench.kept), once a training run ends ok
    }


def _validation_metrics(trainer: pl.Trainer, model: pl.LightningModule, after_fit: dict) -> dict:
    """A tuning run's metrics: what the choice reads (the last epoch's validation accuracy) and the run's
    size; nothing of the test set."""
    if after_fit.get("val/acc") is None:
        raise BenchError("The tuning run produced no validation accuracy: is the validation split empty?")
    return {
        "val_acc": after_fit["val/acc"],
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": trainer.current_epoch,
        "time_steps": model.time_steps,
    }


def run(
    method: str,
    dataset: str,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
    sweep_facts: dict | None = None,
    rerun: bool = False,
) -> RunResult:
    """Train, validate and test ``method`` on ``dataset``; write and return the run record.

    ``sweep_facts``: what a sweep cell's record says of its sweep file (the keys
    :data:`~bench.results.records.SWEEP_FACTS`: track, description, reference variant, path), written
    beside the config and so in no run id; ``None`` (``bench run``) records them as ``None``.

    A run id with an ``ok`` record is not trained again unless ``rerun``: the record is returned priced
    under this config's ``metrics.*`` pricing keys (cost table, counting conventions, memory model), which
    are in no run id because they change nothing that trains.

    Everything a config decides (DataModule, method, metrics callback, Trainer) is built and checked before
    anything is recorded, so a config mistake leaves no record. Then the run claims its run id (one run id
    runs once, see :mod:`bench.claims`); any error after that leaves a ``failed`` record (``interrupted``
    for Ctrl+C, SIGTERM or a SLURM preemption) and is re-raised. A run whose ``last.ckpt`` exists (an
    interrupted earlier attempt with the same run id) resumes from it; one that cannot be resumed from
    (unreadable, not a Lightning checkpoint, non-finite weights) is moved aside and the run starts from
    scratch, saying so in its record. The checkpoint is deleted once the ``ok`` record is written, and when
    the run diverged.
    """
    overrides = [*overrides, *([f"seed={seed}"] if seed is not None else [])]
    cfg = config_mod.load_config(method, dataset, overrides)
    rid = config_mod.run_id(method, dataset, cfg)
    existing = runs_dir(cfg.paths.results) / f"{rid}.json"
    if not rerun and read_status(existing) == "ok":
        pricing = Pricing(**{key.split(".", 1)[1]: OmegaConf.select(cfg, key) for key in PRICING_KEYS})
        return RunResult(priced(read_record(existing), pricing), existing, trained=False)
    record = new_record(rid, method, dataset, cfg, sweep=cfg.get("sweep"), variant=cfg.get("variant"))
    record.update({key: (sweep_facts or {}).get(key) for key in (*SWEEP_FACTS, *CELL_FACTS)})
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg, method, dataset)  # constructors check their arguments: nothing ran yet
    reason = model.outside_design()  # allowed, and said: a comparison ranks in-design runs only
    record.update(outside_design=reason is not None, outside_design_reason=reason)
    energy, guard = run_callbacks(cfg)
    history = ValidationHistory()
    trainer = build_trainer(cfg, method, dataset, rid, callbacks=[energy, guard, history])
    claim = claim_path(cfg.paths.results, rid)
    with _termination_interrupts() as arm:
        mine = claims.claim(claim) if rank_zero_only.rank == 0 else None
        keep_claim = False
        start = time.perf_counter()
        try:
            arm()  # from here on, a termination signal ends the run as `interrupted`, recorded
            _train_and_test(cfg, rid, record, datamodule, model, trainer, energy, history)
        except BaseException as error:
            interrupted = isinstance(error, KeyboardInterrupt | SystemExit)
            # A preempted SLURM task is requeued by submitit: its claim stays, so the cell remains its own.
            keep_claim = interrupted and claims.slurm_job() is not None
            raise _recorded_failure(record, cfg, error, start, interrupted) from None
        finally:
            if mine is not None and not keep_claim:
                claims.release(claim, mine)
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    path = _write(record, cfg)
    if rank_zero_only.rank == 0:
        shutil.rmtree(checkpoint_dir(cfg.paths.logs, rid), ignore_errors=True)
    return RunResult(record, path)


#: What ``bench test`` may override: how and where a kept model is tested (Trainer, metrics callback, the
#: loader's batch size and workers, the data root), never what was trained or which items are tested.
TEST_OVERRIDES = ("trainer.*", "metrics.*", "data.batch_size", "data.num_workers", "data.root")


def _check_test_overrides(changes: DictConfig) -> None:
    allowed = {key for key in TEST_OVERRIDES if not key.endswith("*")}
    groups = {key[:-2] for key in TEST_OVERRIDES if key.endswith("*")}
    for group, values in changes.items():
        keys = [f"{group}.{key}" for key in values] if isinstance(values, DictConfig) else [str(group)]
        refused = [key for key in keys if group not in groups and key not in allowed]
        if refused:
            raise ConfigError(
                f"bench test cannot override {', '.join(refused)}: it re-tests the trained model on the "
                f"same test items, so only {', '.join(TEST_OVERRIDES)} may change (how and where it is "
                "tested). To change anything else, train a run with it (`bench run`)."
            )


def _interpolation(node, where: str = "") -> str | None:
    """The first config value of a record that OmegaConf would resolve (``${...}``), or None: a record may
    come from someone else, and its config is read as data, never resolved (``${oc.env:...}``)."""
    if isinstance(node, dict):
        return next(
            (f for k, v in node.items() if (f := _interpolation(v, f"{where}{k}.")) is not None), None
        )
    if isinstance(node, list):
        return next((f for v in node if (f := _interpolation(v, where)) is not None), None)
    return where.rstrip(".") if isinstance(node, str) and "${" in node else None


def retest(run_id: str, overrides: list[str] | tuple[str, ...] = ()) -> RunResult:
    """``bench test --run RUN_ID``: test the model run ``run_id`` kept, without training, and write a new
    record linked to the training record (``tested_from``).

    The DataModule and the method are rebuilt from the training record's resolved config, where the
    ``overrides`` may change only :data:`TEST_OVERRIDES` (another device, precision or batch size); the
    ``paths.*`` are this environment's. The kept weights are checked against the record and loaded with
    ``weights_only=True`` (:mod:`bench.kept`), then tested by the run's own test code (:func:`_test`),
    with the same metrics callback. The new record's id is ``<run_id>-test-<hash>`` (the same re-test
    replaces its earlier record); it is ``ok`` with the metrics and test predictions a run records, the
    training run's validation accuracy, epoch count and method details (what training decided), and
    belongs to no sweep. A re-test that fails leaves no record: the error says why."""
    if not is_name(run_id):
        raise ConfigError(f"--run {run_id!r} is not a run id ({NAME_RULE}).")
    path = runs_dir(paths.default("results")) / f"{run_id}.json"
    if not path.exists():
        raise BenchError(
            f"There is no run record {path}: check the run id (`bench status SWEEP` lists a sweep's) and "
            "SNNBENCH_RESULTS (unset, it is results/ in the current folder)."
        )
    trained = read_record(path)
    if trained["status"] != "ok" or trained.get("stage") == TUNING_STAGE or trained.get("tested_from"):
        what = (
            f"is a re-test of {trained['tested_from']}: re-test that run instead"
            if trained.get("tested_from")
            else "is a tuning run (scored on validation, never tested; it keeps no model)"
            if trained.get("stage") == TUNING_STAGE
            else f"did not end ok (its status is {trained['status']})"
        )
        raise BenchError(f"Run {run_id} {what}, so there is no kept model to test.")
    config = trained.get("config")
    needed = ("seed", "logger", "method", "data", "trainer", "metrics")
    if not isinstance(config, dict) or any(key not in config for key in needed):
        raise BenchError(f"The record {path} holds no complete resolved config to rebuild the run from.")
    found = _interpolation(config)
    if found is not None:
        raise BenchError(f"The record {path} holds an interpolation (${{...}}) at config.{found}: refused.")
    changes = config_mod.parse_overrides(list(overrides))
    _check_test_overrides(changes)
    here = {"paths": {key: paths.default(key) for key in config_mod.PATHS}}
    cfg = OmegaConf.merge(OmegaConf.create(config), here, changes)
    method, dataset = trained["method"], trained["dataset"]
    try:
        config_mod.validate(cfg, get_method(method), get_dataset(dataset))
    except ConfigError as error:
        git = trained.get("git")
        commit = git.get("commit") if isinstance(git, dict) else None
        error.add_note(
            f"(The config is the training record's {path} with the test's overrides: a key this code no "
            f"longer accepts means another version trained the run{f', commit {commit}' if commit else ''}.)"
        )
        raise
    rid = config_mod.retest_id(run_id, cfg)
    # a re-test belongs to no sweep, so no sweep table counts the run twice; its weights are the training
    # run's (that record's `model`)
    record = new_record(rid, method, dataset, cfg, sweep=None, variant=None, tested_from=run_id)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg, method, dataset)
    state = load_model(cfg.paths.models, trained, path)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # keys or shapes differ: the network this code builds is another one
        reason = " ".join(str(error).split())[:400]
        raise BenchError(
            f"Run {run_id}'s kept model does not fit the network this code builds from its config "
            f"({reason}): the method was changed since the run was trained. Test it with the version that "
            "trained it (its record's git commit), or train it again with this one."
        ) from error
    reason = model.outside_design()
    record.update(outside_design=reason is not None, outside_design_reason=reason)
    record["dataset_facts"] = datamodule.facts.for_record()
    energy, guard = run_callbacks(cfg)
    trainer = build_trainer(cfg, method, dataset, rid, callbacks=[energy, guard])
    start = time.perf_counter()
    learnt = trained["metrics"]
    after_fit = {} if learnt.get("val_acc") is None else {"val/acc": learnt["val_acc"]}
    _test(record, datamodule, model, trainer, energy, after_fit, details=trained.get("method_details") or {})
    record["metrics"]["epochs"] = learnt.get("epochs")  # the training run's, not this Trainer's (none)
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    return RunResult(record, _write(record, cfg))


def _train_and_test(cfg, rid, record, datamodule, model, trainer, energy, history) -> None:
    """Resume or start, train, test, and fill the record in as ``ok``."""
    resume = _resume_point(cfg, rid, record)
    if isinstance(trainer.logger, ResumableCSVLogger):
        trainer.logger.resuming = resume is not None
    record["dataset_facts"] = datamodule.facts.for_record()
    # weights_only: a checkpoint folder may be writable by others, and a pickle can run code
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    if trainer.interrupted:
        raise KeyboardInterrupt
    after_fit = _logged(trainer)
    record["val_history"] = history.history
    if record.get("stage") == TUNING_STAGE:  # validated only: the test set never touches the choice
        record.update(metrics=_validation_metrics(trainer, model, after_fit), status="ok")
        record["device"] = device_name(trainer.strategy.root_device)
        # No model kept: a tuning run is a candidate configuration scored on validation, never tested;
        # the ranked cell trains the chosen one again (and keeps its model).
        return
    _test(record, datamodule, model, trainer, energy, after_fit)
    _keep_model(record, cfg, model)


def _test(record, datamodule, model, trainer, energy, after_fit: dict, details: dict | None = None) -> None:
    """Test ``model`` and fill the record in as ``ok``: the device, the metrics (with ``after_fit``, what
    training logged last), the metrics callback's per-layer counts, the method's details (``details``,
    else ``model.run_details()``) and the per-item test predictions. One code path for a run's test and
    for ``bench test`` re-testing a kept model (:func:`retest`), so both measure alike."""
    trainer.test(model, datamodule=datamodule, verbose=False)
    record["device"] = device_name(trainer.strategy.root_device)
    metrics = {**_collect_metrics(trainer, model, after_fit), **energy.summary}
    details = model.run_details() if details is None else details
    found = first_non_finite({"metrics": metrics, "method_details": details})
    if found is not None:  # e.g. a NaN test loss, a learnt tau thrown to infinity
        raise diverged(model, f"The run's {found[0]} is {found[1]} (the trained network is not finite)")
    record.update(metrics=metrics, layers=energy.layers, method_details=details, status="ok")
    record["at_chance"] = at_chance(metrics["test_acc"], datamodule.num_classes)  # said, never in the run id
    outcomes = getattr(model, "test_outcomes", None)  # None: a plugin's own test epoch hooks skip ours
    record["test_predictions"] = predictions_entry(outcomes, datamodule.test_ids)


def _keep_model(record: dict, cfg: DictConfig, model) -> None:
    """Keep the tested model's weights in ``<paths.models>/<run_id>.pt`` (global rank 0, which writes the
    record) and name them in the record. One that cannot be written (a full disk, a read-only folder)
    loses no run: the record says ``model: null`` and a warning says why."""
    record["model"] = None
    if rank_zero_only.rank != 0:
        return
    rid = record["run_id"]
    try:
        record["model"] = save_model(model, cfg.paths.models, rid)
    except OSError as error:
        _log.warning(
            "%s: could not keep its model in %s (%s). The run is recorded ok without it (model: null), so "
            "`bench test --run %s` cannot re-test it; with room in paths.models (SNNBENCH_MODELS), the "
            "same run with --rerun trains it again and keeps one.",
            rid,
            model_path(cfg.paths.models, rid),
            error.strerror or error,
            rid,
        )


def predictions_entry(outcomes, test_ids) -> dict | None:
    """The record's ``test_predictions`` (:mod:`bench.results.predictions`) of the gathered test outcomes
    ``[2, N]``, with the tested items' ids where the DataModule names them (k-fold test sets).

    The outcomes are the first N items of the test set in its order: the test loader is never shuffled, a
    ``trainer.limit_test_batches`` run tests a prefix, and under DDP ``BenchMethod.on_test_epoch_end``
    interleaves the ranks' shares (DistributedSampler: rank r tests items r, r + W, ...) back into that
    order and drops the sampler's padding; so their ids are the first N ids. More outcomes than ids cannot
    be matched to items: an error, rather than a record naming the wrong items."""
    if outcomes is None:
        return None
    if test_ids is None:
        return predictions.encode(outcomes)
    tested = int(outcomes.shape[1])
    if tested > len(test_ids):
        raise BenchError(
            f"The test produced {tested} predictions but the test set holds {len(test_ids)} items "
            "(data.folds): they cannot be matched to the items tested, so the run is not recorded as ok. "
            "Was the test set changed, or do the method's test hooks add items of their own?"
        )
    return predictions.encode(outcomes, test_ids[:tested])


def _recorded_failure(record: dict, cfg: DictConfig, error: BaseException, start: float, interrupted: bool):
    """Record a run that did not end ``ok`` (``interrupted`` or ``failed``; never over an ``ok`` record)
    and return the error to raise, its notes saying where it is recorded. A diverged run's checkpoint is
    deleted: resuming it would test the diverged weights."""
    record["status"] = "interrupted" if interrupted else "failed"
    record["error"] = describe_error(error)
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    if isinstance(error, Diverged) and rank_zero_only.rank == 0:
        shutil.rmtree(checkpoint_dir(cfg.paths.logs, record["run_id"]), ignore_errors=True)
    if interrupted:
        # Lightning turns Ctrl+C into SystemExit after its own shutdown; say what happened.
        error = RunInterrupted(record["error"])
    path = runs_dir(cfg.paths.results) / f"{record['run_id']}.json"
    if read_status(path) == "ok":
        error.add_note(f"The ok record of this run in {path} is kept; this attempt is not recorded.")
        return error
    try:
        path = _write(record, cfg)
    except StorageError as write_error:
        error.add_note(f"Its {record['status']} record could not be written either. {write_error}")
        return error
    error.add_note(f"The {record['status']} run is recorded in {path}.")
    return error


@contextlib.contextmanager
def _termination_interrupts():
    """While the run holds its claim, SIGTERM (``kill``, a local sweep being stopped) ends it like Ctrl+C,
    recorded ``interrupted``, its claim released, instead of killing it with neither. Only where SIGTERM
    would kill the process (its handler is the default): Lightning's handler during fit stops the loops at
    the next batch, and submitit's in a SLURM task owns requeueing. The signal is held back while the claim
    is taken and acts from ``arm()`` (called first thing inside the run's ``try``)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield lambda: None
        return

    def interrupt(signum, frame):
        if signal.getsignal(signal.SIGTERM) is interrupt:  # not called by Lightning's handler chain
            raise KeyboardInterrupt

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


#: What a Lightning checkpoint holds that resuming needs.
CHECKPOINT_KEYS = ("epoch", "global_step", "state_dict", "loops", "optimizer_states")


def _resume_point(cfg: DictConfig, rid: str, record: dict) -> str | None:
    """``last.ckpt`` to resume from, or None. One that cannot be resumed from is moved aside as
    ``last.ckpt.corrupt-<time>`` and the run starts from scratch, the record saying why: unreadable (a crash
    mid-write, a full disk), carrying anything but tensors and plain data (a pickle that would run code is
    never unpickled), not a Lightning checkpoint, or holding non-finite weights."""
    last = checkpoint_dir(cfg.paths.logs, rid) / "last.ckpt"
    if not last.exists():
        return None
    try:
        checkpoint = _load_checkpoint(last)
        problem = _checkpoint_problem(checkpoint)
    except pickle.UnpicklingError as error:  # weights_only refused an object: say which, not torch's advice
        refused = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line]
        problem = (
            "holds objects other than tensors and plain data, which are never unpickled (unpickling can run "
            f"code){': ' + refused[0].rstrip('.') if refused else ''}"
        )
    except Exception as error:  # torch.load raises RuntimeError, EOFError, ...
        problem = f"could not be read ({type(error).__name__}: {' '.join(str(error).split())})"
    if problem is None:
        record["resumed_from_epoch"] = checkpoint["epoch"] + 1
        _log.warning("%s: resuming from %s (epoch %d)", rid, last, record["resumed_from_epoch"])
        return str(last)
    aside = last.with_name(f"last.ckpt.corrupt-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    if rank_zero_only.rank == 0:
        last.rename(aside)
    record["resume_note"] = f"{last} {problem}; it was moved to {aside} and the run started from scratch."
    _log.warning("%s: %s", rid, record["resume_note"])
    return None


def _load_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, tensors and plain data only (``weights_only``: nothing in it can run
    code), memory-mapped (the tensors are not read unless used)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def _checkpoint_problem(checkpoint) -> str | None:
    """Why a loaded checkpoint cannot be resumed from, or None."""
    import torch

    missing = [key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        return f"is not a Lightning checkpoint (it has no {', '.join(missing)})"
    weights = checkpoint["state_dict"]
    if not isinstance(weights, dict) or not isinstance(checkpoint["epoch"], int):
        return "is not a Lightning checkpoint (its state_dict or epoch is not one)"
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not tensor.isfinite().all():
            return f"holds non-finite weights ({name}): the run that wrote it diverged"
    return None


def _write(record: dict, cfg: DictConfig) -> Path:
    """Only the global-rank-0 process writes the record (DDP launches one process per device)."""
    path = runs_dir(cfg.paths.results) / f"{record['run_id']}.json"
    if rank_zero_only.rank == 0:
        path = write_record(record, cfg.paths.results)
    return path


def describe_error(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return (
            "Interrupted (Ctrl+C, a termination signal or a SLURM preemption) before the run finished; "
            "running it again resumes from its last checkpoint."
        )
    if isinstance(error, BenchError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.runner '{"method": ..., "dataset": ..., "overrides": [...], "sweep_facts": ...}'``:
    one run, as a sweep's local cells start it. Exit 0 when it ends ``ok``; otherwise the error (a
    one-paragraph message, or the traceback of an unexpected error, in the cell's log) and 1, or 130 when
    interrupted."""
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    quiet_lightning()
    try:
        result = run(
            spec["method"], spec["dataset"], spec.get("overrides", []), sweep_facts=spec.get("sweep_facts")
        )
    except KeyboardInterrupt:
        return 130
    except BenchError as error:
        print(" ".join([f"error: {error}", *getattr(error, "__notes__", [])]), file=sys.stderr)
        return 130 if "Interrupted" in str(error) else 1
    except OSError as error:  # a full disk, a read-only folder: the message, not a traceback
        message = storage_error(error, "read or write a file")
        print(" ".join([f"error: {message}", *getattr(error, "__notes__", [])]), file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    print(f"{result.record['status']}: {result.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
