"""The training loggers a run writes to: CSV (default; a resumed run continues its log), Weights & Biases
(the wandb run id is the run id, so a resumed run continues its wandb run), or none. Whether the logger can
log here is checked with the config (:func:`check_ready`), before a run is recorded."""

from __future__ import annotations

import csv
import importlib.util
import netrc
import os
from pathlib import Path
from urllib.parse import urlsplit

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


#: wandb's modes (its WANDB_MODE values): the last three log without an account (offline keeps the run
#: under paths.logs for ``wandb sync``).
WANDB_MODES = ("online", "run", "shared", "offline", "dryrun", "disabled")
WANDB_LOCAL_MODES = WANDB_MODES[3:]


def _netrc_file() -> Path:
    """The netrc file ``wandb login`` writes and wandb reads: $NETRC, else ~/.netrc (~/_netrc where only
    it exists)."""
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"]).expanduser()
    unix, windows = Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()
    return windows if windows.exists() and not unix.exists() else unix


def _netrc_key(path: Path, host: str) -> bool:
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def check_ready(logger: str) -> None:
    """Raise :class:`ConfigError` if ``logger`` cannot log here: wandb without its package, or with no
    account to log to (no ``WANDB_API_KEY``, no ``wandb login`` entry in the netrc file) and no offline
    ``WANDB_MODE``. The CSV logger and none need nothing. Found with the config, not as a wandb error in the
    middle of a recorded run."""
    if logger != "wandb":
        return
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError("logger=wandb needs the wandb package: pip install wandb, or use logger=csv.")
    mode = os.environ.get("WANDB_MODE", "")
    if mode and mode not in WANDB_MODES:
        raise ConfigError(
            f"WANDB_MODE={mode!r} is not a wandb mode; use one of {', '.join(WANDB_MODES)} (offline: log "
            "under paths.logs and upload later with `wandb sync`), or unset it."
        )
    if (
        mode in WANDB_LOCAL_MODES
        or os.environ.get("WANDB_API_KEY")
        or os.environ.get("WANDB_IDENTITY_TOKEN_FILE")
    ):
        return
    url = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    host, path = urlsplit(url).netloc or url, _netrc_file()
    if _netrc_key(path, host):
        return
    why = f"WANDB_MODE={mode} needs an account" if mode else "WANDB_MODE is not set"
    raise ConfigError(
        f"logger=wandb cannot log in here: WANDB_API_KEY is not set, {why} and {path} has no entry for "
        f"{host}. Set WANDB_API_KEY to your API key (https://wandb.ai/authorize) or run `wandb login` once "
        "to log online; set WANDB_MODE=offline to log under paths.logs and upload later with `wandb sync`; "
        "or use logger=csv. Nothing was recorded."
    )
