"""Accuracy against each cost, against energy with the Pareto front, and accuracy and energy against T
(matplotlib, Agg); one panel or file per setting (dataset, frames, cost table, conventions), never mixing
them. Error bars and bands are 95 % confidence intervals over seeds.

Every figure reads the same way, so that a reader learns it once: colour = method, from one palette in the
registry's method order (a method has its colour in every figure, whatever else the figure shows), and
colour = variant among the rows of a method run as several variants (an ablation); marker = T, one fixed
mapping (:data:`MARKERS`); one legend beside the axes with a colour key and a marker key; axis labels that
name the unit, cost table and counting conventions; tick labels in engineering notation. Figures are saved
to the bounding box of everything drawn (:data:`SAVE`), so no legend or caption is ever cut off. Points
that would hide each other are drawn side by side, as the caption under the figure says. A figure (or a
panel) whose x values are all equal says nothing and is not drawn."""

from __future__ import annotations

import math
import textwrap
import zlib
from pathlib import Path

from bench import registry
from bench.results.aggregate import Group, by_setting, by_time_steps, setting_names
from bench.results.formatting import ACCURACY, Column, present_columns
from bench.results.pricing import RANGE
from bench.results.stats import mean_ci, mean_std, rank

#: How every figure is saved: cropped to everything drawn (legend and caption included), never clipped.
SAVE = {"dpi": 120, "bbox_inches": "tight", "pad_inches": 0.1}
#: The marker of each T, the same in every figure; a T not listed is drawn as its number.
MARKERS = {1: "o", 2: "s", 3: "p", 4: "D", 5: "v", 6: "^", 7: "<", 8: "P", 10: "h", 12: ">", 16: "X"}
#: The headings of the legend's keys.
METHOD_KEY, VARIANT_KEY, T_KEY, PARETO_KEY = "method", "method [variant]", "time steps", "Pareto front"
#: Points closer than this fraction of the x range are drawn apart by it (a cluster of many points by
#: less, so that it spreads over at most MAX_SPREAD of the range).
DODGE, MAX_SPREAD = 0.015, 0.12
#: Values that differ by at most this fraction of the largest count as equal (:func:`varies`).
SAME = 0.005
#: The line styles of the Pareto fronts, one per T of a figure.
LINESTYLES = ("--", ":", "-.", "-")
ACCURACY_LABEL = "test accuracy (%), mean ± 95 % CI over seeds"
#: Grey, kept for the Pareto fronts and the marker key: no method is drawn in it.
GREY = "0.3"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def palette() -> list[tuple]:
    """The method colours in order: tab10 without its grey, then Dark2 without its grey."""
    maps = _pyplot().colormaps
    tab10, dark2 = list(maps["tab10"].colors), list(maps["Dark2"].colors)
    return tab10[:7] + tab10[8:] + dark2[:7]


def method_colors(groups: list[Group]) -> dict[str, tuple]:
    """Each method's colour: by its place in the registry's sorted method list, so the same in every figure
    (a method the registry does not know takes one of the colours after the registry's, by a hash of its
    name); and, for a method that ran as several variants among ``groups``, one colour per variant (keyed by
    :attr:`Group.name`) from the colours no other method of ``groups`` has. Computed once per sweep, so
    that a variant keeps its colour in all the sweep's figures."""
    colors, known = palette(), registry.keys("method")
    methods = sorted({g.method for g in groups})
    result = {m: colors[known.index(m) % len(colors)] for m in methods if m in known}
    spare = colors[len(known) :] or colors
    for method in (m for m in methods if m not in known):
        start = zlib.crc32(method.encode())
        turn = [spare[(start + i) % len(spare)] for i in range(len(spare))]
        result[method] = next((c for c in turn if c not in result.values()), turn[0])
    labels: dict[str, set] = {}
    for g in groups:
        labels.setdefault(g.method, set()).add(g.label)
    split = {m for m, found in labels.items() if len(found) > 1}
    if split:
        free = [c for c in colors if c not in {result[m] for m in methods if m not in split}]
        names = sorted({g.name for g in groups if g.method in split})
        result |= {name: free[i % len(free)] for i, name in enumerate(names)}
    return result


def series_color(colors: dict, group: Group) -> tuple:
    """A group's colour: its variant's where its method ran as several, else its method's."""
    if group.name in colors:
        return colors[group.name]
    return colors[group.method] if group.method in colors else method_colors([group])[group.method]


def t_marker(time_steps: int) -> str:
    """T's marker (:data:`MARKERS`), else T's number as the marker."""
    return MARKERS.get(time_steps, f"${time_steps}$")


def _plain(title: str) -> str:
    """A title without Markdown code marks (the tables' headings carry them)."""
    return title.replace("`", "")


def _accuracy(g: Group) -> tuple[float, float | None]:
    """Mean accuracy (%) and its 95 % CI half-width."""
    return mean_ci([v * 100 for v in g.values(ACCURACY.key)])


def _cost(g: Group, key: str) -> float:
    return mean_std(g.values(key))[0]


def varies(groups: list[Group], key: str) -> bool:
    """Whether the groups' mean ``key`` values differ by more than :data:`SAME` of the largest: only then
    does a plot against them say something (an axis zoomed into a smaller spread would make estimates
    that agree look far apart)."""
    values = [_cost(g, key) for g in groups if g.values(key)]
    return bool(values) and max(values) - min(values) > SAME * max(abs(v) for v in values)


def _counting(g: Group) -> str:
    """The counting conventions of a group's ops, short: ``pooled: effective, graded: amplitude``."""
    conventions = g.records[0]["metrics"].get("conventions")
    if not conventions:
        return "counting v1"
    return f"pooled: {conventions['pooled_spikes']}, graded: {conventions['graded_spikes']}"


def cost_label(key: str, g: Group, default: str = "") -> str:
    """The axis label of a cost: unit, and the cost table and counting conventions it depends on."""
    table = g.cost_table or "no cost table recorded"
    return {
        "energy_uj": f"energy per sample (µJ)\n{table}; {_counting(g)}",
        "acs": f"ACs per sample\n{_counting(g)}",
        "macs": f"MACs per sample\n{_counting(g)}",
        "storage_kib": "weight storage (KiB)",
        "params": "parameters",
    }.get(key, default or key)


def _number(value: float, _pos=None) -> str:
    """A tick label: engineering notation from 1,000 on (``250k``, ``1.5M``), plain below (``0.5``)."""
    from matplotlib.ticker import EngFormatter

    return EngFormatter(sep="")(value) if abs(value) >= 1000 else f"{value:g}"


def _ticks(axis, log: bool, low: float, high: float) -> None:
    """Engineering-notation labels; on a log axis the decades, and 2x and 5x too where the values span at
    most 2.5 decades (more would run together)."""
    from matplotlib import ticker

    axis.set_major_formatter(ticker.FuncFormatter(_number))
    axis.set_tick_params(which="both", labelsize=9)
    if not log:
        axis.set_major_locator(ticker.MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        return
    decades = math.log10(high / low)

    def minor(value, _pos=None):
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
        return _number(value) if decades <= 2.5 and mantissa in (2.0, 5.0) else ""

    axis.set_minor_formatter(ticker.FuncFormatter(minor))


def dodged(positions: list[float], log: bool) -> tuple[list[float], float]:
    """``positions`` with those closer than :data:`DODGE` of their range to a neighbour drawn apart, in
    order and around where they are (on a log axis in log space); and the largest shift as a fraction of
    the range (0.0 where none moved)."""
    t = [math.log10(x) if log else x for x in positions]
    span = max(t) - min(t) if t else 0.0
    if span == 0:
        return list(positions), 0.0
    shifted, largest = list(positions), 0.0
    order = sorted(range(len(t)), key=lambda i: t[i])
    clusters = [[order[0]]]
    for i in order[1:]:
        if t[i] - t[clusters[-1][-1]] < DODGE * span:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    for cluster in (c for c in clusters if len(c) > 1):
        step = min(DODGE, MAX_SPREAD / (len(cluster) - 1))
        for k, i in enumerate(cluster):
            moved = t[i] + (k - (len(cluster) - 1) / 2) * step * span
            shifted[i] = 10**moved if log else moved
        largest = max(largest, (len(cluster) - 1) / 2 * step)
    return shifted, largest


def _shift_note(largest: float, what: str) -> list[str]:
    if not largest:
        return []
    return [
        f"{what} drawn side by side: shifted sideways by up to ±{100 * largest:.1f} % of the x range "
        "(the tables give the exact values)."
    ]


def _draw_points(ax, groups: list[Group], key: str, colors: dict, pareto=False, header="") -> float:
    """One setting's groups as points (mean cost, mean accuracy ± 95 % CI), drawn apart where they would
    overlap; with ``pareto``, each T's accuracy-energy Pareto front as a line through its ringed members;
    a log cost axis when the costs span more than 10x. Returns the largest shift (:func:`dodged`)."""
    costs = [_cost(g, key) for g in groups]
    log = min(costs) > 0 and max(costs) > 10 * min(costs)
    xs, largest = dodged(costs, log)
    where = {}
    for g, x in zip(groups, xs, strict=True):
        acc, ci = _accuracy(g)
        ax.errorbar(
            x,
            acc,
            yerr=ci or 0,
            marker=t_marker(g.time_steps),
            linestyle="none",
            markersize=7,
            color=series_color(colors, g),
            capsize=3,
            label=f"{g.name} (T={g.time_steps})",
        )
        where[id(g)] = (x, acc)
    if pareto:
        for i, context in enumerate(by_time_steps(groups)):
            front = sorted(where[id(r.group)] for r in rank(context).rows if r.pareto)
            if front:
                x, y = zip(*front, strict=True)
                style = LINESTYLES[i % len(LINESTYLES)]
                ax.plot(
                    x, y, style, color=GREY, lw=1, zorder=0, label=f"Pareto front (T={context[0].time_steps})"
                )
                ax.scatter(x, y, s=170, facecolors="none", edgecolors=GREY, zorder=0)
    if log:
        ax.set_xscale("log")
    _ticks(ax.xaxis, log, min(xs), max(xs))
    ax.set_xlabel(cost_label(key, groups[0], header), fontsize=9)
    ax.set_ylabel(ACCURACY_LABEL, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    return largest


def _legend(fig, groups: list[Group], colors: dict, fronts: tuple[int, ...] = (), single: dict | None = None):
    """The figure's one legend, beside the axes: a colour key (methods, or methods and their variants), a
    marker key (T) and, for ``fronts`` (the T of each Pareto front), a line key; each key under a bold
    heading. ``single``: series drawn at one T only (name -> T), so marked."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels, headings = [], [], []

    def heading(text: str) -> None:
        headings.append(len(labels))
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(text)

    series = {g.name: series_color(colors, g) for g in sorted(groups, key=lambda g: (g.method, g.label))}
    heading(VARIANT_KEY if any(g.label for g in groups) else METHOD_KEY)
    for name, color in series.items():
        handles.append(Patch(facecolor=color, edgecolor=color))
        only = (single or {}).get(name)
        labels.append(name if only is None else f"{name} (T = {only} only)")
    heading(T_KEY)
    for t in sorted({g.time_steps for g in groups}):
        handles.append(Line2D([], [], linestyle="none", marker=t_marker(t), markersize=7, color=GREY))
        labels.append(f"T = {t}")
    if fronts:
        heading(PARETO_KEY)
        for i, t in enumerate(fronts):
            style = LINESTYLES[i % len(LINESTYLES)]
            handles.append(Line2D([], [], linestyle=style, color=GREY, marker="o", mfc="none", markersize=9))
            labels.append(f"T = {t}")
    legend = fig.legend(handles, labels, loc="outside right upper", fontsize=8, handlelength=1.8)
    for i in headings:
        legend.get_texts()[i].set_fontweight("bold")
    return legend


def _caption(fig, notes: list[str]) -> None:
    """Notes under everything else: the figure's bottom label, for which its layout makes room."""
    if notes:
        text = "\n".join(textwrap.fill(note, 115) for note in notes)
        fig.supxlabel(text, x=0.01, ha="left", va="bottom", fontsize=7.5, linespacing=1.3)


def _figure(rows: int = 1):
    return _pyplot().subplots(rows, 1, figsize=(8.0, 3.6 * rows + 0.6), squeeze=False, layout="constrained")


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, **SAVE)
    _pyplot().close(fig)
    return path


def plot_accuracy_vs_costs(groups: list[Group], plots_dir: Path) -> list[Path]:
    """One PNG per cost metric present: accuracy (mean ± 95 % CI) against the cost, a panel per setting;
    a setting whose rows all have the same cost gets no panel (the caption names it), a cost on which all
    settings' rows agree no figure."""
    colors, names = method_colors(groups), setting_names(groups)
    paths = []
    for column in (c for c in present_columns(groups) if c.cost):
        settings = by_setting([g for g in groups if g.values(column.key)])
        drawn = [s for s in settings if varies(s, column.key)]
        if not drawn:
            continue
        fig, axes = _figure(len(drawn))
        largest = 0.0
        for ax, setting in zip(axes[:, 0], drawn, strict=True):
            largest = max(largest, _draw_points(ax, setting, column.key, colors, header=column.header))
            ax.set_title(f"{names[setting[0].setting][0]}: accuracy vs {column.header}", fontsize=10)
        notes = _shift_note(largest, f"Points of (nearly) equal {_short(column)}")
        skipped = [names[s[0].setting][0] for s in settings if not varies(s, column.key)]
        if skipped:
            same = f"every row there has the same {_short(column)}, to {100 * SAME:g} %"
            notes.append(f"Not drawn: {', '.join(skipped)} ({same}).")
        _legend(fig, [g for s in drawn for g in s], colors)
        _caption(fig, notes)
        paths.append(save(fig, plots_dir / f"accuracy_vs_{column.key}.png"))
    return paths


def _short(column: Column) -> str:
    """A column's name without its unit: ``storage`` for ``storage (KiB)``."""
    return column.header.partition(" (")[0]


def plot_accuracy_vs_energy(groups: list[Group], path: Path, title: str, colors: dict) -> Path | None:
    """Accuracy (mean ± 95 % CI over seeds) against energy per sample, a point per method and T, and each
    T's Pareto front; ``groups`` are one setting's. None (no file) where every row has the same energy."""
    if not varies(groups, "energy_uj"):
        return None
    fig, axes = _figure()
    largest = _draw_points(axes[0, 0], groups, "energy_uj", colors, pareto=True)
    axes[0, 0].set_title(_plain(title), fontsize=10)
    fronts = tuple(c[0].time_steps for c in by_time_steps(groups) if any(r.pareto for r in rank(c).rows))
    _legend(fig, groups, colors, fronts=fronts)
    notes = ["Rings: the rows on their T's accuracy-energy Pareto front (no other row of that T is both "]
    notes[0] += "more accurate and cheaper)."
    _caption(fig, notes + _shift_note(largest, "Points of (nearly) equal energy"))
    return save(fig, path)


def plot_against_time_steps(groups: list[Group], key: str, path: Path, title: str, colors: dict) -> Path:
    """Accuracy (``test_acc``, with its CI band) or energy per sample (``energy_uj``) against T, a line per
    method (and variant); ``groups`` are one setting's, some method run at several T."""
    from matplotlib import ticker

    fig, axes = _figure()
    ax = axes[0, 0]
    steps = sorted({g.time_steps for g in groups})
    names = sorted({(g.method, g.label) for g in groups})
    series = [
        sorted((g for g in groups if (g.method, g.label) == n and g.values(key)), key=lambda g: g.time_steps)
        for n in names
    ]
    series = [s for s in series if s]
    span = math.log2(steps[-1] / steps[0])
    step = min(DODGE, MAX_SPREAD / max(len(series) - 1, 1)) * span
    banded, single = False, {}
    for i, line in enumerate(series):
        color = series_color(colors, line[0])
        shift = (i - (len(series) - 1) / 2) * step
        x = [g.time_steps * 2**shift for g in line]
        if key == ACCURACY.key:
            means, cis = zip(*(_accuracy(g) for g in line), strict=True)
            low = [m - (c or 0.0) for m, c in zip(means, cis, strict=True)]
            high = [m + (c or 0.0) for m, c in zip(means, cis, strict=True)]
            ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)
        else:
            means = [g.mean(key) for g in line]
            ends = [[g.mean(f"{key}@{mode}") for g in line] for mode in RANGE]
            if all(v is not None for end in ends for v in end):
                pairs = list(zip(*ends, strict=True))
                ax.fill_between(
                    x, [min(p) for p in pairs], [max(p) for p in pairs], color=color, alpha=0.15, lw=0
                )
                banded = True
        if len(line) == 1:  # a method run at one T only (ann): a reference level across the plot
            ax.axhline(means[0], ls=":", lw=1, color=color)
            single[line[0].name] = line[0].time_steps
        ax.plot(x, means, "-", color=color, label=line[0].name)
        for g, xi, m in zip(line, x, means, strict=True):
            ax.plot(xi, m, linestyle="none", marker=t_marker(g.time_steps), markersize=7, color=color)
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("time steps T (log scale)", fontsize=9)
    notes = []
    if key == ACCURACY.key:
        ax.set_ylabel("test accuracy (%), mean", fontsize=9)
        notes.append("Bands: 95 % CI over seeds.")
    else:
        ax.set_yscale("log")
        values = [v for drawn in ax.lines for v in drawn.get_ydata()]
        _ticks(ax.yaxis, True, min(values), max(values))
        ax.set_ylabel(cost_label(key, groups[0]), fontsize=9)
        if banded:
            notes.append("Bands: energy with pooled spikes counted from the folded to the effective rule.")
    if single:
        notes.append("Dotted lines: the level of a method run at one T only, across all T.")
    if len(series) > 1 and step:
        shown = (len(series) - 1) / 2 * step / span
        notes.append(
            f"Methods drawn side by side at each T: shifted sideways by up to ±{100 * shown:.1f} % of the "
            "x range, so that equal values stay visible."
        )
    ax.grid(alpha=0.3, which="both")
    ax.set_title(_plain(title), fontsize=10)
    _legend(fig, [g for line in series for g in line], colors, single=single)
    _caption(fig, notes)
    return save(fig, path)
