"""snnbench harness: CLI, registry, config, runner, metrics callback, run records, tables."""

import os
from pathlib import Path

#: The checkout the suite runs from (configs/ lives beside the packages).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = Path(os.environ.get("SNNBENCH_CONFIGS", PROJECT_ROOT / "configs"))
