"""The training loggers a run writes to: CSV (default; a resumed run continues its log), Weights & Biases
(the wandb run id is the run id, so a resumed run continues its wandb run), or none."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from bench.errors import ConfigError


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv`` (its folder is the run id's); a resumed
    run continues it: the earlier epochs' rows stay and new rows are appended under the same header."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


class ResumableCSVLogger(CSVLogger):
    """CSVLogger whose writer continues the log when ``resuming`` is set (a fresh run starts a new log)."""

    resuming = False  # set by the runner once it knows the run resumes from a checkpoint

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            writer = _ContinuingWriter if self.resuming else ExperimentWriter
            self._experiment = writer(log_dir=self.log_dir)
        return self._experiment


def make_logger(cfg: DictConfig, method: str, dataset: str, rid: str):
    """The training logger, its version pinned to the run id so a resumed run continues the same log."""
    logs = Path(cfg.paths.logs)
    if cfg.logger == "csv":
        return ResumableCSVLogger(save_dir=logs, name=f"{method}/{dataset}", version=rid)
    if cfg.logger == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError as error:
            raise ConfigError("logger=wandb needs the wandb package: pip install wandb.") from error
        logs.mkdir(parents=True, exist_ok=True)
        # Offline with WANDB_MODE=offline (synced later by `wandb sync`), online with WANDB_API_KEY set.
        return WandbLogger(
            project=os.environ.get("WANDB_PROJECT", "snnbench"),
            name=rid,
            id=rid,
            resume="allow",
            group=cfg.get("sweep"),
            save_dir=str(logs),
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    return False
