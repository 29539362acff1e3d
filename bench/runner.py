"""One run: resolve and check the config, build DataModule + method + Trainer, train, validate, test, record.

This is the single code path behind ``bench run`` (and every sweep cell). Whatever happens, the run leaves
one record: ``ok`` with its metrics, or ``failed`` with the error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from bench import config as config_mod
from bench.errors import BenchError, ConfigError, TrainingError
from bench.metrics import EnergyMetrics
from bench.records import device_name, git_state, package_versions, runs_dir, write_record
from bench.registry import get_dataset, get_method


@dataclass
class RunResult:
    record: dict
    path: Path


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (accelerator lines, tips) out of the user's terminal."""
    for name in ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _to_kwargs(group: DictConfig) -> dict:
    return OmegaConf.to_container(group, resolve=True)


def build(cfg: DictConfig, method: str, dataset: str):
    """(datamodule, model) from a resolved config; the dataset's facts go into the method."""
    datamodule = get_dataset(dataset)(**_to_kwargs(cfg.data))
    facts = {"num_classes": datamodule.num_classes, "input_shape": datamodule.input_shape}
    facts.update(kind=datamodule.kind, frames=datamodule.frames)
    try:
        model = get_method(method)(**facts, **_to_kwargs(cfg.method))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"Could not build method {method} from its config: {error}") from error
    return datamodule, model


def build_trainer(cfg: DictConfig, method: str, dataset: str, rid: str, callbacks=()) -> pl.Trainer:
    trainer_kwargs = _to_kwargs(cfg.trainer)
    callbacks = list(callbacks)
    if trainer_kwargs.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar())
    logs = Path(cfg.paths.logs)
    if cfg.logger == "csv":
        logger = CSVLogger(save_dir=logs, name=f"{method}/{dataset}", version=rid)
    elif cfg.logger == "wandb":
        logger = WandbLogger(project="snnbench", name=rid, save_dir=str(logs))
    else:
        logger = False
    return pl.Trainer(**trainer_kwargs, callbacks=callbacks, logger=logger, default_root_dir=str(logs))


def dataset_facts(datamodule) -> dict:
    """What the run's data was: shape facts plus the choices tables must not mix (split protocol, frames)."""
    facts = {"num_classes": datamodule.num_classes, "input_shape": list(datamodule.input_shape)}
    facts.update(kind=datamodule.kind, frames=datamodule.frames)
    if getattr(datamodule, "split", None) is not None:
        facts["split"] = datamodule.split
    if getattr(datamodule, "frame_spec", None) is not None:
        facts["frame_spec"] = datamodule.frame_spec
    return facts


def _logged(trainer: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def _collect_metrics(trainer: pl.Trainer, model: pl.LightningModule, after_fit: dict) -> dict:
    logged = _logged(trainer)
    if "test/acc" not in logged:
        raise BenchError("The test loop produced no accuracy: is the test split empty?")
    return {
        "test_acc": logged["test/acc"],
        "test_loss": logged["test/loss"],
        "val_acc": after_fit.get("val/acc"),
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": trainer.current_epoch,
    }


def run(
    method: str,
    dataset: str,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
) -> RunResult:
    """Train, validate and test ``method`` on ``dataset``; write and return the run record.

    Config errors are raised before anything is recorded (nothing ran). Any error after that leaves a
    ``failed`` record and is re-raised.
    """
    overrides = [*overrides, *([f"seed={seed}"] if seed is not None else [])]
    cfg = config_mod.load_config(method, dataset, overrides)
    rid = config_mod.run_id(method, dataset, cfg)
    record = {
        "run_id": rid,
        "method": method,
        "dataset": dataset,
        "seed": cfg.seed,
        "status": "running",
        "error": None,
        "metrics": {},
        "config": OmegaConf.to_container(cfg, resolve=True),
        "git": git_state(),
        "versions": package_versions(),
        "device": None,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": None,
    }
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg, method, dataset)  # constructors check their arguments: nothing ran yet
    start = time.perf_counter()
    try:
        record["dataset_facts"] = dataset_facts(datamodule)
        energy = EnergyMetrics(**_to_kwargs(cfg.metrics))
        trainer = build_trainer(cfg, method, dataset, rid, callbacks=[energy])
        trainer.fit(model, datamodule=datamodule)
        if trainer.interrupted:
            raise TrainingError("Training was interrupted before it finished; nothing was tested.")
        after_fit = _logged(trainer)
        trainer.test(model, datamodule=datamodule, verbose=False)
        record["device"] = device_name(trainer.strategy.root_device)
        record["metrics"] = {**_collect_metrics(trainer, model, after_fit), **energy.summary}
        record["layers"] = energy.layers
        record["method_details"] = model.run_details()
        record["status"] = "ok"
    except BaseException as error:
        record["status"] = "failed"
        record["error"] = describe_error(error)
        record["wall_time_s"] = round(time.perf_counter() - start, 3)
        path = _write(record, cfg)
        if isinstance(error, KeyboardInterrupt | SystemExit):
            # Lightning turns Ctrl+C into SystemExit after its own shutdown; say what happened.
            error = TrainingError(record["error"])
        error.add_note(f"The failed run is recorded in {path}.")
        raise error from None
    record["wall_time_s"] = round(time.perf_counter() - start, 3)
    return RunResult(record, _write(record, cfg))


def _write(record: dict, cfg: DictConfig) -> Path:
    """Only the global-rank-0 process writes the record (DDP launches one process per device)."""
    path = runs_dir(cfg.paths.results) / f"{record['run_id']}.json"
    if rank_zero_only.rank == 0:
        path = write_record(record, cfg.paths.results)
    return path


def describe_error(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return "Interrupted (Ctrl+C or a termination signal) before the run finished."
    if isinstance(error, BenchError):
        return str(error)
    return f"{type(error).__name__}: {error}"
