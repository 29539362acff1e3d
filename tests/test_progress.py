"""Logs people can follow (issue 32, point 5): the plain training lines of a run whose output is no
terminal, the lines of long phases (frame-cache builds, a sweep's cell checks), and ``--print-config``."""

from __future__ import annotations

import io
import re
import sys
import warnings
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import rich
import torch
import yaml
from helpers import QUICK, TinyClassifier, write_sweep
from omegaconf import OmegaConf
from pytorch_lightning import callbacks
from pytorch_lightning.loggers import CSVLogger
from rich.cells import cell_len
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from bench import progress
from bench.cli import main as bench_main
from bench.config import load_config, run_id
from bench.errors import ConfigError
from bench.runner import build, build_trainer, quiet_lightning, run
from bench.sweep import load_sweep, plan
from bench.training_lines import ModelSummary, ProgressBar, TrainingLines, progress_display
from datamodules.fixtures.nmnist import write_nmnist
from datamodules.nmnist import NMNIST

TRAINING_LINE = re.compile(
    r"^epoch 1/1  step (\d)/2  loss [\d.]+  \d+ samples/s  ETA epoch \d:\d\d:\d\d, run \d:\d\d:\d\d$"
)


def test_a_run_whose_output_is_no_terminal_prints_plain_lines(workdir, capsys):
    run("ann", "mnist5k", [*QUICK, "progress.every_n_steps=1"])
    lines = capsys.readouterr().out.splitlines()
    assert "training ANN: 1 epoch x 2 steps (2 steps), batch size 32" in lines
    steps = [int(m.group(1)) for line in lines if (m := TRAINING_LINE.match(line))]
    assert steps == [1, 2], lines  # one line per optimizer step at every_n_steps=1
    for pattern in (
        r"validation  epoch 1/1  acc [\d.]+  loss [\d.]+  \(\d+\.\d s\)",
        r"training ended: 1 epoch, 2 steps in \d+\.\d s",
        r"test  acc [\d.]+  loss [\d.]+  \(\d+\.\d s\)",
    ):
        assert any(re.fullmatch(pattern, line) for line in lines), (pattern, lines)


def test_the_display_is_lines_off_a_terminal_and_the_rich_bar_on_one(monkeypatch):
    cfg = load_config("ann", "mnist5k", check=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    shown, bar = progress_display(cfg)
    assert [type(c).__name__ for c in shown] == ["TrainingLines"] and bar is False
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert [type(c).__name__ for c in progress_display(cfg)[0]] == ["ProgressBar"]  # Lightning's, reworked
    cfg.trainer.enable_progress_bar = False
    assert progress_display(cfg) == ([], False)
    cfg.progress.lines = True  # lines wherever the output goes, instead of the bar
    assert [type(c).__name__ for c in progress_display(cfg)[0]] == ["TrainingLines"]
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    cfg.progress.lines = False
    assert progress_display(cfg) == ([], False)


def test_a_resumed_run_says_so_and_times_only_the_steps_it_ran(capsys, monkeypatch):
    now = [100.0]
    monkeypatch.setattr("bench.training_lines.time.monotonic", lambda: now[0])
    trainer = SimpleNamespace(
        global_step=10,
        current_epoch=2,
        max_epochs=4,
        num_training_batches=5,
        accumulate_grad_batches=1,
        estimated_stepping_batches=20,
        world_size=1,
        datamodule=None,
        is_global_zero=True,
    )
    lines = TrainingLines(every_n_steps=2, every_s=30)
    lines.on_train_start(trainer, object())
    lines.on_train_epoch_start(trainer, object())
    lines.on_train_batch_start(trainer, object(), None, 0)
    for batch_idx in range(2):
        now[0] += 1.0  # a second a step
        trainer.global_step += 1
        batch = (torch.zeros(2, 3), torch.zeros(2))
        lines.on_train_batch_end(trainer, object(), {"loss": torch.tensor(0.5)}, batch, batch_idx)
    said = capsys.readouterr().out.splitlines()
    assert said[0] == "training object: 4 epochs x 5 steps (20 steps), resuming at epoch 3, step 10"
    # 2 steps in 2 s since the resume: 3 batches left in the epoch, 8 steps left in the run
    assert said[1] == "epoch 3/4  step 2/5  loss 0.5000  2 samples/s  ETA epoch 0:00:03, run 0:00:08"


def test_progress_settings_are_checked_and_change_no_run_id():
    base = load_config("ann", "mnist5k")
    other = load_config("ann", "mnist5k", ["progress.every_n_steps=5", "progress.lines=false"])
    assert run_id("ann", "mnist5k", base) == run_id("ann", "mnist5k", other)
    for override, message in (
        ("progress.lines=sometimes", "progress.lines='sometimes' is not one of auto"),
        ("progress.every_n_steps=0", "progress.every_n_steps=0 must be a whole number of at least 1"),
        ("progress.every_s=-1", "progress.every_s=-1 must be a number of seconds above 0"),
        ("progress.every_step=3", "Valid progress keys: lines, every_n_steps, every_s"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config("ann", "mnist5k", [override])


def test_print_config_prints_the_resolved_config_and_run_id_and_writes_nothing(workdir, capsys):
    overrides = ["method.lr=0.01", "trainer.max_epochs=3"]
    args = ["run", "--method", "ann", "--dataset", "mnist5k", "--seed", "4", "--print-config", *overrides]
    code = bench_main(args)
    out = capsys.readouterr().out
    assert code == 0
    cfg = load_config("ann", "mnist5k", [*overrides, "seed=4"])
    assert yaml.safe_load(out) == OmegaConf.to_container(cfg, resolve=True)
    assert f"# run id: {run_id('ann', 'mnist5k', cfg)}\n" in out and "# recorded: not yet\n" in out
    assert not any(workdir.iterdir())  # no results, logs or data: nothing was written


SWEEP = """
methods: [ann, lif_sg]
datasets: [mnist5k]
seeds: [0, 1]
overrides: {trainer.max_epochs: 2}
per_method: {lif_sg: {method.time_steps: 2}}
"""


def test_sweep_print_config_shows_the_cell_the_dry_run_numbers(workdir, capsys):
    path = str(write_sweep(workdir, "numbered", SWEEP))
    planned = plan(load_sweep(path)).cells[3].cell  # lif_sg, seed 1
    assert (planned.method, planned.seed) == ("lif_sg", 1)
    assert bench_main(["sweep", path, "--print-config", "3"]) == 0
    out = capsys.readouterr().out
    cfg = planned.config()
    assert yaml.safe_load(out) == OmegaConf.to_container(cfg, resolve=True)
    assert out.startswith("# sweep numbered, cell 3 of 4: lif_sg on mnist5k seed 1\n")
    assert f"# run id: {run_id('lif_sg', 'mnist5k', cfg)}\n" in out
    assert bench_main(["sweep", path, "--print-config", "4"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "Sweep numbered has no cell 4: its cells are numbered 0 to 3" in err
    assert not (workdir / "results").exists()


def test_a_frame_cache_build_says_what_where_and_how_long(tmp_path, capsys):
    write_nmnist(tmp_path / "nmnist")
    dm = NMNIST(root=str(tmp_path), frames=3, split_by="number", val_fraction=0.5)
    dm.prepare_data()
    cache = tmp_path / "nmnist" / "snnbench_cache" / "frames-v1-T3-number-34x34"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"frame cache: building the frames of 30 samples from 30 files (3 frames by number, 34x34) in {cache}"
    )
    built = rf"frame cache: built {re.escape(str(cache))} in \d+\.\d s \(\d+\.\d MiB\)"
    assert re.fullmatch(built, lines[-1]), lines
    dm.prepare_data()  # built already: nothing to say
    assert "frame cache" not in capsys.readouterr().out


def test_long_phases_and_counts_print_at_most_every_so_often(capsys, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("bench.progress.time.monotonic", lambda: now[0])
    phase = progress.Phase("job", every_s=30)
    phase.start("doing it")
    for _ in range(10):
        now[0] += 10
        phase.tick("some done")
    phase.end("done", " (well)")
    assert capsys.readouterr().out.splitlines() == [
        "job: doing it",
        "job: some done (30.0 s so far)",
        "job: some done (0:01:00 so far)",
        "job: some done (0:01:30 so far)",
        "job: done in 0:01:40 (well)",
    ]
    quick = progress.Counter("checking cells", 3)  # under 2 s: silent
    for number in range(3):
        quick.update(number)
    quick.done()
    slow = progress.Counter("checking cells", 3)
    for number in range(3):
        now[0] += 6
        slow.update(number)
    slow.done()
    assert capsys.readouterr().err.splitlines() == [  # stderr is no terminal here: new lines, 10 s apart
        "checking cells 0/3",
        "checking cells 2/3",
        "checking cells 3/3 in 18.0 s",
    ]


# --- a terminal's display at 80 columns, without noise (issue 33) -------------------------------------------
def test_the_progress_bar_keeps_each_metrics_name_and_value_together_at_80_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(rich, "_console", None)  # the bar reconfigures rich's global console: a fresh one
    out = io.StringIO()
    bar = ProgressBar(console_kwargs={"file": out, "width": 80, "force_terminal": True, "color_system": None})
    data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[bar],
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(TinyClassifier(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n").splitlines()
    names = ("train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc")
    for name in names:
        assert any(f"{name}: " in line for line in shown), name
    for line in shown:
        assert cell_len(line) <= 80, line
        for name in names:
            # a name is always followed by its value on its line (Lightning's column wrapped between them)
            assert f"{name}:" not in line or re.search(rf"{name}: \d+\.\d{{3}}\b", line), line
    assert not any("v_num" in line for line in shown)  # the logger's version number says nothing


def test_the_model_summary_leaves_out_lightnings_flops(workdir, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(rich, "_console", Console(file=out, width=80))
    cfg = load_config("ann", "mnist5k", QUICK)
    trainer = build_trainer(cfg, "ann", "mnist5k", "ann-mnist5k-0")
    summaries = [c for c in trainer.callbacks if isinstance(c, callbacks.ModelSummary)]
    assert [type(c) for c in summaries] == [ModelSummary]  # ours, instead of Lightning's default
    _, model = build(cfg, "ann", "mnist5k")
    summaries[0].on_fit_start(trainer, model)
    said = out.getvalue()
    assert "FLOPs" not in said  # Lightning's count is 0 without an example input: it would mislead
    assert re.search(r"parameters: [\d.]+ K trainable, 0 frozen \([\d.]+ MB\)", said), said
    assert "net" in said and "Params" in said  # the layers stay
    quiet = load_config("ann", "mnist5k", [*QUICK, "trainer.enable_model_summary=false"])
    trainer = build_trainer(quiet, "ann", "mnist5k", "ann-mnist5k-1")
    assert not any(isinstance(c, callbacks.ModelSummary) for c in trainer.callbacks)


def test_lightnings_srun_hint_and_pytree_deprecation_are_silenced_and_nothing_else(monkeypatch):
    from lightning_fabric.plugins.environments import SLURMEnvironment
    from lightning_fabric.utilities.warnings import PossibleUserWarning
    from pytorch_lightning.utilities._pytree import _tree_flatten

    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")  # srun installed, not used
    monkeypatch.delenv("SLURM_NTASKS", raising=False)

    def noise() -> None:
        SLURMEnvironment._validate_srun_used()  # every Trainer asks
        _tree_flatten(1)  # Lightning's loaders build torch's deprecated LeafSpec
        srun = "The `srun` command is available on your system but is not used"
        warnings.warn(srun, PossibleUserWarning, stacklevel=1)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)

    with warnings.catch_warnings(record=True) as before:
        warnings.simplefilter("always")
        noise()
    assert len(before) == 4 and "srun" in str(before[0].message) and "LeafSpec" in str(before[1].message)
    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter("always")
        quiet_lightning()
        noise()
    # the same messages from elsewhere (here, this test) are still shown: the filters name their modules
    assert [w.filename for w in after] == [__file__, __file__]
