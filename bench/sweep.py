"""Sweeps: a YAML file expands to a fixed list of cells (method x dataset x variant x seed), run locally in
subprocesses or on SLURM as one submitit job array. Every cell runs ``bench run``'s code path
(:func:`bench.runner.run`) and leaves one record named after its sweep.

A sweep file (``configs/sweeps/<name>.yaml``)::

    description: what the sweep is for (shown by `bench list`)
    methods: [ann, lif_sg]            # registry keys, or `all` (every registered method)
    datasets: [mnist5k]
    seeds: [0, 1, 2]
    overrides: {trainer.max_epochs: 3}            # every cell (same keys as `bench run ... key=value`)
    per_dataset: {nmnist_sim: {data.frames: 8}}   # cells of one dataset
    per_method: {albsnn: {trainer.max_epochs: 4}} # cells of one method (wins over per_dataset)
    grid: {method.time_steps: [1, 2, 4]}          # cartesian product; a variant per combination
    variants: {full: {}, no_filter: {method.synaptic_filter: false}}   # named override sets
    reference: full                   # the variant `bench tables` compares the others with
    exclude: [{method: ann, method.time_steps: 2}]   # drop cells matching every given field
    slurm: {partition: gpu, cpus_per_task: 8, gpus_per_node: 1, mem_gb: 32, timeout_min: 240,
            array_parallelism: 16}

Cells run in the order dataset, method, variant, seed. A cell whose record says ``ok`` is skipped; a
``failed`` one only with ``retry_failed``; an ``interrupted`` one (killed, preempted) runs again and resumes
from its last checkpoint. Requeue on SLURM has one owner: submitit's ``Checkpointable`` (Lightning's own
SLURM auto-requeue is switched off by the runner).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from bench import CONFIG_DIR, claims, registry
from bench import config as config_mod
from bench.errors import BenchError, ConfigError
from bench.records import read_record, runs_dir

SWEEP_KEYS = (
    "description",
    "methods",
    "datasets",
    "seeds",
    "overrides",
    "per_dataset",
    "per_method",
    "grid",
    "variants",
    "reference",
    "exclude",
    "slurm",
)
#: Sweep-file ``slurm`` keys -> submitit's AutoExecutor parameters.
SLURM_KEYS = {
    "partition": "slurm_partition",
    "cpus_per_task": "cpus_per_task",
    "gpus_per_node": "gpus_per_node",
    "mem_gb": "mem_gb",
    "timeout_min": "timeout_min",
    "array_parallelism": "slurm_array_parallelism",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "constraint": "slurm_constraint",
    "signal_delay_s": "slurm_signal_delay_s",
    "max_num_timeout": "slurm_max_num_timeout",
}
#: A cell's record states, as ``bench status`` shows them.
STATES = ("done", "failed", "running", "pending")


@dataclass(frozen=True)
class Cell:
    sweep: str
    method: str
    dataset: str
    variant: str
    seed: int
    overrides: tuple[str, ...]

    @property
    def args(self) -> list[str]:
        """The ``bench run`` overrides of this cell, its seed and its sweep's name included."""
        variant = [f"variant={json.dumps(self.variant)}"] if self.variant else []
        return [*self.overrides, *variant, f"seed={self.seed}", f"sweep={self.sweep}"]

    @property
    def label(self) -> str:
        variant = f" [{self.variant}]" if self.variant else ""
        return f"{self.method} on {self.dataset}{variant} seed {self.seed}"

    def config(self) -> DictConfig:
        return config_mod.load_config(self.method, self.dataset, self.args)

    def run_id(self) -> str:
        return config_mod.run_id(self.method, self.dataset, self.config())


@dataclass
class Sweep:
    name: str
    description: str
    cells: list[Cell]
    slurm: dict


def resolve_sweep_path(name_or_path: str) -> Path:
    """A sweep file path, or a sweep name under ``configs/sweeps/``."""
    path = Path(name_or_path)
    if path.exists():
        return path
    named = CONFIG_DIR / "sweeps" / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if named.exists():
        return named
    known = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "sweeps").glob("*.yaml")))
    raise ConfigError(f"Sweep file {name_or_path} does not exist. Known sweeps (configs/sweeps/): {known}.")


def _dotlist(mapping, where: str) -> list[str]:
    """``{method.lr: 0.1, trainer: {max_epochs: 3}}`` -> ``["method.lr=0.1", "trainer.max_epochs=3"]``."""
    if mapping is None:
        return []
    if not isinstance(mapping, DictConfig):
        raise ConfigError(f"{where} must be a mapping of config keys to values, got {mapping!r}.")
    flat: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, DictConfig):
            flat += [f"{key}.{item}" for item in _dotlist(value, where)]
        else:
            flat.append(f"{key}={_yaml_value(value)}")
    return flat


def _yaml_value(value) -> str:
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def _names(cfg: DictConfig, key: str, path: Path) -> list:
    """``methods`` / ``datasets``: a list of registry keys, or ``all`` (every registered one, so a method
    added later joins the sweeps that say so without an edit)."""
    value = cfg.get(key)
    if value == "all":
        return list(registry.methods() if key == "methods" else registry.datasets())
    if not isinstance(value, ListConfig) or len(value) == 0:
        raise ConfigError(f"Sweep file {path} needs a non-empty list `{key}` or `all`, got {value!r}.")
    return list(value)


def _variants(cfg: DictConfig, path: Path) -> list[tuple[str, list[str]]]:
    """Named override sets: the product of ``variants`` and ``grid`` (one unnamed variant without them)."""
    named = [("", [])]
    if cfg.get("variants") is not None:
        if not isinstance(cfg.variants, DictConfig) or len(cfg.variants) == 0:
            raise ConfigError(f"Sweep file {path}: `variants` must map names to override mappings.")
        named = [
            (str(k), _dotlist(v or OmegaConf.create({}), f"variants.{k}")) for k, v in cfg.variants.items()
        ]
    grid = cfg.get("grid")
    if grid is None:
        return named
    if not isinstance(grid, DictConfig) or not all(isinstance(v, ListConfig) and v for v in grid.values()):
        raise ConfigError(f"Sweep file {path}: `grid` must map config keys to non-empty lists of values.")
    combos = []
    for values in itertools.product(*grid.values()):
        pairs = [f"{key}={_yaml_value(value)}" for key, value in zip(grid.keys(), values, strict=True)]
        combos.append((",".join(pairs), pairs))
    return [
        (",".join(n for n in (name, combo) if n), [*overrides, *pairs])
        for name, overrides in named
        for combo, pairs in combos
    ]


def _excluded(cell: Cell, rules: list[dict]) -> bool:
    """Whether every field of some rule matches the cell: method, dataset, seed, a named variant, or a
    config key's value as the cell sets it."""
    fields = {"method": cell.method, "dataset": cell.dataset, "seed": cell.seed}
    given = dict(item.split("=", 1) for item in cell.overrides)

    def matches(key, value) -> bool:
        if key == "variant":
            return str(value) in cell.variant.split(",")
        if key in fields:
            return str(fields[key]) == str(value)
        return given.get(key) == _yaml_value(value)

    return any(all(matches(k, v) for k, v in rule.items()) for rule in rules)


def load_sweep(name_or_path: str, check: bool = True) -> Sweep:
    """Read and expand a sweep file; with ``check``, every cell's config is merged and validated (unknown
    methods, datasets or keys are reported before anything runs)."""
    path = resolve_sweep_path(name_or_path)
    cfg = config_mod._read_yaml(path)
    unknown = set(cfg) - set(SWEEP_KEYS)
    if unknown:
        raise ConfigError(
            f"Sweep file {path} has unknown key(s) {', '.join(sorted(unknown))}. Valid keys: "
            f"{', '.join(SWEEP_KEYS)}."
        )
    methods, datasets = _names(cfg, "methods", path), _names(cfg, "datasets", path)
    seeds = list(cfg.get("seeds") or [0])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"Sweep file {path}: `seeds` must be a list of integers, got {seeds}.")
    common = _dotlist(cfg.get("overrides"), "overrides")
    per_dataset = cfg.get("per_dataset") or OmegaConf.create({})
    per_method = cfg.get("per_method") or OmegaConf.create({})
    for group, keys, known in (("per_dataset", per_dataset, datasets), ("per_method", per_method, methods)):
        stray = set(keys) - set(known)
        if stray:
            raise ConfigError(
                f"Sweep file {path}: `{group}` names {', '.join(sorted(stray))}, which the sweep does not "
                f"run; it runs {', '.join(known)}."
            )
    rules = [OmegaConf.to_container(r) for r in (cfg.get("exclude") or [])]
    if not all(isinstance(r, dict) and r for r in rules):
        raise ConfigError(f"Sweep file {path}: `exclude` must be a list of non-empty mappings.")
    slurm = OmegaConf.to_container(cfg.get("slurm") or OmegaConf.create({}))
    stray = set(slurm) - set(SLURM_KEYS)
    if stray:
        raise ConfigError(
            f"Sweep file {path}: unknown `slurm` key(s) {', '.join(sorted(stray))}. Valid: "
            f"{', '.join(SLURM_KEYS)}."
        )
    variants = _variants(cfg, path)
    reference = cfg.get("reference")
    if reference is not None and reference not in {name for name, _ in variants}:
        raise ConfigError(
            f"Sweep file {path}: `reference: {reference}` names no variant; variants: "
            f"{', '.join(name for name, _ in variants)}."
        )
    cells = []
    for dataset, method in itertools.product(datasets, methods):
        base = [
            *common,
            *_dotlist(per_dataset.get(dataset), f"per_dataset.{dataset}"),
            *_dotlist(per_method.get(method), f"per_method.{method}"),
        ]
        for (variant, overrides), seed in itertools.product(variants, seeds):
            cell = Cell(path.stem, method, dataset, variant, int(seed), tuple([*base, *overrides]))
            if not _excluded(cell, rules):
                cells.append(cell)
    if check:
        for cell in cells:
            try:
                cell.config()
            except BenchError as error:
                raise type(error)(f"Sweep {path.stem}, cell {cell.label}: {error}") from error
    return Sweep(path.stem, str(cfg.get("description", "")), cells, slurm)


# --- cell states -------------------------------------------------------------------------------------
def cell_state(cell: Cell) -> tuple[str, dict | None]:
    """(state, record or None): done / failed / running / pending. A live claim (bench.claims) is
    ``running``, a requeued SLURM job waiting in the queue included; a stale one is removed. An
    ``interrupted`` record is pending: the next run resumes it."""
    cfg = cell.config()
    rid = config_mod.run_id(cell.method, cell.dataset, cfg)
    if claims.remove_if_stale(claims.claim_path(cfg.paths.results, rid)):
        return "running", None
    path = runs_dir(cfg.paths.results) / f"{rid}.json"
    if not path.exists():
        return "pending", None
    record = read_record(path)
    status = record.get("status")
    return {"ok": "done", "failed": "failed"}.get(status, "pending"), record


def cells_to_run(sweep: Sweep, retry_failed: bool) -> tuple[list[Cell], dict[str, int]]:
    """The cells that need a run, and a count of the others by state."""
    todo, skipped = [], {"done": 0, "failed": 0, "running": 0}
    for cell in sweep.cells:
        state, _ = cell_state(cell)
        if state == "pending" or (state == "failed" and retry_failed):
            todo.append(cell)
        else:
            skipped[state] += 1
    return todo, skipped


# --- local executor ----------------------------------------------------------------------------------
def _cell_command(cell: Cell) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.cli",
        "run",
        "--method",
        cell.method,
        "--dataset",
        cell.dataset,
        *cell.args,
        "trainer.enable_progress_bar=false",
    ]


def _outcome(cell: Cell) -> str:
    state, record = cell_state(cell)
    if record is None:
        return state
    if state == "done":
        return (
            f"ok, test accuracy {record['metrics']['test_acc'] * 100:.2f} % ({record['wall_time_s']:.0f} s)"
        )
    return f"{record['status']}: {record.get('error')}"


def run_local(sweep: Sweep, max_parallel: int, retry_failed: bool, log_dir: Path, echo=print) -> int:
    """Run the cells that need it, ``max_parallel`` subprocesses at a time, each with its share of the
    CPU threads; stdout/stderr of each go to ``log_dir/<run_id>.log``. Returns the number of cells that
    did not end ``ok``. Ctrl+C / SIGTERM stops the children (they record ``interrupted``) and re-raises."""
    todo, skipped = cells_to_run(sweep, retry_failed)
    echo(
        f"sweep {sweep.name}: {len(sweep.cells)} cells, {len(todo)} to run "
        f"({skipped['done']} done, {skipped['failed']} failed and not retried, {skipped['running']} "
        f"running elsewhere), {max_parallel} at a time; logs in {log_dir}/"
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // max_parallel)))
    env["PYTHONUNBUFFERED"] = "1"
    running: dict[subprocess.Popen, tuple[Cell, object]] = {}
    not_ok, done, queue = 0, 0, list(todo)

    def stop_children(signum=None, frame=None):
        for process in running:
            if process.poll() is None:
                # SIGTERM, not SIGINT: a sweep started in the background ignores SIGINT, and so do its
                # children. Lightning stops at the next batch and the run records `interrupted`.
                process.terminate()
        for process in running:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_children)
    try:
        while queue or running:
            while queue and len(running) < max_parallel:
                cell = queue.pop(0)
                log = (log_dir / f"{cell.run_id()}.log").open("a")
                process = subprocess.Popen(_cell_command(cell), stdout=log, stderr=subprocess.STDOUT, env=env)
                running[process] = (cell, log)
                echo(f"  start {cell.label}")
            time.sleep(0.2)
            for process in [p for p in running if p.poll() is not None]:
                cell, log = running.pop(process)
                log.close()
                done += 1
                outcome = _outcome(cell)
                not_ok += not outcome.startswith("ok")
                echo(f"  [{done}/{len(todo)}] {cell.label}: {outcome}")
    except KeyboardInterrupt:
        stop_children()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return not_ok


# --- SLURM executor ----------------------------------------------------------------------------------
def _checkpointable():
    import submitit

    class CellTask(submitit.helpers.Checkpointable):
        """One array task: ``bench run``'s code path in-process. On preemption or time-out submitit calls
        ``checkpoint`` (inherited: resubmit the same call), requeues the task and exits; the runner records
        ``interrupted``, and the requeued task resumes from the run's last Lightning checkpoint."""

        def __call__(self, method: str, dataset: str, args: list[str]) -> str:
            import torch

            from bench.runner import quiet_lightning, run

            if os.environ.get("SLURM_CPUS_PER_TASK"):  # the task's CPUs, not the node's
                torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
            quiet_lightning()
            return run(method, dataset, [*args, "trainer.enable_progress_bar=false"]).record["status"]

    return CellTask


def slurm_parameters(sweep: Sweep, options: dict) -> dict:
    """submitit parameters from the sweep file's ``slurm`` block, command-line options winning."""
    merged = {**sweep.slurm, **{k: v for k, v in options.items() if v is not None}}
    params = {SLURM_KEYS[k]: v for k, v in merged.items()}
    params.setdefault("timeout_min", 60)
    params.setdefault("cpus_per_task", 1)
    params["name"] = f"bench-{sweep.name}"
    return params


def wait_for_array(array_id: str, poll_s: float = 2.0, unreachable_s: float = 300.0) -> None:
    """Block until SLURM lists no task of the job array (finished, failed or cancelled; a requeued task
    stays listed). Polls ``squeue``, which needs no accounting database, unlike ``sacct``; if squeue has
    not answered for ``unreachable_s`` (slurmctld down), stop waiting with a clear error."""
    last_answer = time.monotonic()
    while True:
        try:
            out = subprocess.run(
                ["squeue", "-h", "-j", array_id, "-o", "%i"], capture_output=True, text=True, timeout=60
            )
            answered = out.returncode == 0 or "Invalid job id" in out.stderr
        except (OSError, subprocess.TimeoutExpired):
            answered = False
        if answered:
            if out.returncode != 0 or not out.stdout.strip():
                return
            last_answer = time.monotonic()
        elif time.monotonic() - last_answer > unreachable_s:
            raise BenchError(
                f"squeue has not answered for {unreachable_s:.0f} s (slurmctld down or unreachable?), so "
                f"--wait stops waiting for job array {array_id}. Its tasks may still run and write their "
                "records: check later with `bench status`."
            )
        time.sleep(poll_s)


def submit_slurm(sweep: Sweep, retry_failed: bool, options: dict, log_root: Path, echo=print):
    """Submit the cells that need a run as one SLURM job array; returns the submitit jobs."""
    if shutil.which("sbatch") is None:
        raise BenchError(
            "--executor slurm needs SLURM's `sbatch` on PATH, and it was not found. Run the sweep on a "
            "cluster login node, or use --executor local here (scripts/slurm-local.sh up starts a "
            "single-node SLURM for testing)."
        )
    import submitit

    todo, skipped = cells_to_run(sweep, retry_failed)
    echo(
        f"sweep {sweep.name}: {len(sweep.cells)} cells, {len(todo)} to submit ({skipped['done']} done, "
        f"{skipped['failed']} failed and not retried, {skipped['running']} running)"
    )
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=log_root / "slurm" / sweep.name, cluster="slurm")
    params = slurm_parameters(sweep, options)
    executor.update_parameters(**params)
    task = _checkpointable()()
    jobs = executor.map_array(
        task, [c.method for c in todo], [c.dataset for c in todo], [c.args for c in todo]
    )
    echo(f"submitted job array {array_id(jobs)} ({len(jobs)} tasks), logs in {executor.folder}")
    return jobs


def array_id(jobs) -> str:
    """The SLURM job array id of submitit's array jobs (``<array>_<task>``)."""
    return jobs[0].job_id.split("_")[0]
