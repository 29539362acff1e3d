"""The ``bench`` command: ``list``, ``run``, ``test``, ``sweep``, ``prepare``, ``status``, ``tables``,
``compare``.

User mistakes (unknown method or key, missing data, diverged training, Ctrl+C) end with a one-paragraph
message on stderr and exit status 1, never a traceback; ``SNNBENCH_DEBUG=1`` shows tracebacks for errors
that are not the user's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from bench import CONFIG_DIR, check_config_dir, design, paths, registry
from bench.errors import BenchError, storage_error
from bench.progress import took

if TYPE_CHECKING:
    from bench.sweep import Plan

console = Console()
err_console = Console(stderr=True)


def _yaml_descriptions(folder: Path) -> list[tuple[str, str]]:
    rows = []
    for path in sorted(folder.glob("*.yaml")):
        description = OmegaConf.load(path).get("description", "")
        rows.append((path.stem, str(description)))
    return rows


class Trimmed:
    """A renderable printed without trailing spaces: rich pads a table's cells, title and rule to the
    table's width, which leaves every line padded."""

    def __init__(self, renderable):
        self.renderable = renderable

    def __rich_console__(self, console: Console, options):
        for line in console.render_lines(self.renderable, options, pad=False):
            while line and not line[-1].control and not line[-1].text.rstrip():
                line.pop()
            if line and not line[-1].control:
                last = line.pop()
                line.append(Segment(last.text.rstrip(), last.style))
            yield from line
            yield Segment.line()


def say(text: str) -> None:
    """A line of plain text (no markup), wrapped to the terminal at spaces without trailing spaces; a word
    longer than a line (a path) stays whole, so it can be copied."""
    lines = textwrap.wrap(text, console.width, break_long_words=False, break_on_hyphens=False)
    for line in lines or [""]:
        console.print(Text(line), soft_wrap=True)


def whole_table(
    title: str, columns: list[str], rows: list[tuple[str, ...]], whole: int = 1, right: tuple[str, ...] = ()
) -> Trimmed:
    """A table whose first ``whole`` columns (keys, names and short facts) are never truncated: as wide as
    their longest entry; the other columns wrap, and fold words too long for them (nothing is cut off with
    an ellipsis, whatever the terminal's width). ``right``: the columns of numbers, right-justified.
    Printed without trailing spaces."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, column in enumerate(columns):
        justify = "right" if column in right else "left"
        if i < whole:
            width = max([len(column), *(len(row[i]) for row in rows)])
            style = "bold cyan" if i == 0 else None
            table.add_column(column, style=style, no_wrap=True, min_width=width, justify=justify)
        else:
            table.add_column(column, overflow="fold", justify=justify)
    for row in rows:
        table.add_row(*row)
    return Trimmed(table)


def cmd_list(args: argparse.Namespace) -> int:
    # The catalogue reads the plugins' sources: listing them imports no torch, Lightning or plugin.
    catalogue = registry.catalogue()
    rows = [
        (key, design.describe(info.design), info.description) for key, info in catalogue["method"].items()
    ]
    console.print(whole_table("Methods (--method)", ["key", "designed for", "description"], rows, whole=2))

    facts, descriptions = [], []
    for key, info in catalogue["dataset"].items():
        fact = info.facts
        kind = fact.kind + (f", {fact.frames} fr." if fact.frames else "")
        shape = "x".join(str(s) for s in fact.input_shape)
        sizes = [size.strip() for size in fact.sizes.split("/")]
        sizes = sizes if len(sizes) == 3 else [fact.sizes, "", ""]
        facts.append((key, kind, shape, str(fact.num_classes), *sizes))
        descriptions.append((key, info.description))
    columns = ["key", "kind", "C,H,W", "classes", "train", "val", "test"]
    console.print()
    console.print(whole_table("Datasets (--dataset)", columns, facts, whole=7, right=tuple(columns[3:])))
    embedded = [key for key, info in catalogue["dataset"].items() if info.facts.embedded]
    say(
        f"Embedded (no download): {', '.join(embedded)}. The others: `bench prepare DATASET` downloads one "
        "where it can, else says where to get it and where to put it."
    )
    console.print()
    console.print(whole_table("", ["dataset", "description"], descriptions))

    for title, folder in (
        ("Sweeps", "sweeps"),
        ("Energy cost tables", "energy"),
        ("Memory models", "energy/memory"),
    ):
        rows = _yaml_descriptions(CONFIG_DIR / folder) or [("-", "none yet")]
        console.print()
        console.print(whole_table(f"{title} (configs/{folder}/)", ["name", "description"], rows))
    return 0


def _summary_table(record: dict) -> Table:
    from bench.results.pricing import RANGE

    table = Table(title=f"{record['method']} on {record['dataset']} (seed {record['seed']})")
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    metrics = record["metrics"]
    for key, value in metrics.items():
        if "@" in key:  # the range ends (bench.results.pricing.RANGE): one row below
            continue
        if isinstance(value, float):
            text = f"{value * 100:.2f} %" if key.endswith("_acc") else f"{value:.4g}"
        elif isinstance(value, dict):  # the counting conventions
            text = ", ".join(f"{k}={v}" for k, v in value.items())
        else:
            text = f"{value:,}" if isinstance(value, int) else str(value)
        table.add_row(key, text)
    ends = [metrics.get(f"energy_uj@{mode}") for mode in RANGE]
    if None not in ends:
        table.add_row(f"energy_uj, pooled {' - '.join(RANGE)}", " - ".join(f"{v:.4g}" for v in ends))
    table.add_row("wall time", f"{record['wall_time_s']:.1f} s")
    table.add_row("device", str(record["device"]))
    return table


def print_config(method: str, dataset: str, cfg, heading: list[str], waiting: str | None = None) -> None:
    """``--print-config``: the resolved config as YAML, after comment lines (the output stays valid YAML)
    that say what it is, its run id and whether that run is recorded. Reads only: nothing is written."""
    from bench.config import run_id
    from bench.paths import runs_dir
    from bench.results.records import read_status

    lines = list(heading)
    if waiting is not None:  # a tuned cell before its choice: its run id depends on the choice
        lines.append(f"no run id yet: the cell waits ({waiting}); the config is the one before the choice")
    else:
        rid = run_id(method, dataset, cfg)
        path = runs_dir(cfg.paths.results) / f"{rid}.json"
        status = read_status(path)
        lines.append(f"run id: {rid}")
        lines.append(f"recorded: {status} ({path})" if status else "recorded: not yet")
    text = "".join(f"# {line}\n" for line in lines) + OmegaConf.to_yaml(cfg, resolve=True)
    sys.stdout.write(text)
    sys.stdout.flush()


def cmd_run(args: argparse.Namespace) -> int:
    from bench.results.pricing import repriceable
    from bench.results.records import chance_note
    from bench.runner import quiet_lightning, run

    quiet_lightning()
    if args.print_config:
        from bench.config import load_config

        seed = [f"seed={args.seed}"] if args.seed is not None else []  # as bench.runner.run adds it
        cfg = load_config(args.method, args.dataset, [*args.overrides, *seed])
        print_config(
            args.method, args.dataset, cfg, [f"bench run --method {args.method} --dataset {args.dataset}"]
        )
        return 0
    result = run(args.method, args.dataset, args.overrides, seed=args.seed, rerun=args.rerun)
    console.print(_summary_table(result.record))
    if result.trained:
        console.print(f"Run record: [bold]{result.path}[/]")
    else:
        shown = (
            "Its counts are shown priced under this config's cost table, counting conventions and memory "
            "model (they are in no run id: they change nothing that trains)"
            if repriceable(result.record)
            else "It was counted before records kept raw counts, so it is shown as it was recorded"
        )
        console.print(
            f"This run is already recorded ok in [bold]{result.path}[/]: nothing was trained. {shown}; the "
            "record itself is unchanged. To train it again, pass --rerun."
        )
    if result.record.get("outside_design"):
        console.print(
            f"[yellow]Outside the method's design:[/] {result.record['outside_design_reason']}. The record "
            "says so (outside_design: true), so that a comparison can tell it from runs inside the design."
        )
    if chance_note(result.record):
        console.print(f"[yellow]At chance:[/] {chance_note(result.record)}", highlight=False)
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from bench.runner import quiet_lightning, retest

    quiet_lightning()
    result = retest(args.run, args.overrides)
    record = result.record
    console.print(_summary_table(record))
    console.print(
        f"Test record: [bold]{result.path}[/] (a re-test of the kept model of run {record['tested_from']}, "
        "nothing trained).",
        highlight=False,
    )
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from bench.results.publish import publish

    results = args.results or paths.results_root()
    say(publish(results, pricing_of(args)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    # Reads records only, like `bench tables`: no torch.
    from bench.results.compare import comparisons
    from bench.results.formatting import PARETO, format_p, row_accuracy, row_energy

    results = args.results or paths.results_root()
    verdicts = {
        "best": "best",
        "tied": "yes",
        "worse": "no",
        "untested": "untested",
        "reference": "reference",
        "outside design": "outside design",
    }
    for comparison in comparisons(results, args.dataset, args.time_steps, args.sweep, pricing_of(args)):
        table = Table(
            title=f"{comparison.title}\n{comparison.setting}\n{comparison.basis}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        rows = comparison.ranking.rows
        table.add_column("#", justify="right")
        # names wrap only between words (a variant label on its own line) and are text, not rich markup
        words = max(len(word) for r in rows for word in r.name.split())
        table.add_column("method", min_width=words)
        table.add_column("n", justify="right", no_wrap=True)
        for column in ("acc. % ± CI95", comparison.test, "tied", "µJ", "Pareto"):
            table.add_column(column, no_wrap=True)
        for row in rows:
            cells = (str(row.place), Text(row.name), str(row.n), row_accuracy(row), format_p(row.p_used))
            table.add_row(*cells, verdicts[row.verdict], row_energy(row), PARETO if row.pareto else "")
        console.print(Trimmed(table))
        say(comparison.answer)
        console.print()
    key = Text(
        "acc.: test accuracy, mean ± 95 % interval, over test items and runs where every record kept its "
        "test predictions (items and seeds), else over seeds (Student t); Holm p: a t-test paired on the "
        "same items and runs against the best, Holm-corrected over the ranked rows; Welch p: Welch's t-test "
        "against the best over seeds, uncorrected; references and rows outside design: raw p; tied when "
        "p ≥ 0.05, untested with fewer than 2 runs on either side; µJ: mean energy per sample (an estimate "
        "under the cost table); ◆: on the accuracy-energy Pareto front of its context. Contexts at equal "
        "T x bits per spike rank spiking methods at equal information (a 2-bit spike at T = 1 beside binary "
        "ones at T = 2).",
        style="dim",
    )
    console.print(Trimmed(key), highlight=False)
    return 0


def print_cell_config(file: str, number: int) -> int:
    """``bench sweep S --print-config CELL``: cell ``CELL`` (numbered as ``--dry-run`` numbers them) of the
    sweep, its config merged and validated (the other cells are not checked), printed as YAML."""
    from bench import sweep as sweeps

    sweep = sweeps.load_sweep(file, check=False)
    if number >= len(sweep.cells):
        raise BenchError(
            f"Sweep {sweep.name} has no cell {number}: its cells are numbered 0 to {len(sweep.cells) - 1} "
            f"(`bench sweep {file} --dry-run` lists them)."
        )
    cell = sweep.cells[number]
    cfg = cell.config()
    heading = [f"sweep {sweep.name}, cell {number} of {len(sweep.cells)}: {cell.label}"]
    print_config(cell.method, cell.dataset, cfg, heading, waiting=cell.waiting)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench import sweep as sweeps

    if args.print_config is not None:
        return print_cell_config(args.file, args.print_config)
    if args.estimate and not args.dry_run:
        raise BenchError("--estimate goes with --dry-run: `bench sweep S --dry-run --estimate`.")
    started = time.monotonic()
    # Checking takes seconds (the first cell imports torch and the sweep's methods): say so at once.
    err_console.print(
        f"sweep {args.file}: checking every cell's config before anything runs", style="dim", highlight=False
    )
    sweep = sweeps.load_sweep(args.file)
    if args.dry_run:
        print_data_check(sweep, getattr(args, "overrides", None) or [])
        options = slurm_options(args)
        planned = sweeps.plan(
            sweep, args.executor, args.cells_per_task, args.retry_failed, options, args.max_parallel
        )
        print_plan(planned, sweep.name)
        print_plan_summary(planned, args, time.monotonic() - started)
        if args.estimate:
            print_estimate(sweep, args)
        return 0
    outcome = sweeps.execute(
        sweep,
        args.executor,
        max_parallel=args.max_parallel,
        retry_failed=args.retry_failed,
        slurm=slurm_options(args),
        cells_per_task=args.cells_per_task,
        wait=args.wait,
        echo=console.print,
    )
    if outcome.not_ok is None:  # submitted, not waited for
        console.print(f"`bench status {args.file}` shows the cells' progress.")
        return 0
    if args.tables:
        cmd_tables(build_parser().parse_args(["tables"]))
    if outcome.not_ok:
        err_console.print(
            f"[bold red]{outcome.not_ok} cell(s) did not finish ok;[/] `bench status {args.file}` lists them."
        )
        return 1
    return 0


#: The `bench sweep` options that override the sweep file's ``slurm`` block.
SLURM_FLAGS = ("partition", "cpus_per_task", "gpus_per_node", "mem_gb", "timeout_min")


def slurm_options(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key) for key in SLURM_FLAGS}


def estimate_layout(sweep, args: argparse.Namespace, cells: int) -> tuple[int, int, int, int]:
    """How the ``cells`` still to run will run, for ``--estimate``: (cells at a time, cells a task, CPU
    threads a cell, pilots side by side). SLURM: the resolved request's array parallelism (all the cells
    when it sets none), packing and ``cpus_per_task``, a pilot at a time (a task has its own share of a
    node); locally: ``--max-parallel`` cells and pilots at a time, each with its share of the CPUs, as
    bench.sweep.local runs them."""
    from bench.sweep.slurm import cells_per_task, slurm_parameters

    cpus = os.cpu_count() or 1
    if args.executor == "slurm":
        request = slurm_parameters(sweep, {**slurm_options(args), "array_parallelism": args.max_parallel})
        parallel = request.get("slurm_array_parallelism") or cells or 1
        threads = int(request["cpus_per_task"])
        return parallel, cells_per_task(sweep, args.cells_per_task), max(1, min(threads, cpus)), 1
    parallel = args.max_parallel or 1
    return parallel, 1, max(1, cpus // parallel), parallel


def print_estimate(sweep, args: argparse.Namespace) -> None:
    """``--dry-run --estimate``: a pilot of each distinct run shape on this machine (bench.sweep.estimate),
    a row per shape, then the device-hours and wall time of the cells still to run."""
    from bench.sweep import estimate as est
    from bench.sweep.state import cells_to_run

    todo, _ = cells_to_run(sweep, args.retry_failed)
    todo += [cell for cell in sweep.cells if cell.waiting]

    def echo(line: str) -> None:
        err_console.print(line, style="dim", highlight=False)

    parallel, per_task, threads, side_by_side = estimate_layout(sweep, args, len(todo))
    shapes = est.estimate(sweep, todo, threads, side_by_side, echo=echo)
    rows, over = [], []
    for shape in shapes:
        pilot = shape.pilot
        steps = ", ".join(f"{p['step_s']:.3f}" for p in pilot["phases"])
        peak = pilot["peak_bytes"] / 2**20
        flag = ""
        if pilot["peak_bytes"] > pilot["device_bytes"]:
            flag = "[bold red]exceeds device memory[/]"
            over.append(shape)
        tuned = any(cell.stage == "tuning" for cell, _ in shape.cells)
        rows.append(
            (
                shape.method,
                shape.dataset,
                str(pilot["time_steps"]),
                f"{sum(todo for _, todo in shape.cells)}/{len(shape.cells)}",
                steps,
                f"{peak:,.0f}",
                f"{shape.ranked_s:,.0f}" + (f" (tuning {shape.tuning_s:,.0f})" if tuned else ""),
                "real" if pilot["real_data"] else "synthetic",
                flag,
            )
        )
    device = shapes[0].pilot["device"] if shapes else "?"
    columns = ["method", "dataset", "T", "cells to run", "s/step", "peak MiB", "s/cell", "data", ""]
    numbers = ("T", "cells to run", "s/step", "peak MiB", "s/cell")
    table = whole_table(f"estimate on {device}", columns, rows, whole=2, right=numbers)
    # A log (not a terminal) gets every column whole however wide; a terminal folds what does not fit.
    width = console.width
    if not console.is_terminal:
        natural = Measurement.get(console, console.options.update_width(10_000), table.renderable)
        console.width = max(width, natural.maximum)
    try:
        console.print(table)
    finally:
        console.width = width
    device_s, wall_s, count = est.totals(shapes, parallel, per_task)
    console.print(
        f"{count} cell(s) to run: {device_s / 3600:.2f} device-hours; wall time {wall_s / 3600:.2f} h at "
        f"{parallel} at a time ({args.executor}), each cell on {threads} CPU thread(s), as the pilots ran "
        f"({side_by_side} at a time). "
        "s/step: seconds per optimiser step (one per training phase); s/cell: projected seconds of a cell, "
        "start-up and test included (the formula: bench/sweep/estimate.py). Measured on this machine as "
        "loaded now.",
        highlight=False,
    )
    if over:
        err_console.print(
            f"[bold red]{len(over)} shape(s) exceed this device's memory[/] "
            f"({shapes[0].pilot['device_bytes'] / 2**30:.1f} GiB).",
            highlight=False,
        )


def print_data_check(sweep, overrides: list[str]) -> None:
    """The dry run's first lines: per dataset folder the sweep's cells read, whether its files and frame
    caches are on disk (file presence only), and what to run if not."""
    from bench import prepare

    data = [o for o in overrides if o.startswith("data.")]
    for item in prepare.check(prepare.sweep_datamodules(sweep, data)):
        line = prepare.describe(item, prepare.command(item, sweep.name, data))
        console.print(Trimmed(Text.assemble(("data: ", "bold"), line)))


def cmd_prepare(args: argparse.Namespace) -> int:
    from bench import prepare

    datasets = [item for item in args.items if "=" not in item]
    overrides = [item for item in args.items if "=" in item]
    if not datasets and not args.sweep:
        raise BenchError("Name the datasets to prepare (see `bench list`), or a sweep with --sweep.")
    sweep = None
    if args.sweep:
        from bench.sweep import load_sweep

        sweep = load_sweep(args.sweep, check=False)  # only the data configs are needed: quick
    datamodules = prepare.datamodules(datasets, sweep, overrides)

    def echo(line: str) -> None:
        console.print(line, style="dim", highlight=False)

    items = prepare.prepare(datamodules, echo=echo)
    for item in items:
        style = {"ready": "bold green", "missing": "bold red"}.get(item.state, "bold yellow")
        line = prepare.describe(item, prepare.command(item, None, overrides))
        rest = line[len(f"{item.dataset} {item.state}") :]  # the line starts "<dataset> <state>"
        console.print(Text.assemble((item.dataset, "bold cyan"), " ", (item.state, style), rest))
    missing = [item.dataset for item in items if item.missing]
    if missing:
        err_console.print(f"[bold red]not ready:[/] {', '.join(missing)}", highlight=False)
        return 1
    return 0


def print_plan(plan: Plan, name: str) -> None:
    """The dry run: shared overrides above the table (lines wrap at spaces, nothing is cut), each cell's
    own in a last column, or listed under the table, whole, when that column would be too narrow to read."""
    console.print(f"sweep {name}: {len(plan.cells)} cells, in order", style="italic")
    if plan.common:
        say("every cell: " + "  ".join(plan.common))
    for variant, own in plan.by_variant.items():
        say(f"variant {variant}: " + ("  ".join(own) or "(no overrides)"))
    rows = [
        (
            str(p.number),
            p.cell.method,
            p.cell.dataset,
            p.cell.variant,
            str(p.cell.seed),
            p.state,
            "\n".join(p.own),
        )
        for p in plan.cells
    ]
    columns = ["#", "method", "dataset", "variant", "seed", "state", "other overrides"]
    fixed = sum(max(len(c), *(len(r[i]) for r in rows)) + 3 for i, c in enumerate(columns[:-1]))
    if not plan.others or console.width - fixed < 24:  # none, or too narrow a column to read
        columns, rows = columns[:-1], [row[:-1] for row in rows]
    console.print(whole_table("", columns, rows, whole=6))
    if len(columns) == 6 and plan.others:
        console.print("other overrides:")
        for numbers, own in plan.others:
            say(f"  {numbers}: " + "  ".join(own))
    if plan.packing:
        say(plan.packing)
    if plan.request:
        say(plan.request)


def _shown_variant(variant: str) -> str:
    """A cell's variant as ``bench status`` shows it: without its ``method.time_steps=...`` part, which
    the T column shows."""
    parts = [part.strip() for part in variant.split(",")]
    return ", ".join(part for part in parts if part and not part.startswith("method.time_steps="))


def _time_steps(cell) -> str:
    """The cell's T as its config sets it (``auto``: the method's own, every frame on event data)."""
    steps = cell.config(check=False).method.get("time_steps")
    return "auto" if steps is None else str(steps)


def print_plan_summary(plan: Plan, args: argparse.Namespace, seconds: float) -> None:
    """The dry run's last line: the cells by state, how many `bench sweep` would run, how long it took."""
    from bench.sweep import STATES

    counts = dict.fromkeys(STATES, 0)
    for planned in plan.cells:
        counts[planned.state] += 1
    todo = counts["pending"] + (counts["failed"] if args.retry_failed else 0)
    where = "locally" if args.executor == "local" else "as a SLURM job array"
    line = (
        f"{len(plan.cells)} cells: " + ", ".join(f"{n} {state}" for state, n in counts.items()) + ". "
        f"Without --dry-run, `bench sweep` would run {todo} of them {where}"
        + (" (failed cells only with --retry-failed)" if counts["failed"] and not args.retry_failed else "")
        + (", and the waiting ones once their tuning runs end" if counts["waiting"] else "")
        + f". This dry run checked every cell's config and ran nothing ({took(seconds)})."
    )
    say(line)


def cmd_status(args: argparse.Namespace) -> int:
    from bench import sweep as sweeps

    sweep = sweeps.load_sweep(args.file, check=False)  # run ids need no validation: quick, no torch
    status = sweeps.status(sweep)
    styles = {"done": "green", "failed": "red", "running": "yellow", "pending": "dim", "waiting": "dim"}
    rows, failed, waiting = [], [], {}
    for cell, state, record in status.cells:
        accuracy = ""
        if state == "done":  # a tuning run is validated, never tested
            accuracy = f"{record['metrics']['test_acc' if cell.stage is None else 'val_acc'] * 100:.2f}"
        rid = "" if cell.waiting else cell.run_id()
        if record is not None and record.get("status") != "ok":
            failed.append((rid, (record.get("error") or "no error recorded").splitlines()[0]))
        if cell.waiting:
            waiting[cell.waiting] = waiting.get(cell.waiting, 0) + 1
        row = (cell.method, cell.dataset, _time_steps(cell), _shown_variant(cell.variant), str(cell.seed))
        rows.append((*row, Text(state, style=styles[state]), accuracy, rid))
    columns = ["method", "dataset", "T", "variant", "seed", "state", "acc. %", "run id"]
    # Whole run ids where they fit; else only what follows <method>-<dataset>-, which the row shows.
    whole = [max(len(column), *(len(str(row[i])) for row in rows)) for i, column in enumerate(columns)]
    short = sum(whole) + 2 * (len(columns) - 1) > console.width
    if short:
        rows = [(*row[:-1], row[-1].removeprefix(f"{row[0]}-{row[1]}-")) for row in rows]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column in columns:  # the variant wraps on a narrow terminal; the others stay whole
        justify = "right" if column == "acc. %" else "left"
        table.add_column(column, no_wrap=column != "variant", overflow="fold", justify=justify)
    for row in rows:
        table.add_row(*row)
    console.print(f"sweep {sweep.name}: {len(rows)} cells, in order", style="italic", highlight=False)
    console.print(Trimmed(table))
    notes = ["acc. %: test accuracy; a tuning run's (variant tuning k/n) is its validation accuracy."]
    if short:
        notes.append("run id: <method>-<dataset>-<the id shown>.")
    notes += [f"waiting ({n}): {why}." for why, n in waiting.items()]
    notes += [f"failed {rid}: {error}" for rid, error in failed]
    for note in notes:
        say(note)
    say(", ".join(f"{n} {state}" for state, n in status.counts.items()))
    if status.records:
        say(
            f"The recorded runs took {status.busy_s / 3600:.2f} h of wall-clock time (cells side by side "
            "counted once, gaps between sessions not at all); their own times add up to "
            f"{status.run_s / 3600:.2f} h."
        )
    return 0


def whole_number(least: int):
    """An argparse type: a whole number >= ``least`` (``--max-parallel -1`` would start nothing, forever)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {least}")
        return value

    return parse


def add_results_option(parser: argparse.ArgumentParser) -> None:
    """``--results`` and the pricing options, for the commands that read the run records."""
    parser.add_argument(
        "--results", default=None, help="results directory (default: $SNNBENCH_RESULTS or results)"
    )
    pricing = parser.add_argument_group(
        "pricing",
        "price every record under these instead of its run's own (no training: records keep "
        "their raw counts)",
    )
    pricing.add_argument("--cost-table", default=None, help="a cost table in configs/energy/ (e.g. loihi)")
    pricing.add_argument("--pooled", default=None, help="pooled-spike rule: folded, effective, ac or mac")
    pricing.add_argument("--graded", default=None, help="graded-spike rule: amplitude or unit")
    pricing.add_argument("--memory-model", default=None, help="a memory model in configs/energy/memory/")


def pricing_of(args: argparse.Namespace):
    from bench.results.pricing import Pricing

    return Pricing(args.cost_table, args.graded, args.pooled, args.memory_model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark low-latency spiking neural networks."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="methods, datasets, sweeps and energy cost tables")
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser(
        "run",
        help="train, validate and test one method on one dataset",
        description="Train, validate and test one method on one dataset, then write its run record. "
        "Extra key=value arguments override the config (e.g. method.time_steps=4 "
        "trainer.max_epochs=5 data.batch_size=64).",
    )
    p_run.add_argument("--method", required=True, help="method key (see `bench list`)")
    p_run.add_argument("--dataset", required=True, help="dataset key (see `bench list`)")
    p_run.add_argument("--seed", type=int, default=None, help="random seed (default: config `seed`)")
    p_run.add_argument(
        "--rerun", action="store_true", help="train again even if this run id has an ok record (replaced)"
    )
    p_run.add_argument(
        "--print-config",
        action="store_true",
        help="print the merged, resolved config as YAML and the run id, then exit (nothing trains, nothing "
        "is written)",
    )
    p_run.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p_run.set_defaults(func=cmd_run)

    p_test = sub.add_parser(
        "test",
        help="re-test the model a run kept, without training (another device, precision or batch size)",
        description="Test the model an ok run kept (<paths.models>/<run_id>.pt, $SNNBENCH_MODELS) without "
        "training: the run is rebuilt from its record's config, its weights loaded and tested with the "
        "same metrics, and a new record, <run_id>-test-<hash>, is written that links to the training "
        "record (tested_from). Extra key=value arguments may override trainer.*, metrics.*, "
        "data.batch_size, data.num_workers and data.root only (e.g. trainer.accelerator=gpu "
        "trainer.precision=bf16-mixed data.batch_size=256).",
    )
    p_test.add_argument("--run", required=True, metavar="RUN_ID", help="the run id of an ok training run")
    p_test.add_argument("overrides", nargs="*", metavar="key=value", help="test overrides")
    p_test.set_defaults(func=cmd_test)

    p_sweep = sub.add_parser(
        "sweep",
        help="run a sweep file's method x dataset x seed cells, locally or as a SLURM job array",
        description="Run every cell of a sweep file (configs/sweeps/<name>.yaml, or a path) that has no ok "
        "record yet; failed cells only with --retry-failed; interrupted ones resume from their checkpoint.",
    )
    p_sweep.add_argument("file", help="sweep file, or the name of one in configs/sweeps/")
    p_sweep.add_argument("--executor", choices=("local", "slurm"), default="local")
    p_sweep.add_argument("--dry-run", action="store_true", help="list the cells in order and their state")
    p_sweep.add_argument(
        "--max-parallel",
        type=whole_number(1),
        default=None,
        help="local: cells at a time (1); slurm: array parallelism",
    )
    p_sweep.add_argument(
        "--estimate",
        action="store_true",
        help="with --dry-run: pilot each distinct (method, dataset, T) shape on this machine (a few steps in "
        "a fresh process) and print s/step, peak memory, projected seconds per cell, and the sweep's "
        "device-hours and wall time at its parallelism",
    )
    p_sweep.add_argument("--retry-failed", action="store_true", help="run cells whose record says failed")
    p_sweep.add_argument(
        "--print-config",
        type=whole_number(0),
        metavar="CELL",
        help="print cell CELL's merged, resolved config (cells numbered as --dry-run numbers them) as YAML "
        "and its run id, then exit",
    )
    p_sweep.add_argument("--tables", action="store_true", help="run `bench tables` when the sweep ends")
    slurm = p_sweep.add_argument_group(
        "slurm (override the sweep file's `slurm` block)",
        "The sweep file's `slurm` keys: partition, cpus_per_task, gpus_per_node, mem_gb, timeout_min, "
        "array_parallelism, account, qos, constraint, signal_delay_s, max_num_timeout, cells_per_task. "
        "--dry-run --executor slurm prints the request each array task would make.",
    )
    slurm.add_argument("--partition")
    slurm.add_argument("--cpus-per-task", type=whole_number(1))
    slurm.add_argument("--gpus-per-node", type=whole_number(0))
    slurm.add_argument("--mem-gb", type=float)
    slurm.add_argument("--timeout-min", type=whole_number(1), help="time limit per task, minutes")
    slurm.add_argument(
        "--cells-per-task",
        type=int,  # checked by the sweep package, which says what it means
        help="cells one array task runs one after another in one process (1: a task per cell)",
    )
    slurm.add_argument("--wait", action="store_true", help="wait for the job array to finish")
    p_sweep.set_defaults(func=cmd_sweep)

    p_prepare = sub.add_parser(
        "prepare",
        help="download, verify and convert datasets and build their frame caches, once, before a sweep",
        description="Make datasets ready before training, once, on a machine with internet: download what "
        "can be downloaded (MNIST, Fashion-MNIST, CIFAR-10/100, Tiny ImageNet; data.download=false skips "
        "it), verify the files (md5s where official), extract, and build every frame cache of the event "
        "datasets. With --sweep, every (dataset, data.*) configuration the sweep's cells use, each cache "
        "built once. Prints per dataset what is ready, and for what is missing the expected layout and "
        "where to get it; exits 1 if anything is missing. A second call only reports. SLURM tasks never "
        "download: run this first, with the data root the tasks will see (data.root=R, or $SNNBENCH_DATA "
        "set where you submit).",
    )
    p_prepare.add_argument(
        "items", nargs="*", metavar="DATASET | data.key=value", help="dataset keys and data.* overrides"
    )
    p_prepare.add_argument("--sweep", help="every dataset configuration of this sweep file (or name)")
    p_prepare.set_defaults(func=cmd_prepare)

    p_status = sub.add_parser(
        "status", help="done / failed / running / pending / waiting per cell of a sweep"
    )
    p_status.add_argument("file", help="sweep file, or the name of one in configs/sweeps/")
    p_status.set_defaults(func=cmd_status)

    p_tables = sub.add_parser("tables", help="rebuild results tables and plots from the run records")
    add_results_option(p_tables)
    p_tables.set_defaults(func=cmd_tables)

    p_compare = sub.add_parser(
        "compare",
        help="rank the methods of one dataset from the run records (best, tied, cheapest within 1 pt)",
        description="Rank the recorded runs of one dataset at each T, per sweep, cost table, counting "
        "conventions and frame setting (never across them): mean accuracy ± 95 % CI over seeds, Welch's "
        "p against the best, energy per sample, the Pareto front, and the cheapest method within 1 point.",
    )
    p_compare.add_argument("--dataset", required=True, help="dataset key")
    p_compare.add_argument("--time-steps", type=int, default=None, help="only this T")
    p_compare.add_argument("--sweep", default=None, help="only this sweep (`runs`: the `bench run` records)")
    add_results_option(p_compare)
    p_compare.set_defaults(func=cmd_compare)
    return parser


class WarningLine(logging.Handler):
    """snnbench's warnings (a record left out of the tables, a run resuming) as ``warning: ...`` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        line = Text.assemble(("warning: ", "bold yellow"), record.getMessage())
        err_console.print(Trimmed(line), highlight=False)


def show_warnings() -> None:
    logger = logging.getLogger("bench")
    if not any(isinstance(h, WarningLine) for h in logger.handlers):
        logger.addHandler(WarningLine(logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_warnings()
    try:
        check_config_dir()
        return args.func(args)
    except BenchError as error:
        notes = " ".join(getattr(error, "__notes__", []))
        err_console.print(f"[bold red]error:[/] {error} {notes}".rstrip(), highlight=False)
        return 1
    except OSError as error:  # a full disk, a read-only or missing folder: not a bug
        notes = " ".join(getattr(error, "__notes__", []))
        message = storage_error(error, "read or write a file")
        err_console.print(f"[bold red]error:[/] {message} {notes}".rstrip(), highlight=False)
        return 1
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted.[/]")
        return 130
    except Exception as error:
        if os.environ.get("SNNBENCH_DEBUG"):
            raise
        notes = " ".join(getattr(error, "__notes__", []))
        err_console.print(
            f"[bold red]error:[/] {type(error).__name__}: {error} {notes} "
            "This looks like a bug in snnbench; set SNNBENCH_DEBUG=1 to see the traceback.",
            highlight=False,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
