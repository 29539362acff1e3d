"""snnbench harness: CLI, registry, config, runner, metrics callback, run records, tables."""

import os
from pathlib import Path

#: The checkout the suite runs from (configs/ lives beside the packages).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(os.environ.get("SNNBENCH_CONFIGS", PROJECT_ROOT / "configs"))


def check_config_dir() -> None:
    """Say where the configs are expected when they are not there (e.g. after a non-editable install)."""
    if not (CONFIG_DIR / "defaults.yaml").is_file():
        from bench.errors import ConfigError

        raise ConfigError(
            f"snnbench reads its configs (defaults, methods, datasets, sweeps, energy tables) from "
            f"{CONFIG_DIR}, and there is no defaults.yaml there. They live in the checkout's configs/ "
            "folder, which a non-editable install (`pip install .`) does not copy: install the checkout "
            "with `pip install -e .`, or point SNNBENCH_CONFIGS at a copy of that configs/ folder."
        )
