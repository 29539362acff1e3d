"""``bench tables``: regenerate ``results/`` from the run records alone (never logs).

One table file per sweep (``tables/<sweep>.{md,csv}``), so demo and full runs never mix, and in it one
table per setting (dataset, frames, cost table, counting conventions), so that those never mix either;
``plots/<sweep>/``: accuracy against each cost (a panel per setting), and per setting accuracy against
energy with each T's Pareto front and, with several T, accuracy and energy against T; ``README.md``: the
answer (per dataset and T of the matched track: the most accurate method, those tied with it, the cheapest
within 1 point), then the sweeps track by track (the track a sweep's records carry, copied from its file
when each cell ran), the paper track beside the papers' claimed accuracy (``configs/paper_claims.yaml``).
Runs are grouped per experiment: dataset, method, T, cost table, counting conventions and the resolved
config minus the seed (and paths and names), so different variants of a sweep or runs with different
settings are never averaged together; a sweep's rows are labelled by their variant's name (or by the
settings that tell them apart), and a sweep's ``reference`` variant (as its records carry it) adds columns
comparing every other row with it. Every metric is mean +- the half-width of its 95 % confidence interval
over the group's seeds, with n; rows are ranked per T (:mod:`bench.results.stats`). Failed and interrupted
runs are listed, never averaged in, their errors summarised
(:func:`~bench.results.formatting.error_summary`). One-off runs (``bench run``) are not published:
``tables/runs.{md,csv}`` lists them, unranked and without plots, and README.md leaves them out. A
sweep's plots are drawn again only when what they are drawn from changed (``plots/<sweep>/drawn.json``,
:func:`draw`): drawing is nearly all of the time this takes.
Files under ``tables/`` and ``plots/`` that this run did not write (a sweep's records deleted, a setting
renamed) are removed: ``results/`` is a function of ``runs/``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import paths
from bench.errors import BenchError
from bench.progress import Counter, took
from bench.results.aggregate import (
    SINGLE_RUNS,
    Group,
    Section,
    by_setting,
    sections,
    setting_names,
    several_t,
)
from bench.results.plots import (
    method_colors,
    plot_accuracy_vs_costs,
    plot_accuracy_vs_energy,
    plot_against_time_steps,
    varies,
)
from bench.results.pricing import AS_RECORDED, Pricing, priced_records
from bench.results.readme import load_claims, render_readme
from bench.results.records import load_records
from bench.results.tables import render_markdown, section_title, write_csv

#: What ``bench tables`` writes under ``tables/`` and ``plots/`` (and so may remove when stale).
GENERATED = (".md", ".csv", ".png", ".json")


def plot_title(section: Section, heading: str, what: str = "") -> str:
    """``Sweep `s`: dataset[: what]``, with the setting's qualifier (if any) on a second line."""
    dataset, _, qualifier = heading.partition(" (")
    return f"{section_title(section.name)}: {dataset}{what}" + (f"\n({qualifier}" if qualifier else "")


#: A plot to draw: a function of :mod:`bench.results.plots` and its arguments; it returns the file or
#: files it wrote.
PlotJob = tuple[Callable, tuple]
#: What each sweep's plots were drawn from, beside them: ``plots/<sweep>/drawn.json`` (:func:`draw`).
DRAWN = "drawn.json"


def plot_jobs(section: Section, folder: Path) -> list[PlotJob]:
    """A sweep's plots, each a call to make (:func:`draw`): accuracy against each cost, then per setting
    accuracy against energy and, with several T, accuracy and energy against T."""
    jobs: list[PlotJob] = [(plot_accuracy_vs_costs, (section.groups, folder))]
    colors, names = method_colors(section.groups), setting_names(section.groups)
    for setting in by_setting(section.groups):
        heading, stem = names[setting[0].setting]
        if varies(setting, "energy_uj"):  # else every point would stand at one energy: no figure
            rows = [g for g in setting if g.values("energy_uj")]
            path = folder / f"{stem}_accuracy_vs_energy.png"
            jobs.append((plot_accuracy_vs_energy, (rows, path, plot_title(section, heading), colors)))
        if several_t(setting):
            for key, short in (("test_acc", "accuracy"), ("energy_uj", "energy")):
                if any(g.values(key) for g in setting):
                    path = folder / f"{stem}_{short}_vs_T.png"
                    title = plot_title(section, heading, f": {short} vs T")
                    jobs.append((plot_against_time_steps, (setting, key, path, title, colors)))
    return jobs


def _draw(job: PlotJob) -> list[Path]:
    function, args = job
    written = function(*args)
    return written if isinstance(written, list) else [written]


def _plain(value):
    """JSON for what a plot job's arguments hold beside plain values: a row (its fields and records) and a
    file or folder (its name: where the results folder lies is no input)."""
    if isinstance(value, Path):
        return value.name
    if isinstance(value, Group):
        return vars(value)
    raise TypeError(f"a plot job's argument {value!r} has no JSON form")


@functools.cache
def _drawing_code() -> bytes:
    """What a plot's pixels depend on beside its data: the code of this package and matplotlib's version."""
    import matplotlib

    digest = hashlib.sha256(matplotlib.__version__.encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.digest()


def _inputs(jobs: list[PlotJob]) -> str:
    """A digest of everything ``jobs`` draw from: the drawing code and each call's function and arguments."""
    digest = hashlib.sha256(_drawing_code())
    for function, args in jobs:
        digest.update(function.__name__.encode())
        digest.update(json.dumps(args, sort_keys=True, default=_plain).encode())
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _still_drawn(folder: Path, inputs: str) -> list[Path] | None:
    """The plots a sweep's ``drawn.json`` lists, when they were drawn from ``inputs`` and every file is
    still there as it was written; else None (draw them)."""
    try:
        drawn = json.loads((folder / DRAWN).read_text())
        files = [(name, digest) for name, digest in drawn["files"]]
        if drawn["inputs"] != inputs or not all(Path(n).name == n and n.endswith(".png") for n, _ in files):
            return None
        kept = all(_sha256(folder / name) == digest for name, digest in files)
    except (OSError, ValueError, TypeError, KeyError):  # none yet, unreadable, or not what this writes
        return None
    return [folder / name for name, _ in files] if kept else None


def draw(
    jobs: list[PlotJob], folder: Path, done: Callable[[], None] = lambda: None
) -> tuple[list[Path], bool]:
    """Draw one sweep's plots (``jobs``) into ``folder`` with a ``drawn.json`` saying what they were drawn
    from and each file's digest; return the files and whether they were drawn (not kept). Drawing is
    nearly all of ``bench tables``' time, so plots whose inputs (the records, this code, matplotlib's
    version) did not change since, and whose files are as they were written, are kept rather than drawn
    again: the same bytes, still a function of ``runs/``. ``done()`` per plot job."""
    inputs = _inputs(jobs)
    kept = _still_drawn(folder, inputs)
    if kept is not None:
        for _ in jobs:
            done()
        return [*kept, folder / DRAWN], False
    written = []
    for job in jobs:
        written += _draw(job)
        done()
    if not written:
        return [], True
    drawn = {"inputs": inputs, "files": [[path.name, _sha256(path)] for path in written]}
    (folder / DRAWN).write_text(json.dumps(drawn, indent=1) + "\n")
    return [*written, folder / DRAWN], True


def remove_stale(results_dir: Path, written: list[Path]) -> None:
    """Remove the generated files under ``tables/`` and ``plots/`` that this run did not write, and the
    folders left empty."""
    keep = {p.resolve() for p in written}
    folders = [f for f in (paths.tables_dir(results_dir), paths.plots_dir(results_dir)) if f.is_dir()]
    for folder in folders:
        for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            if path.is_file() and path.suffix in GENERATED and path.resolve() not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


@dataclass
class Progress:
    """How far ``bench tables`` got (``done`` of ``total`` steps: each sweep's tables, each plot job, the
    README) and which sweeps' plots it drew and kept; ``step(self)`` after each step."""

    step: Callable[[Progress], None] = lambda progress: None
    total: int = 0
    done: int = 0
    drawn: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def advance(self) -> None:
        self.done += 1
        self.step(self)


def regenerate(
    results_dir: str | Path, pricing: Pricing = AS_RECORDED, progress: Progress | None = None
) -> list[Path]:
    """Rebuild every table, plot and ``README.md`` under ``results_dir`` from its run records, priced under
    ``pricing`` (default: each record's own); return the files written, and say how far it got in
    ``progress``."""
    results_dir, progress = Path(results_dir), progress or Progress()
    if not results_dir.is_dir():
        raise BenchError(
            f"There is no results folder {results_dir}, so there are no run records to build tables from. "
            "Check --results or SNNBENCH_RESULTS (unset, it is results/ in the current folder), or run a "
            "sweep or `bench run` first."
        )
    tables_dir, plots_dir = paths.tables_dir(results_dir), paths.plots_dir(results_dir)
    published = sections(priced_records(load_records(results_dir), pricing))
    jobs = {s.name: plot_jobs(s, plots_dir / s.name) for s in published if s.published}
    progress.total = len(published) + sum(map(len, jobs.values())) + 1
    written = []
    for section in published:
        tables_dir.mkdir(parents=True, exist_ok=True)
        table_md, table_csv = tables_dir / f"{section.name}.md", tables_dir / f"{section.name}.csv"
        table_md.write_text(render_markdown(section))
        write_csv(section, table_csv)
        written += [table_md, table_csv]
        progress.advance()
    for name, sweep_jobs in jobs.items():
        files, drawn = draw(sweep_jobs, plots_dir / name, progress.advance)
        written += files
        (progress.drawn if drawn else progress.kept).append(name)
    readme = results_dir / "README.md"
    readme.write_text(render_readme(published, load_claims()))
    progress.advance()
    remove_stale(results_dir, written)
    return [*written, readme]


def publish(results_dir: str | Path, pricing: Pricing = AS_RECORDED) -> str:
    """``bench tables``: :func:`regenerate`, counting its steps on stderr once it takes a while
    (:class:`bench.progress.Counter`), and return the summary to print."""
    results_dir, started, counter = Path(results_dir), time.monotonic(), None

    def step(progress: Progress) -> None:
        nonlocal counter
        counter = counter or Counter("writing tables and plots", progress.total)
        counter.update(progress.done)

    progress = Progress(step)
    written = regenerate(results_dir, pricing, progress)
    if counter is not None:
        counter.done()
    sweeps = [p for p in written if p.suffix == ".md" and p.parent.name == "tables" and p.stem != SINGLE_RUNS]
    plots = len([p for p in written if p.suffix == ".png"])
    kept = ""
    if progress.kept:
        drawn = f"those of {', '.join(progress.drawn)} drawn, the others" if progress.drawn else "all"
        kept = f" ({drawn} kept as drawn: their records and the drawing code are unchanged)"
    text = (
        f"Regenerated {results_dir} in {took(time.monotonic() - started)}: README.md, the tables of "
        f"{len(sweeps)} sweep(s) and {plots} plot(s){kept}."
    )
    if any(p.stem == SINGLE_RUNS for p in written):
        text += " The `bench run` records are not published: tables/runs.md lists them, unranked."
    return text
