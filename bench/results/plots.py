"""Accuracy against each cost, against energy with the Pareto front, and accuracy and energy against T
(matplotlib, Agg); one panel or file per setting (dataset, frames, cost table, conventions), never mixing
them. Error bars and bands are 95 % confidence intervals over seeds."""

from __future__ import annotations

from pathlib import Path

from bench.results.aggregate import Group, by_setting, by_time_steps, setting_names
from bench.results.formatting import ACCURACY, present_columns
from bench.results.pricing import RANGE
from bench.results.stats import mean_ci, mean_std, rank

LINESTYLES = ("-", "--", ":", "-.")


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


def _accuracy(g: Group) -> tuple[float, float | None]:
    """Mean accuracy (%) and its 95 % CI half-width."""
    return mean_ci([v * 100 for v in g.values(ACCURACY.key)])


def _plot_dataset(
    ax, groups: list[Group], cost_key: str, cost_label: str, colors: dict, pareto=False
) -> None:
    """One setting's groups as points (mean cost, mean accuracy +- 95 % CI) with a legend of method and T;
    with ``pareto``, each T's accuracy-energy Pareto front as a line through its ringed members; a log cost
    axis with plain-number labels when the costs span more than 10x."""

    costs = []
    steps = sorted({g.time_steps for g in groups})
    for g in groups:
        marker = "osD^vP*X"[steps.index(g.time_steps) % 8]  # a method's T points stay apart in the legend
        cost, _ = mean_std(g.values(cost_key))
        acc, ci = _accuracy(g)
        details = [f"T={g.time_steps}", *([g.label] if g.label else [])]
        label = f"{g.method} ({', '.join(details)})"
        ax.errorbar(cost, acc, yerr=ci or 0, fmt=marker, color=colors[g.method], capsize=3, label=label)
        costs.append(cost)
    if pareto:
        for i, context in enumerate(by_time_steps(groups)):
            front = sorted((r.energy, 100 * r.accuracy) for r in rank(context).rows if r.pareto)
            if not front:
                continue
            x, y = zip(*front, strict=True)
            ax.plot(x, y, LINESTYLES[(i + 1) % 4], color="0.3", lw=1, zorder=0)
            ax.scatter(x, y, s=160, facecolors="none", edgecolors="0.3", zorder=0, label=None)
            ax.plot([], [], LINESTYLES[(i + 1) % 4], marker="o", mfc="none", color="0.3", lw=1,
                    label=f"Pareto front (T={context[0].time_steps})")  # fmt: skip
    if min(costs) > 0 and max(costs) > 10 * min(costs):
        ax.set_xscale("log")
        _plain_numbers(ax.xaxis)
    ax.set_xlabel(cost_label)
    ax.set_ylabel(ACCURACY.header)
    ax.grid(alpha=0.3, which="both")
    _legend(ax)


def _plain_numbers(axis) -> None:
    """Plain-number labels on a log axis (10, not 10^1), minor ones at 2x and 5x only, so that they never
    overlap."""
    from matplotlib import ticker

    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


def _legend(ax) -> None:
    """The legend beside the axes: the groups first, then the Pareto fronts."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("Pareto front"))
    ax.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
    )


def _plot_against_t(ax, groups: list[Group], key: str, colors: dict) -> None:
    """One line per method (and variant) through its mean at each T; for accuracy a 95 % CI band, for
    energy a log axis and, where the records keep raw counts, a band from the folded to the effective
    pooled-spike rule (:data:`~bench.results.pricing.RANGE`)."""
    from matplotlib import ticker

    steps = sorted({g.time_steps for g in groups})
    names = sorted({(g.method, g.label) for g in groups})
    banded = False
    for method, label in names:
        series = sorted(
            (g for g in groups if (g.method, g.label) == (method, label)), key=lambda g: g.time_steps
        )
        series = [g for g in series if g.values(key)]
        if not series:
            continue
        style = LINESTYLES[[n for m, n in names if m == method].index(label) % 4]
        x = [g.time_steps for g in series]
        if key == ACCURACY.key:
            means, cis = zip(*(_accuracy(g) for g in series), strict=True)
            cis = [c or 0.0 for c in cis]
            low, high = (
                [m - c for m, c in zip(means, cis, strict=True)],
                [m + c for m, c in zip(means, cis, strict=True)],
            )
            ax.fill_between(x, low, high, color=colors[method], alpha=0.15, lw=0)
        else:
            means = [g.mean(key) for g in series]
            ends = [[g.mean(f"{key}@{mode}") for g in series] for mode in RANGE]
            if all(v is not None for end in ends for v in end):
                pairs = list(zip(*ends, strict=True))
                ax.fill_between(
                    x,
                    [min(p) for p in pairs],
                    [max(p) for p in pairs],
                    color=colors[method],
                    alpha=0.15,
                    lw=0,
                )
                banded = True
        name = f"{method} [{label}]" if label else method
        if len(series) == 1:  # a method run at one T only (ann): a reference level across the plot
            ax.axhline(means[0], ls=":", lw=1, color=colors[method])
            name += f" (T={x[0]} only)"
        ax.plot(x, means, style, marker="o", color=colors[method], label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("time steps T")
    if key == ACCURACY.key:
        ax.set_ylabel(ACCURACY.header + ", 95 % CI band")
    else:
        ax.set_yscale("log")
        _plain_numbers(ax.yaxis)
        band = "\nband: pooled spikes from folded to effective" if banded else ""
        ax.set_ylabel(f"energy per sample (µJ, estimate){band}")
    ax.grid(alpha=0.3, which="both")
    _legend(ax)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_accuracy_vs_costs(groups: list[Group], plots_dir: Path) -> list[Path]:
    """One PNG per cost metric present: accuracy (mean +- 95 % CI) against the cost, a panel per setting."""
    plt = _pyplot()
    colors, names = method_colors(groups), setting_names(groups)
    paths = []
    for column in (c for c in present_columns(groups) if c.cost):
        settings = [s for s in by_setting([g for g in groups if g.values(column.key)])]
        fig, axes = plt.subplots(len(settings), 1, figsize=(7.5, 3.4 * len(settings)), squeeze=False)
        for ax, setting in zip(axes[:, 0], settings, strict=True):
            _plot_dataset(ax, setting, column.key, column.header, colors)
            ax.set_title(f"{names[setting[0].setting][0]}: accuracy vs {column.header}", fontsize=10)
        paths.append(_save(fig, plots_dir / f"accuracy_vs_{column.key}.png"))
    return paths


def plot_accuracy_vs_energy(groups: list[Group], path: Path, title: str, colors: dict) -> Path:
    """Accuracy (mean +- 95 % CI over seeds) against energy per sample, a point per method and T, and each
    T's Pareto front; ``groups`` are one setting's."""
    fig, ax = _pyplot().subplots(figsize=(7.5, 4.4))
    _plot_dataset(ax, groups, "energy_uj", "energy per sample (µJ, estimate)", colors, pareto=True)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_against_time_steps(groups: list[Group], key: str, path: Path, title: str, colors: dict) -> Path:
    """Accuracy (``test_acc``, with its CI band) or energy per sample (``energy_uj``) against T, a line per
    method; ``groups`` are one setting's."""
    fig, ax = _pyplot().subplots(figsize=(7.5, 4.4))
    _plot_against_t(ax, groups, key, colors)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)
