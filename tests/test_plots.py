"""The figures of ``bench tables`` (bench.results.plots), rendered from small hand-made record sets: one
legend per figure with a colour key (method, or variant within an ablation) and a marker key (T), both
fixed across figures; everything drawn inside the saved canvas; no figure or panel whose x values are all
equal; points that would overlap drawn apart, as the caption says; readable ticks, titles and axis labels."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import matplotlib
import pytest

from bench.results import plots, publish
from bench.results.aggregate import group_records, sections
from bench.results.publish import regenerate
from bench.results.records import write_record

ENERGY_LABEL = "energy per sample (µJ)\nhorowitz45_fp32; pooled: effective, graded: amplitude"
V2 = {"version": 2, "spiking": True, "graded_spikes": "amplitude", "pooled_spikes": "effective"}


def write_plots(section, folder: Path) -> list[Path]:
    """Every plot of a sweep, drawn as ``bench tables`` draws them into a fresh ``folder``, without the
    ``drawn.json`` beside them."""
    files, drawn = publish.draw(publish.plot_jobs(section, folder), folder)
    assert drawn
    return [path for path in files if path.name != publish.DRAWN]


def record(run_id, method, seed, t, acc, energy, dataset="mnist5k", variant=None, knob=None, **metrics):
    """An ok record of sweep ``s`` (matched track; an ablation with a ``variant``), ``metrics`` beside
    accuracy, energy, T, cost table and conventions; ``knob`` a method setting that tells variants apart."""
    method_config = {"time_steps": t} | ({"knob": knob} if knob is not None else {})
    return {
        "run_id": run_id,
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "status": "ok",
        "error": None,
        "sweep": "s",
        "track": "ablation" if variant else "matched",
        "variant": variant,
        "config": {"seed": seed, "method": method_config},
        "metrics": {
            "test_acc": acc,
            "energy_uj": energy,
            "time_steps": t,
            "cost_table": "horowitz45_fp32",
            "conventions": V2,
            **metrics,
        },
    }


#: (method, T) per dataset, shaped like the matched sweep (its old legends of one entry per method x T, 19
#: and 20 here, ran off the canvas); T = 4 on mnist5k only, T = 5 and 6 on nmnist_sim only.
SPIKING = ("albsnn", "compressed_event", "hybrid_stdb", "lif_sg", "multi_threshold", "slssnn")
ROWS = {
    "mnist5k": [("ann", 1)] + [(m, t) for m in SPIKING for t in (1, 2, 4)],
    "nmnist_sim": [("ann", 1), ("hybrid_stdb", 5)] + [(m, t) for m in SPIKING for t in (1, 2, 6)],
}


def matched_records() -> list[dict]:
    """Two seeds per row; ACs 0 everywhere (no ACs figure); storage the same on mnist5k (no panel) and on
    nmnist_sim the same for lif_sg at both T (points drawn apart); MACs from 0 to 800k (a linear axis)."""
    records = []
    for dataset, rows in ROWS.items():
        for i, (method, t) in enumerate(rows):
            storage = (
                3220.5 if dataset == "mnist5k" else {"lif_sg": 500.0, "ann": 3000.0}.get(method, 100.0 * i)
            )
            for seed in (0, 1):
                acc, energy = 0.90 + 0.005 * i + 0.01 * seed, (1 + i) * t * (1.0 + 0.1 * seed)
                metrics = {"acs": 0, "macs": 1e5 * i * (dataset == "nmnist_sim"), "storage_kib": storage}
                records.append(
                    record(f"{dataset}{i}{seed}", method, seed, t, acc, energy, dataset, **metrics)
                )
    return records


@pytest.fixture
def saved(monkeypatch):
    """Every figure saved, as ``(path, figure, savefig's options)``."""
    from matplotlib.figure import Figure

    calls, original = [], Figure.savefig

    def savefig(fig, fname, **options):
        original(fig, fname, **options)
        calls.append((Path(fname), fig, options))

    monkeypatch.setattr(Figure, "savefig", savefig)
    return calls


def drawn(fig):
    """A renderer that has drawn ``fig`` (closed once saved, it has lost its Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    return renderer


def canvas(fig, options: dict):
    """What savefig with ``options`` kept of the figure, in pixels of the saved image (drawn at its dpi)."""
    from matplotlib.transforms import Bbox

    fig.set_dpi(options.get("dpi", fig.dpi))
    renderer = drawn(fig)
    if options.get("bbox_inches") != "tight":
        return fig.bbox
    pad = options.get("pad_inches", matplotlib.rcParams["savefig.pad_inches"])
    return Bbox(fig.get_tightbbox(renderer).padded(pad).get_points() * fig.dpi)


def assert_all_inside_the_saved_canvas(path: Path, fig, options: dict) -> None:
    """The PNG is the canvas (so its size tells what was kept), and every artist, the legend and each of
    its texts included, lies inside it."""
    box = canvas(fig, options)
    renderer = fig.canvas.get_renderer()
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the PNG's IHDR
    assert abs(width - box.width) <= 1 and abs(height - box.height) <= 1, (path.name, width, height, box)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    artists = [a for a in fig.get_children() if a is not fig.patch and a.get_visible()]
    artists += [text for legend in legends for text in legend.get_texts()]
    for artist in artists:
        extent = artist.get_tightbbox(renderer) if artist in fig.axes else artist.get_window_extent(renderer)
        inside = (
            box.x0 - 1 <= extent.x0
            and extent.x1 <= box.x1 + 1
            and box.y0 - 1 <= extent.y0
            and extent.y1 <= box.y1 + 1
        )
        what = artist.get_text() if hasattr(artist, "get_text") else type(artist).__name__
        assert inside, f"{path.name}: {what!r} at {extent} lies outside the saved canvas {box}"


def legend_keys(fig) -> dict[str, list[tuple[str, object]]]:
    """The figure's one legend as its keys: heading (bold) -> [(entry text, its handle)]."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    assert len(legends) == 1, f"{len(legends)} legends"
    keys: dict = {}
    heading = None
    for text, handle in zip(legends[0].get_texts(), legends[0].legend_handles, strict=True):
        if text.get_fontweight() == "bold":
            heading = text.get_text()
            keys[heading] = []
        else:
            keys.setdefault(heading, []).append((text.get_text(), handle))
    return keys


def texts(fig) -> list[str]:
    """Every text of a figure: titles, axis labels, caption, legend."""
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]


def test_each_figure_kind_has_one_legend_of_fixed_colours_and_markers_all_inside_the_saved_canvas(
    tmp_path, saved
):
    (section,) = sections(matched_records())
    written = write_plots(section, tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [f"accuracy_vs_{cost}.png" for cost in ("energy_uj", "macs", "storage_kib")]  # ACs all 0: none
        + [f"{d}_{what}.png" for d in ROWS for what in ("accuracy_vs_energy", "accuracy_vs_T", "energy_vs_T")]
    )
    assert sorted(path.name for path, _, _ in saved) == names
    colours, markers = {}, {}
    for path, fig, options in saved:
        datasets = [d for d in ROWS if path.name.startswith(d)] or list(ROWS)
        if path.name == "accuracy_vs_macs.png":
            datasets = ["nmnist_sim"]  # MACs all 0 on mnist5k
        if path.name == "accuracy_vs_storage_kib.png":
            datasets = ["nmnist_sim"]
            note = "Not drawn: mnist5k (every row there has the same storage, to 0.5 %)."
            assert any(note in text for text in texts(fig))
        rows = {row for d in datasets for row in ROWS[d]}
        keys = legend_keys(fig)
        expected = [plots.METHOD_KEY, plots.T_KEY] + (
            [plots.PARETO_KEY] if path.name.endswith("_accuracy_vs_energy.png") else []
        )
        assert list(keys) == expected, path.name
        methods = [
            (re.sub(r" \(T = \d+ only\)$", "", text), handle) for text, handle in keys[plots.METHOD_KEY]
        ]
        assert [m for m, _ in methods] == sorted({m for m, _ in rows}), path.name
        assert [text for text, _ in keys[plots.T_KEY]] == [f"T = {t}" for t in sorted({t for _, t in rows})]
        for method, handle in methods:
            colours.setdefault(method, set()).add(tuple(handle.get_facecolor()))
        for text, handle in keys[plots.T_KEY]:
            markers.setdefault(text, set()).add(handle.get_marker())
        assert not any("`" in text for text in texts(fig)), path.name  # no Markdown in titles
        energy_labels = []  # an energy axis names its unit, cost table and counting conventions
        if path.name.endswith(("_accuracy_vs_energy.png", "accuracy_vs_energy_uj.png")):
            energy_labels = [ax.get_xlabel() for ax in fig.axes]
        elif path.name.endswith("energy_vs_T.png"):
            energy_labels = [ax.get_ylabel() for ax in fig.axes]
        assert all(label == ENERGY_LABEL for label in energy_labels), path.name
        assert_all_inside_the_saved_canvas(path, fig, options)
    # one colour per method and one marker per T in every figure, none shared
    assert all(len(c) == 1 for c in colours.values()) and len({c for s in colours.values() for c in s}) == 7
    assert all(len(m) == 1 for m in markers.values()) and len({m for s in markers.values() for m in s}) == 5
    assert markers["T = 1"] == {"o"} and markers["T = 4"] == {"D"} and markers["T = 6"] == {"^"}


def test_a_method_has_its_registry_colour_whatever_the_figure_shows():
    groups = group_records(matched_records())
    everything = plots.method_colors(groups)
    alone = plots.method_colors([g for g in groups if g.method == "slssnn"])
    palette = plots.palette()
    assert alone == {"slssnn": everything["slssnn"]} == {"slssnn": palette[6]}  # the 7th registered key
    assert everything["albsnn"] == palette[0] and everything["ann"] == palette[1]
    # a method the registry does not know: a colour after the registry's, kept whoever is beside it
    plugin = group_records([record("p", "zz_plugin", 0, 1, 0.9, 1.0)])
    assert plots.method_colors(plugin)["zz_plugin"] == plots.method_colors(groups + plugin)["zz_plugin"]
    assert plots.method_colors(plugin)["zz_plugin"] not in palette[:7]


def test_the_variants_of_an_ablation_have_a_colour_each_named_in_the_legend(tmp_path, saved):
    records = [
        record(
            f"{v}{seed}", "compressed_event", seed, 2, acc + 0.01 * seed, energy * (1 + 0.05 * seed), knob=v
        )
        | {"variant": v}
        for v, acc, energy in (("full", 0.97, 8.4), ("fixed_tau", 0.96, 8.3), ("plain_frames", 0.95, 2.6))
        for seed in (0, 1)
    ]
    (section,) = sections(records)
    written = write_plots(section, tmp_path)
    assert sorted(p.name for p in written) == ["accuracy_vs_energy_uj.png", "mnist5k_accuracy_vs_energy.png"]
    for path, fig, options in saved:
        keys = legend_keys(fig)
        variants = keys[plots.VARIANT_KEY]
        names = [f"compressed_event [{v}]" for v in ("fixed_tau", "full", "plain_frames")]
        assert [text for text, _ in variants] == names
        colours = {text: tuple(handle.get_facecolor()) for text, handle in variants}
        assert len(set(colours.values())) == 3
        # each point in its variant's colour
        drawn = {bar.get_label(): bar.lines[0].get_color() for bar in fig.axes[0].containers}
        assert {label: matplotlib.colors.to_rgba(c) for label, c in drawn.items()} == {
            f"{name} (T=2)": colour for name, colour in colours.items()
        }
        assert [text for text, _ in keys[plots.T_KEY]] == ["T = 2"]
        assert_all_inside_the_saved_canvas(path, fig, options)


def test_points_that_would_overlap_are_drawn_apart_and_the_caption_says_so(tmp_path, saved):
    # storage: three rows at 3,220.5 KiB (the embedded sweep's four points on top of each other), one at 150
    records = [
        record(f"{m}{t}", m, 0, t, acc, 1.0 + t, storage_kib=storage)
        for m, t, acc, storage in (
            ("ann", 1, 0.982, 3220.5),
            ("lif_sg", 4, 0.977, 3220.5),
            ("slssnn", 4, 0.985, 3220.5),
            ("compressed_event", 2, 0.976, 150.0),
        )
    ]
    plots.plot_accuracy_vs_costs(group_records(records), tmp_path)
    ((_, fig, _),) = [s for s in saved if s[0].name == "accuracy_vs_storage_kib.png"]
    ax = fig.axes[0]
    xs = {bar.get_label(): bar.lines[0].get_xdata()[0] for bar in ax.containers}
    assert xs["compressed_event (T=2)"] == 150.0
    stacked = [xs[label] for label in ("ann (T=1)", "lif_sg (T=4)", "slssnn (T=4)")]
    assert stacked == sorted(stacked) and len(set(stacked)) == 3  # apart, in order, around 3,220.5
    assert stacked[1] == pytest.approx(3220.5)
    assert ax.get_xscale() == "log"  # 150 .. 3,220.5 KiB is 21x
    caption = [t for t in texts(fig) if "drawn side by side" in t]
    assert caption and "shifted sideways by up to ±1.5 % of the x range" in caption[0]


def test_ticks_are_in_engineering_notation_and_never_run_together(tmp_path, saved):
    records = [
        record(f"{i}", "lif_sg", 0, t, 0.9 + 0.01 * i, 1.0 + i, macs=macs)
        for i, (t, macs) in enumerate(((1, 0.0), (2, 250_000.0), (4, 800_000.0)))
    ]
    plots.plot_accuracy_vs_costs(group_records(records), tmp_path)
    ((_, fig, _),) = [s for s in saved if s[0].name == "accuracy_vs_macs.png"]
    ax = fig.axes[0]
    renderer = drawn(fig)
    labels = [
        t.label1 for t in ax.xaxis.get_major_ticks() if ax.get_xlim()[0] <= t.get_loc() <= ax.get_xlim()[1]
    ]
    assert [label.get_text() for label in labels] == ["0", "200k", "400k", "600k", "800k"]
    extents = sorted((label.get_window_extent(renderer) for label in labels), key=lambda e: e.x0)
    assert all(a.x1 < b.x0 for a, b in zip(extents, extents[1:], strict=False))
    # a log axis: decades, and 2x, 5x labelled too only while the values span at most 2.5 decades
    number = plots._number
    assert [number(v) for v in (0.5, 10.0, 1000.0, 1.5e6)] == ["0.5", "10", "1k", "1.5M"]
    for low, high, minor in ((1.0, 21.0, ["2", "", "5"]), (1.0, 1e5, ["", "", ""])):
        fig, ax = matplotlib.pyplot.subplots()
        plots._ticks(ax.xaxis, True, low, high)
        assert [ax.xaxis.get_minor_formatter()(v, 0) for v in (2.0, 3.0, 5.0)] == minor
        matplotlib.pyplot.close(fig)


def test_energy_points_legend_and_axis(tmp_path, saved):
    """Each (method, T) group is one point at (mean energy, mean accuracy %) in its method's colour with
    T's marker; the axis turns logarithmic only when the energies span more than 10x."""
    records = [
        record("a0", "ann", 0, 1, 0.98, 20.0),
        record("a1", "ann", 1, 1, 0.96, 22.0),
        record("l0", "lif_sg", 0, 4, 0.97, 5.0),
        record("l1", "lif_sg", 0, 2, 0.95, 3.0),
    ]
    groups = group_records(records)
    colors = plots.method_colors(groups)
    plots.plot_accuracy_vs_energy(groups, tmp_path / "e.png", "Sweep `s`: mnist5k", colors)
    ax = saved[-1][1].axes[0]
    assert ax.get_xscale() == "linear" and ax.get_title() == "Sweep s: mnist5k"  # 3 .. 21 uJ is 7x
    points = {
        bar.get_label(): (bar.lines[0].get_xdata()[0], bar.lines[0].get_ydata()[0], bar.lines[0].get_marker())
        for bar in ax.containers
    }
    assert points == {
        "ann (T=1)": (21.0, 97.0, "o"),
        "lif_sg (T=2)": (3.0, 95.0, "s"),
        "lif_sg (T=4)": (5.0, 97.0, "D"),
    }
    colours = {bar.get_label(): bar.lines[0].get_color() for bar in ax.containers}
    assert colours == {
        "ann (T=1)": colors["ann"],
        "lif_sg (T=2)": colors["lif_sg"],
        "lif_sg (T=4)": colors["lif_sg"],
    }

    records.append(record("l2", "lif_sg", 0, 8, 0.90, 1.0))
    plots.plot_accuracy_vs_energy(group_records(records), tmp_path / "e.png", "t", colors)
    assert saved[-1][1].axes[0].get_xscale() == "log"  # 1 .. 21 uJ


def test_the_pareto_front_is_drawn_per_time_step(tmp_path, saved):
    records = [
        record("a", "albsnn", 0, 2, 0.98, 20.0),
        record("b", "lif_sg", 0, 2, 0.97, 4.0),
        record("c", "slssnn", 0, 2, 0.96, 5.0),  # dominated by b
        record("d", "ann", 0, 4, 0.90, 1.0),
    ]
    groups = group_records(records)
    plots.plot_accuracy_vs_energy(groups, tmp_path / "e.png", "t", plots.method_colors(groups))
    fig = saved[-1][1]
    fronts = {line.get_label(): line for line in fig.axes[0].lines if line.get_label().startswith("Pareto")}
    assert sorted(fronts) == ["Pareto front (T=2)", "Pareto front (T=4)"]
    # the T = 2 front runs from b (4 µJ, 97 %) to a (20 µJ, 98 %), c is off it; T = 4's is d alone
    lines = [line for line in fig.axes[0].lines if len(line.get_xdata()) > 1]
    assert [(list(line.get_xdata()), list(line.get_ydata())) for line in lines] == [
        ([4.0, 20.0], [97.0, 98.0])
    ]
    assert [text for text, _ in legend_keys(fig)[plots.PARETO_KEY]] == ["T = 2", "T = 4"]


def test_a_setting_whose_rows_all_cost_the_same_gets_no_energy_figure_and_the_readme_says_so(tmp_path):
    write_record(record("a0", "ann", 0, 1, 0.98, 20.0), tmp_path)
    write_record(record("a1", "ann", 1, 1, 0.97, 20.0), tmp_path)
    write_record(record("n0", "ann", 0, 1, 0.96, 20.0, "nmnist_sim"), tmp_path)
    write_record(record("n1", "lif_sg", 0, 2, 0.95, 4.0, "nmnist_sim"), tmp_path)
    regenerate(tmp_path)
    readme = (tmp_path / "README.md").read_text()
    assert not (tmp_path / "plots" / "s" / "mnist5k_accuracy_vs_energy.png").exists()
    assert readme.count("No accuracy-vs-energy figure: every row has the same energy per sample") == 1
    assert (tmp_path / "plots" / "s" / "nmnist_sim_accuracy_vs_energy.png").read_bytes()[:4] == b"\x89PNG"
    assert "](plots/s/nmnist_sim_accuracy_vs_energy.png)" in readme
