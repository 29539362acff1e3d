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

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from bench import CONFIG_DIR
from bench.metrics import conventions_label
from bench.records import load_records

#: Table name of the records that belong to no sweep (``bench run``).
SINGLE_RUNS = "runs"


def section_title(name: str) -> str:
    """The heading of a sweep's (or the single runs') table, README section and plots."""
    return "Individual runs (`bench run`)" if name == SINGLE_RUNS else f"Sweep `{name}`"


@dataclass(frozen=True)
class Column:
    key: str  # key in record["metrics"]
    header: str
    scale: float = 1.0
    digits: int = 2
    cost: bool = False  # plotted against accuracy when present


ACCURACY = Column("test_acc", "accuracy (%)", scale=100.0)
COLUMNS = (
    ACCURACY,
    Column("energy_uj", "energy/sample (µJ)", digits=3, cost=True),
    Column("ann_snn_energy_ratio", "ANN/SNN energy", digits=2),
    Column("acs", "ACs", digits=0, cost=True),
    Column("macs", "MACs", digits=0, cost=True),
    Column("firing_rate", "firing rate", digits=4),
    Column("storage_kib", "storage (KiB)", digits=1, cost=True),
    Column("throughput_sps", "throughput (samples/s)", digits=0),
    Column("params", "parameters", digits=0, cost=True),
)


@dataclass
class Group:
    dataset: str
    method: str
    time_steps: int
    cost_table: str  # energies under different cost tables are never averaged together
    conventions: str  # nor counts made under different counting rules (bench.metrics.rules)
    experiment: str  # nor different experiments: the resolved config minus what does not define one
    records: list[dict]
    label: str = ""  # the variant's name, or the settings that tell it from the other rows of its method

    def values(self, key: str) -> list[float]:
        return [r["metrics"][key] for r in self.records if r["metrics"].get(key) is not None]

    def mean(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.fmean(values) if values else None


#: Config keys that never tell two experiments apart: the seed, file locations, names and display.
NOT_THE_EXPERIMENT = (
    "seed",
    "paths",
    "sweep",
    "variant",
    "logger",
    "data.root",
    "trainer.enable_progress_bar",
)


def experiment_settings(record: dict) -> dict[str, object]:
    """A record's resolved config as flat ``group.key: value`` pairs, minus :data:`NOT_THE_EXPERIMENT`."""
    flat: dict[str, object] = {}

    def walk(node, prefix):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted in NOT_THE_EXPERIMENT:
                continue
            if isinstance(value, dict):
                walk(value, f"{dotted}.")
            else:
                flat[dotted] = value

    walk(record.get("config") or {}, "")
    return flat


def group_records(records: list[dict]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        metrics = record["metrics"]
        key = (record["dataset"], record["method"], int(metrics["time_steps"]), metrics.get("cost_table", ""))
        key += (conventions_label(metrics.get("conventions")),)
        key += (json.dumps(experiment_settings(record), sort_keys=True, default=str),)
        groups.setdefault(key, Group(*key, records=[])).records.append(record)
    result = [groups[k] for k in sorted(groups)]
    label_experiments(result)
    return sorted(
        result, key=lambda g: (g.dataset, g.method, g.time_steps, g.label, g.cost_table, g.conventions)
    )


def label_experiments(groups: list[Group]) -> None:
    """Name the rows of a method that ran as several experiments: by their sweep variant, else by the
    settings in which they differ (``method.lr=0.1``)."""
    families: dict[tuple, list[Group]] = {}
    for g in groups:
        families.setdefault((g.dataset, g.method), []).append(g)
    for family in families.values():
        if len({g.experiment for g in family}) < 2:
            continue
        settings = [experiment_settings(g.records[0]) for g in family]
        differing = sorted({k for s in settings for k in s if any(o.get(k) != s.get(k) for o in settings)})
        for g, s in zip(family, settings, strict=True):
            variant = next((r.get("variant") for r in g.records if r.get("variant")), None)
            g.label = variant or ", ".join(f"{k}={s.get(k)}" for k in differing if k != "method.time_steps")


@dataclass(frozen=True)
class Relative:
    """A column comparing a row with its method's reference variant (sweep file ``reference``)."""

    key: str
    header: str
    difference: bool  # points of difference (accuracy) or a ratio (costs)


RELATIVE = (
    Relative("test_acc", "Δ accuracy vs {ref} (pt)", True),
    Relative("energy_uj", "energy vs {ref}", False),
    Relative("storage_kib", "storage vs {ref}", False),
)


def relative_cells(group: Group, groups: list[Group], reference: str) -> list[str]:
    """``group``'s mean against the mean of its method's ``reference`` row (same dataset, cost table and
    conventions; the same T when the reference ran at several)."""
    candidates = [
        g
        for g in groups
        if (g.dataset, g.method, g.cost_table, g.conventions, g.label)
        == (group.dataset, group.method, group.cost_table, group.conventions, reference)
    ]
    same_t = [g for g in candidates if g.time_steps == group.time_steps]
    base = (same_t or candidates or [None])[0]
    cells = []
    for column in RELATIVE:
        ours, theirs = group.mean(column.key), base.mean(column.key) if base else None
        if (
            base is None
            or ours is None
            or theirs is None
            or base is group
            or (not column.difference and not theirs)
        ):
            cells.append("-")
        elif column.difference:
            cells.append(f"{100 * (ours - theirs):+.2f}")
        else:
            cells.append(f"{ours / theirs:.3f}")
    return cells


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value: it is undefined)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _format(column: Column, values: list[float], spread: bool = True) -> str:
    if not values:
        return "-"
    mean, std = mean_std([v * column.scale for v in values])
    text = f"{mean:,.{column.digits}f}"
    return text if std is None or not spread else f"{text} ± {std:,.{column.digits}f}"


def present_columns(groups: list[Group]) -> list[Column]:
    return [c for c in COLUMNS if any(g.values(c.key) for g in groups)]


def identifying(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """The optional columns that tell rows apart (variant, cost table, conventions): headers, and each
    group's cells."""
    present = [
        (header, attribute)
        for header, attribute in (
            ("variant", "label"),
            ("cost table", "cost_table"),
            ("conventions", "conventions"),
        )
        if len({getattr(g, attribute) for g in groups}) > 1
        or (attribute == "label" and any(g.label for g in groups))
    ]
    return [h for h, _ in present], [[getattr(g, a) or "-" for _, a in present] for g in groups]


def render_markdown(
    groups: list[Group],
    failed: list[dict],
    n_records: int,
    title: str = "Summary",
    reference: str | None = None,
) -> str:
    columns = present_columns(groups)
    extra_headers, extra_cells = identifying(groups)
    header = ["dataset", "method", "T", *extra_headers, "n", *(c.header for c in columns)]
    if reference:
        header += [r.header.format(ref=reference) for r in RELATIVE]
    tables = sorted({g.cost_table for g in groups if g.cost_table})
    lines = [
        f"# {title}",
        "",
        f"Generated by `bench tables` from {n_records} run record(s) in `runs/`; do not edit by hand. "
        "Values are mean ± sample std over seeds (no ± when n = 1).",
        "",
    ]
    if tables:
        lines += [
            f"Energy per sample is an estimate under the cost table {', '.join(tables)} "
            "(configs/energy/), not a hardware measurement; throughput depends on each run's device.",
            "",
        ]
    if groups:
        lines += [conventions_note(groups), ""]
    lines += [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for g, extra in zip(groups, extra_cells, strict=True):
        cells = [g.dataset, g.method, str(g.time_steps), *extra, str(len(g.records))]
        cells += [_format(c, g.values(c.key)) for c in columns]
        cells += relative_cells(g, groups, reference) if reference else []
        lines.append("| " + " | ".join(cells) + " |")
    if failed:
        lines += ["", f"Failed runs ({len(failed)}), not included above:", ""]
        lines += [f"- `{r['run_id']}`: {r.get('error') or 'no error recorded'}" for r in failed]
    return "\n".join(lines) + "\n"


def conventions_note(groups: list[Group]) -> str:
    """The sentence that says under which counting conventions a table's ops and energies were counted."""
    labels = sorted({g.conventions for g in groups})
    if len(labels) == 1:
        return f"Ops counted under the conventions {labels[0]} (README: What a run measures)."
    return (
        f"Ops were counted under {len(labels)} sets of conventions ({'; '.join(labels)}); rows under "
        "different conventions are never averaged together and their costs are not comparable."
    )


def write_csv(groups: list[Group], path: Path) -> None:
    columns = present_columns(groups)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["dataset", "method", "time_steps", "variant", "cost_table", "conventions", "n"]
            + [f"{c.key}_{stat}" for c in columns for stat in ("mean", "std")]
        )
        for g in groups:
            row: list = [
                g.dataset,
                g.method,
                g.time_steps,
                g.label,
                g.cost_table,
                g.conventions,
                len(g.records),
            ]
            for c in columns:
                values = g.values(c.key)
                mean, std = mean_std(values) if values else (None, None)
                row += [mean, std]
            writer.writerow(["" if v is None else v for v in row])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def method_colors(groups: list[Group]) -> dict[str, tuple]:
    """One colour per method, the same in every plot of a sweep."""
    plt = _pyplot()
    methods = sorted({g.method for g in groups})
    return {m: plt.cm.tab10.colors[i % 10] for i, m in enumerate(methods)}


def _plot_dataset(ax, groups: list[Group], cost_key: str, cost_label: str, colors: dict) -> None:
    """One dataset's groups as points (mean cost, mean accuracy +- std) with a legend of method and T;
    a log cost axis with plain-number labels when the costs span more than 10x."""
    from matplotlib import ticker

    costs = []
    steps = sorted({g.time_steps for g in groups})
    several_conventions = len({g.conventions for g in groups}) > 1
    for g in groups:
        marker = "osD^vP*X"[steps.index(g.time_steps) % 8]  # a method's T points stay apart in the legend
        cost, _ = mean_std(g.values(cost_key))
        acc, acc_std = mean_std([v * 100 for v in g.values(ACCURACY.key)])
        details = [f"T={g.time_steps}", *([g.label] if g.label else [])]
        details += [g.conventions.split()[0]] if several_conventions else []
        label = f"{g.method} ({', '.join(details)})"
        ax.errorbar(cost, acc, yerr=acc_std or 0, fmt=marker, color=colors[g.method], capsize=3, label=label)
        costs.append(cost)
    if min(costs) > 0 and max(costs) > 10 * min(costs):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        # minor labels at 2x and 5x only, so that they never overlap
        ax.xaxis.set_minor_formatter(
            ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else "")
        )
    ax.set_xlabel(cost_label)
    ax.set_ylabel(ACCURACY.header)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_accuracy_vs_costs(groups: list[Group], plots_dir: Path) -> list[Path]:
    """One PNG per cost metric present: accuracy (mean +- std) against the cost, a panel per dataset."""
    plt = _pyplot()
    colors = method_colors(groups)
    paths = []
    for column in (c for c in present_columns(groups) if c.cost):
        datasets = sorted({g.dataset for g in groups if g.values(column.key)})
        fig, axes = plt.subplots(len(datasets), 1, figsize=(7.5, 3.4 * len(datasets)), squeeze=False)
        for ax, dataset in zip(axes[:, 0], datasets, strict=True):
            _plot_dataset(
                ax,
                [g for g in groups if g.dataset == dataset and g.values(column.key)],
                column.key,
                column.header,
                colors,
            )
            ax.set_title(f"{dataset}: accuracy vs {column.header}")
        paths.append(_save(fig, plots_dir / f"accuracy_vs_{column.key}.png"))
    return paths


def plot_accuracy_vs_energy(groups: list[Group], path: Path, title: str, colors: dict) -> Path:
    """Accuracy (mean +- std over seeds) against energy per sample, a point per method and T."""
    fig, ax = _pyplot().subplots(figsize=(7.5, 4.4))
    _plot_dataset(ax, groups, "energy_uj", "energy per sample (µJ, estimate)", colors)
    ax.set_title(title)
    return _save(fig, path)


def load_claims(path: Path = CONFIG_DIR / "paper_claims.yaml") -> list[dict]:
    """The papers' claimed accuracies: method, dataset, time_steps, accuracy (%), source."""
    return OmegaConf.to_container(OmegaConf.load(path))["claims"] if path.exists() else []


def _claim_text(claims: list[dict], dataset: str, method: str, time_steps: int) -> str:
    found = [
        c for c in claims if (c["dataset"], c["method"], c["time_steps"]) == (dataset, method, time_steps)
    ]
    return "; ".join(f"{c['accuracy']:.2f} ({c['version']})" for c in found) or "-"


README_COLUMNS = (
    "test_acc",
    "energy_uj",
    "ann_snn_energy_ratio",
    "acs",
    "macs",
    "storage_kib",
    "throughput_sps",
)


def render_readme(
    sections: list[tuple[str, str, str | None, list[Group], list[dict]]], claims: list[dict]
) -> str:
    """``results/README.md``: per sweep and dataset the headline table, its plot, then failed runs and the
    claims no measured run matches."""
    columns = [c for c in COLUMNS if c.key in README_COLUMNS]
    lines = [
        "# Results",
        "",
        "Generated by `bench tables` from the run records in `runs/`; do not edit by hand. Accuracy is the "
        "test accuracy, mean ± sample std over seeds with n seeds; the other columns are means. Energy per "
        "sample is an estimate under the run's cost table (configs/energy/; 45 nm FP32 by default), not a "
        "hardware measurement; throughput is the run's device's. *ANN/SNN energy* is the energy of the same "
        "network run once as an ANN (one pass of every layer, dense MACs with padding taps, priced on a "
        "45 nm digital table), divided by the run's; under the v2 conventions the `ann` baseline's own "
        "ratio is exactly 1 on static data and 1/T on event data, which it runs once per frame. Each "
        "section says under which counting conventions its ops were counted (the README's *What a run "
        "measures*); sections counted under different conventions are not comparable with each other. "
        "*Paper* is the accuracy the method's paper "
        "claims for the same dataset and T (configs/paper_claims.yaml, with sources); the papers' full texts "
        "were not available, so several parts of each method are reconstructions (see each method's module).",
        "",
    ]
    matched = set()
    for name, description, reference, groups, failed in sections:
        lines += [f"## {section_title(name)}", ""] + ([description, ""] if description else [])
        lines += [f"Full table: [tables/{name}.md](tables/{name}.md).", ""]
        lines += [conventions_note(groups), ""] if groups else []
        for dataset in sorted({g.dataset for g in groups}):
            rows = [g for g in groups if g.dataset == dataset]
            extra_headers, extra_cells = identifying(rows)
            header = ["method", "T", *extra_headers, "n", *(c.header for c in columns)]
            header += [r.header.format(ref=reference) for r in RELATIVE] if reference else []
            header += ["paper (%)"]
            lines += [f"### {dataset}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for g, extra in zip(rows, extra_cells, strict=True):
                claim = _claim_text(claims, g.dataset, g.method, g.time_steps)
                matched |= {(g.dataset, g.method, g.time_steps)} if claim != "-" else set()
                cells = [g.method, str(g.time_steps), *extra, str(len(g.records))]
                cells += [_format(c, g.values(c.key), spread=c is ACCURACY) for c in columns]
                cells += relative_cells(g, rows, reference) if reference else []
                lines.append("| " + " | ".join([*cells, claim]) + " |")
            lines += [
                "",
                f"![accuracy vs energy on {dataset}](plots/{name}/{dataset}_accuracy_vs_energy.png)",
                "",
            ]
        if failed:
            lines += [f"Runs that did not finish ({len(failed)}), not averaged in:", ""]
            lines += [
                f"- `{r['run_id']}` ({r.get('status')}): {r.get('error') or 'no error recorded'}"
                for r in failed
            ]
            lines.append("")
    unmatched = [c for c in claims if (c["dataset"], c["method"], c["time_steps"]) not in matched]
    if unmatched:
        lines += ["## Paper claims without a matching measured run", ""]
        lines += [
            "| method | dataset | T | claimed accuracy (%) | version | source |",
            "|---|---|---|---|---|---|",
        ]
        for c in unmatched:
            row = [
                c["method"],
                c["dataset"],
                str(c["time_steps"]),
                f"{c['accuracy']:.2f}",
                c["version"],
                c["source"],
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


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
    tables_dir, plots_dir = results_dir / "tables", results_dir / "plots"
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
