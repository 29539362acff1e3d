"""Accuracy against each cost, and against energy per dataset (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from bench.results.aggregate import ACCURACY, Group, mean_std, present_columns


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
