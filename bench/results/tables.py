"""The per-sweep tables, markdown and CSV: one table per setting (dataset, frames, cost table, counting
conventions), so that no table mixes them; rows ranked at each T, with the best, the rows tied with it (the
p the verdict rests on: Holm-adjusted where the ranking is over items and seeds) and the Pareto front
marked."""

from __future__ import annotations

import csv
from pathlib import Path

from bench.results.aggregate import (
    SINGLE_RUNS,
    Group,
    Section,
    by_setting,
    in_rank_order,
    ranked,
    reference_group,
    setting_names,
)
from bench.results.formatting import (
    ACCURACY,
    MISSING,
    RANK_HEADERS,
    RELATIVE,
    Column,
    accuracy_cell,
    csv_number,
    error_summary,
    fact_cell,
    fact_keys,
    format_cell,
    present_columns,
    rank_cells,
    relative_cells,
)
from bench.results.records import CHANCE_POINTS
from bench.results.stats import ITEMS, RULES, SEEDS, Row, mean_ci, mean_std

TRACK_NAMES = {"matched": "matched track", "paper": "paper track", "ablation": "ablation"}


def section_title(name: str) -> str:
    """The heading of a sweep's (or the single runs') table, README section and plots."""
    return "Your runs (`bench run`)" if name == SINGLE_RUNS else f"Sweep `{name}`"


def setting_note(group: Group) -> str:
    """The sentences that say under which cost table, counting conventions and frames a setting's costs
    were counted."""
    table = f"cost table {group.cost_table}" if group.cost_table else "no cost table recorded"
    text = (
        f"Energy is an estimate under the {table} (configs/energy/), not a hardware measurement; ops "
        f"counted under the conventions {group.conventions} (README: What a run measures)."
    )
    return text + (f" Event frames: {group.frames}." if group.frames else "")


def title(section: Section) -> str:
    track = TRACK_NAMES.get(section.track)
    return section_title(section.name) + (f" ({track})" if track else "")


def identifying(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """The variant column when some row has a label: headers, and each group's cells."""
    if not any(g.label for g in groups):
        return [], [[] for _ in groups]
    return ["variant"], [[g.label or "-"] for g in groups]


def table_lines(
    groups: list[Group],
    rows: dict[int, Row],
    columns: list[Column],
    reference: str | None,
    spread: bool = True,
    claims=None,
    facts: bool = False,
) -> list[str]:
    """One setting's table: method, T, [variant], n, accuracy, verdict, Pareto, the other columns, [the
    columns relative to the reference variant], [the paper's claim (``claims(group)``)], [with ``facts``,
    the method's mechanism facts (an ablation's: what each variant's mechanisms did)]."""
    groups = in_rank_order(groups, rows)
    facts_shown = fact_keys(groups) if facts else []
    extra_headers, extra_cells = identifying(groups)
    others = [c for c in columns if c is not ACCURACY]
    header = ["method", "T", *extra_headers, "n", ACCURACY.header, *RANK_HEADERS, *(c.header for c in others)]
    header += [r.header.format(ref=reference) for r in RELATIVE] if reference else []
    header += ["paper (%)"] if claims else []
    header += facts_shown
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g, extra in zip(groups, extra_cells, strict=True):
        row = rows.get(id(g))
        cells = [g.method, str(g.time_steps), *extra, str(len(g.records)), accuracy_cell(g, row)]
        cells += rank_cells(row)
        cells += [format_cell(c, g.values(c.key), spread) for c in others]
        cells += relative_cells(g, reference_group(g, groups, reference)) if reference else []
        cells += [claims(g)] if claims else []
        cells += [fact_cell(g, key) for key in facts_shown]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def basis_note(groups: list[Group], rows: dict[int, Row]) -> str:
    """The sentence that says, per T, what one setting's intervals and tests cover: items and seeds (Holm
    p) or seeds only (Welch's p, uncorrected)."""
    steps: dict[str, list[int]] = {}
    for g in sorted(groups, key=lambda g: g.time_steps):
        row = rows.get(id(g))
        if row is not None and g.time_steps not in steps.get(row.basis, []):
            steps.setdefault(row.basis, []).append(g.time_steps)
    what = {
        ITEMS: "items and seeds, paired on the same items, Holm p",
        SEEDS: "seeds only, Welch's p, uncorrected",
    }
    if len(steps) == 1:
        return f"Intervals and tests over {what[next(iter(steps))]}."
    parts = [f"at T = {', '.join(map(str, ts))} over {what[basis]}" for basis, ts in steps.items()]
    return "Intervals and tests " + "; ".join(parts) + "."


def conventions_note(groups: list[Group]) -> str:
    """The sentence that says under which counting conventions a sweep's ops were counted."""
    labels = sorted({g.conventions for g in groups})
    if len(labels) == 1:
        return f"Ops counted under the conventions {labels[0]} (README: What a run measures)."
    return (
        f"Ops were counted under {len(labels)} sets of conventions ({'; '.join(labels)}); each has its own "
        "table: rows under different conventions are never averaged or ranked together and their costs are "
        "not comparable."
    )


def render_markdown(section: Section) -> str:
    if not section.published:
        return render_runs(section)
    groups, rows = section.groups, ranked(section.groups)
    lines = [
        f"# {title(section)}",
        "",
        f"Generated by `bench tables` from {section.n_records} run record(s) in `runs/`; do not edit by "
        f"hand. One table per dataset, frame setting, cost table and counting conventions: rows of different "
        f"ones are never averaged or ranked together. {RULES} The other columns are mean ± 95 % CI likewise; "
        "throughput depends on each run's device.",
        "",
    ]
    lines += [conventions_note(groups), ""] if len({g.conventions for g in groups}) > 1 else []
    names, ablation = setting_names(groups), section.track == "ablation"
    for setting in by_setting(groups):
        heading, _ = names[setting[0].setting]
        lines += [f"## {heading}", "", setting_note(setting[0]) + " " + basis_note(setting, rows), ""]
        lines += table_lines(setting, rows, present_columns(setting), section.reference, facts=ablation)
        lines += [""]
    if section.failed:
        lines += [f"Failed runs ({len(section.failed)}), not included above:", ""]
        lines += [f"- `{r['run_id']}`: {error_summary(r.get('error'))}" for r in section.failed]
        lines.append("")
    return "\n".join(lines)


RUNS_TEXT = (
    "Generated by `bench tables` from the {n} record(s) in `runs/` that belong to no sweep (`bench run`, "
    "`bench test`); do not edit by hand. One-off runs are scratch work, not findings: they are not in "
    "README.md or its answer, and here they are listed, never ranked, tested against each other or put on "
    "a Pareto front (`bench compare --sweep runs` compares them when asked). To keep scratch runs out of "
    "this results folder altogether, give them their own: `paths.results=/tmp/scratch` (or "
    "`SNNBENCH_RESULTS=/tmp/scratch`). A row is one experiment (runs whose configs differ only in the "
    "seed): each column is mean ± 95 % CI over its runs (the mean alone when n = 1). *at chance*: test "
    "accuracy within {points} points of chance (one over the number of classes) or below it, so the run "
    "learnt next to nothing; *outside design*: outside the method's design range (`bench list`)."
)


def run_note(group: Group) -> str:
    """What a row of one-off runs should be read with: at chance (all or some of its runs), outside
    design; ``-`` for neither."""
    n, chance = len(group.records), group.at_chance
    notes = ["at chance" if chance == n else f"{chance} of {n} runs at chance"] if chance else []
    notes += ["outside design"] if group.outside_design else []
    return ", ".join(notes) or MISSING


def render_runs(section: Section) -> str:
    """The ``bench run`` records' table: per setting each experiment's means, in order of T and method,
    with no verdict, bold or Pareto mark; then the runs that did not finish, their errors summarised."""
    lines = [
        f"# {section_title(section.name)}: not published, not ranked",
        "",
        RUNS_TEXT.format(n=section.n_records, points=CHANCE_POINTS),
        "",
    ]
    names = setting_names(section.groups)
    for setting in by_setting(section.groups):
        heading, _ = names[setting[0].setting]
        columns = present_columns(setting)
        headers, labels = identifying(setting)
        others = [c for c in columns if c is not ACCURACY]
        header = ["method", "T", *headers, "n", ACCURACY.header, "note", *(c.header for c in others)]
        lines += [f"## {heading}", "", setting_note(setting[0]), ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for g, label in zip(setting, labels, strict=True):
            cells = [g.method, str(g.time_steps), *label, str(len(g.records))]
            cells += [format_cell(ACCURACY, g.values(ACCURACY.key)), run_note(g)]
            cells += [format_cell(c, g.values(c.key)) for c in others]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if section.failed:
        lines += [f"Runs that did not finish ({len(section.failed)}):", ""]
        lines += [
            f"- `{r['run_id']}` ({r.get('status')}): {error_summary(r.get('error'))}" for r in section.failed
        ]
        lines.append("")
    return "\n".join(lines)


def _rank_csv(row: Row) -> list:
    """A row's ranking in the CSV: basis, ranked accuracy and its 95 % half-width, verdict, raw and Holm p,
    difference to the best and its 95 % half-width (fractions, as test_acc)."""
    d = row.difference
    return [
        row.basis,
        csv_number(row.accuracy),
        csv_number(row.ci),
        row.verdict,
        csv_number(row.p),
        csv_number(row.p_holm),
        csv_number(None if d is None else d.mean),
        csv_number(None if d is None else d.half_width),
        int(row.pareto),
    ]


def _statistics_csv(group: Group, columns: list[Column]) -> list:
    """Each column's mean, sample std and 95 % CI half-width over a row's runs."""
    cells: list = []
    for c in columns:
        values = group.values(c.key)
        mean, std = mean_std(values) if values else (None, None)
        ci = mean_ci(values)[1] if values else None
        cells += [mean, std, csv_number(ci)]
    return cells


def write_csv(section: Section, path: Path) -> None:
    """Every row of every setting table, with each column's mean, sample std and 95 % CI half-width (and an
    ablation's mechanism facts, as its markdown table shows them). The ``bench run`` records' CSV has no
    ranking columns: how many of a row's runs ended at chance and whether they lie outside design instead."""
    columns = present_columns(section.groups)
    statistics = [f"{c.key}_{stat}" for c in columns for stat in ("mean", "std", "ci95")]
    setting = ["dataset", "frames", "cost_table", "conventions", "time_steps", "method", "variant", "n"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if not section.published:
            writer.writerow([*setting, "at_chance", "outside_design", *statistics])
            for g in (g for s in by_setting(section.groups) for g in s):
                cells = [g.dataset, g.frames, g.cost_table, g.conventions, g.time_steps, g.method, g.label]
                cells += [len(g.records), g.at_chance, int(g.outside_design), *_statistics_csv(g, columns)]
                writer.writerow(["" if v is None else v for v in cells])
            return
        rows = ranked(section.groups)
        facts = fact_keys(section.groups) if section.track == "ablation" else []
        writer.writerow(
            ["track", *setting]
            + ["basis", "accuracy", "accuracy_ci95", "vs_best", "p_vs_best", "p_holm_vs_best"]
            + ["diff_vs_best", "diff_ci95", "pareto"]
            + statistics
            + [f"fact_{key}" for key in facts]
        )
        for setting_groups in by_setting(section.groups):
            for g in in_rank_order(setting_groups, rows):
                row = rows.get(id(g))
                cells: list = [section.track or "", g.dataset, g.frames, g.cost_table, g.conventions]
                cells += [g.time_steps, g.method, g.label, len(g.records)]
                cells += _rank_csv(row) if row else [""] * 9
                cells += _statistics_csv(g, columns)
                cells += [fact_cell(g, key) for key in facts]
                writer.writerow(["" if v is None else v for v in cells])
