"""Sweeps: a YAML file expands to a fixed list of cells (method x dataset x variant x seed), run locally in
subprocesses or on SLURM as one submitit job array. Every cell runs ``bench run``'s code path
(:func:`bench.runner.run`) and leaves one record named after its sweep.

A sweep file (``configs/sweeps/<name>.yaml``)::

    description: what the sweep is for (shown by `bench list`)
    track: matched                    # matched | paper (default) | ablation: where `bench tables` puts it
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
    tuning: {seeds: [0], space: {ann: {method.lr: [1.0e-3, 3.0e-3]}, lif_sg: {method.lr: [...]}}}
                                      # a tuning stage: the same number of configurations for every method,
                                      # chosen on validation, before the ranked cells (bench.sweep.tuning)
    slurm: {partition: gpu, cpus_per_task: 8, gpus_per_node: 1, mem_gb: 32, timeout_min: 240,
            array_parallelism: 16, cells_per_task: 1}   # cells_per_task: cells one array task runs

Cells run in the order dataset, method, variant, seed. A cell whose record says ``ok`` is skipped; a
``failed`` one only with ``retry_failed``; an ``interrupted`` one (killed, preempted) runs again and resumes
from its last checkpoint. Requeue on SLURM has one owner: submitit's ``Checkpointable`` (Lightning's own
SLURM auto-requeue is switched off by the runner). With ``cells_per_task`` N > 1 (or ``--cells-per-task``,
which wins) one array task runs up to N cells (dealt out in turn) one after another in one process, each
still its own run (run id, claim, checkpoint, record); ``timeout_min`` is then the limit of the whole task.

The package's parts: :mod:`~bench.sweep.spec` (the file format, expanded to cells), :mod:`~bench.sweep.tuning`
(a tuning stage's runs and the choice the ranked cells wait for), :mod:`~bench.sweep.state`
(done / failed / running / pending from records and claims), :mod:`~bench.sweep.local` and
:mod:`~bench.sweep.slurm` (the two executors), :mod:`~bench.sweep.execute` (what ``bench sweep`` and
``bench status`` do, as data the CLI prints: the dry-run plan, a run on the chosen executor, each cell's
state).
"""

from bench.sweep.execute import Outcome, Plan, Status, execute, plan, status
from bench.sweep.local import run_local
from bench.sweep.slurm import array_id, cell_numbers, describe_packing, pack, submit_slurm, wait_for_array
from bench.sweep.spec import Cell, Sweep, load_sweep
from bench.sweep.state import STATES, busy_seconds, cell_state, cells_to_run

__all__ = [
    "STATES",
    "Cell",
    "Outcome",
    "Plan",
    "Status",
    "Sweep",
    "array_id",
    "busy_seconds",
    "cell_numbers",
    "cell_state",
    "cells_to_run",
    "describe_packing",
    "execute",
    "load_sweep",
    "pack",
    "plan",
    "run_local",
    "status",
    "submit_slurm",
    "wait_for_array",
]
