"""``bench tables``: regenerate ``results/`` from the run records alone (never logs).

One table per sweep (``tables/<sweep>.{md,csv}``; runs made with ``bench run`` go to ``tables/runs.*``),
so demo and full runs never mix; ``plots/<sweep>/``: accuracy against each cost, and against energy per
dataset; ``README.md``: per sweep and dataset the headline table with the papers' claimed accuracy
(``configs/paper_claims.yaml``) beside the measured one where dataset, method and T match. Runs are grouped
per experiment: dataset, method, T, cost table, counting conventions and the resolved config minus the seed
(and paths and names), so different variants of a sweep or runs with different settings are never averaged
together; a sweep's rows are labelled by their variant's name (or, for single runs, by the settings that
tell them apart), and a sweep file's ``reference`` variant adds columns comparing every other row with it.
Records counted under different rules are never averaged or ranked together, and every table says which
conventions it used. Every metric is mean +- sample standard deviation over the group's seeds, with n.
Failed and interrupted runs are listed, never averaged in.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from bench import CONFIG_DIR
from bench.results import paths
from bench.results.aggregate import SINGLE_RUNS, group_records, section_title
from bench.results.plots import method_colors, plot_accuracy_vs_costs, plot_accuracy_vs_energy
from bench.results.readme import load_claims, render_readme
from bench.results.records import load_records
from bench.results.tables import render_markdown, write_csv


def _sweep_file(name: str) -> tuple[str, str | None]:
    """A sweep's description and reference variant, from its file in configs/sweeps/ (if it still has
    one)."""
    path = CONFIG_DIR / "sweeps" / f"{name}.yaml"
    spec = OmegaConf.load(path) if path.exists() else OmegaConf.create({})
    return str(spec.get("description", "")), spec.get("reference")


def regenerate(results_dir: str | Path) -> list[Path]:
    """Rebuild every table, plot and ``README.md`` under ``results_dir`` from its run records; return the
    files written."""
    results_dir = Path(results_dir)
    records = load_records(results_dir)
    by_sweep: dict[str, list[dict]] = {}
    for record in records:
        by_sweep.setdefault(record.get("sweep") or SINGLE_RUNS, []).append(record)
    tables_dir, plots_dir = paths.tables_dir(results_dir), paths.plots_dir(results_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    written, sections = [], []
    for name in sorted(by_sweep, key=lambda n: (n == SINGLE_RUNS, n)):
        sweep_records = by_sweep[name]
        groups = group_records(sweep_records)
        failed = [r for r in sweep_records if r.get("status") != "ok"]
        title = section_title(name)
        table_md = tables_dir / f"{name}.md"
        description, reference = _sweep_file(name)
        table_md.write_text(render_markdown(groups, failed, len(sweep_records), title, reference))
        table_csv = tables_dir / f"{name}.csv"
        write_csv(groups, table_csv)
        (plots_dir / name).mkdir(parents=True, exist_ok=True)
        written += [table_md, table_csv, *plot_accuracy_vs_costs(groups, plots_dir / name)]
        colors = method_colors(groups)
        for dataset in sorted({g.dataset for g in groups if g.values("energy_uj")}):
            rows = [g for g in groups if g.dataset == dataset and g.values("energy_uj")]
            path = plots_dir / name / f"{dataset}_accuracy_vs_energy.png"
            written.append(plot_accuracy_vs_energy(rows, path, f"{title}: {dataset}", colors))
        sections.append((name, description, reference, groups, failed))
    readme = results_dir / "README.md"
    readme.write_text(render_readme(sections, load_claims()))
    return [*written, readme]
