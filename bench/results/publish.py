"""``bench tables``: regenerate ``results/`` from the run records alone (never logs).

One table file per sweep (``tables/<sweep>.{md,csv}``; runs made with ``bench run`` go to
``tables/runs.*``), so demo and full runs never mix, and in it one table per setting (dataset, frames, cost
table, counting conventions), so that those never mix either; ``plots/<sweep>/``: accuracy against each
cost (a panel per setting), and per setting accuracy against energy with each T's Pareto front and, with
several T, accuracy and energy against T; ``README.md``: the answer (per dataset and T of the matched
track: the most accurate method, those tied with it, the cheapest within 1 point), then the sweeps track by
track (the track a sweep's records carry, copied from its file when each cell ran), the paper track beside
the papers' claimed accuracy (``configs/paper_claims.yaml``). Runs are grouped per experiment: dataset,
method, T, cost table, counting conventions and the resolved config minus the seed (and paths and names),
so different variants of a sweep or runs with different settings are never averaged together; a sweep's
rows are labelled by their variant's name (or, for single runs, by the settings that tell them apart), and
a sweep's ``reference`` variant (as its records carry it) adds columns comparing every other row with it.
Every metric is mean +- the half-width of its 95 % confidence interval over the group's seeds, with n; rows
are ranked per T (:mod:`bench.results.stats`). Failed and interrupted runs are listed, never averaged in.
Files under ``tables/`` and ``plots/`` that this run did not write (a sweep's records deleted, a setting
renamed) are removed: ``results/`` is a function of ``runs/``.
"""

from __future__ import annotations

from pathlib import Path

from bench import paths
from bench.errors import BenchError
from bench.results.aggregate import Section, by_setting, sections, setting_names, several_t
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
GENERATED = (".md", ".csv", ".png")


def plot_title(section: Section, heading: str, what: str = "") -> str:
    """``Sweep `s`: dataset[: what]``, with the setting's qualifier (if any) on a second line."""
    dataset, _, qualifier = heading.partition(" (")
    return f"{section_title(section.name)}: {dataset}{what}" + (f"\n({qualifier}" if qualifier else "")


def write_plots(section: Section, folder: Path) -> list[Path]:
    written = plot_accuracy_vs_costs(section.groups, folder)
    colors, names = method_colors(section.groups), setting_names(section.groups)
    for setting in by_setting(section.groups):
        heading, stem = names[setting[0].setting]
        if varies(setting, "energy_uj"):  # else every point would stand at one energy: no figure
            rows = [g for g in setting if g.values("energy_uj")]
            path = folder / f"{stem}_accuracy_vs_energy.png"
            written.append(plot_accuracy_vs_energy(rows, path, plot_title(section, heading), colors))
        if several_t(setting):
            for key, short in (("test_acc", "accuracy"), ("energy_uj", "energy")):
                if any(g.values(key) for g in setting):
                    path = folder / f"{stem}_{short}_vs_T.png"
                    title = plot_title(section, heading, f": {short} vs T")
                    written.append(plot_against_time_steps(setting, key, path, title, colors))
    return written


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


def regenerate(results_dir: str | Path, pricing: Pricing = AS_RECORDED) -> list[Path]:
    """Rebuild every table, plot and ``README.md`` under ``results_dir`` from its run records, priced under
    ``pricing`` (default: each record's own); return the files written."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(
            f"There is no results folder {results_dir}, so there are no run records to build tables from. "
            "Check --results or SNNBENCH_RESULTS (unset, it is results/ in the current folder), or run a "
            "sweep or `bench run` first."
        )
    tables_dir, plots_dir = paths.tables_dir(results_dir), paths.plots_dir(results_dir)
    published = sections(priced_records(load_records(results_dir), pricing))
    written = []
    for section in published:
        tables_dir.mkdir(parents=True, exist_ok=True)
        table_md, table_csv = tables_dir / f"{section.name}.md", tables_dir / f"{section.name}.csv"
        table_md.write_text(render_markdown(section))
        write_csv(section, table_csv)
        written += [table_md, table_csv, *write_plots(section, plots_dir / section.name)]
    readme = results_dir / "README.md"
    readme.write_text(render_readme(published, load_claims()))
    remove_stale(results_dir, written)
    return [*written, readme]
