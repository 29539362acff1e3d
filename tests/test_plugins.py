"""Adding a method is two new files, a module in methods/ and its config: `bench list`, the registry-driven
tests and a sweep with `methods: all` pick it up with no other edit. Adding a dataset is three, as the
README's "Adding a dataset" section writes them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import project_copy

from bench import PROJECT_ROOT

PLUGIN = '''"""A throwaway method written by tests/test_plugins.py into a copy of the project."""

from spikingjelly.activation_based import neuron, surrogate

from bench.registry import register_method
from methods.base import BenchMethod
from methods.common.networks import layer_stack


@register_method("zz_throwaway")
class Throwaway(BenchMethod):
    """LIF layers in the layer notation (one hidden layer of 8 by default), for the plugin test."""

    def __init__(self, num_classes, input_shape, kind="static", time_steps=1, layers="8FC", **optim):
        super().__init__(num_classes, input_shape, kind, time_steps, **optim)

        def make_neuron():
            return neuron.LIFNode(surrogate_function=surrogate.ATan(), step_mode="m")

        self.net = layer_stack(input_shape, num_classes, layers, make_neuron)
'''
CONFIG = "method:\n  time_steps: 2\n  layers: 8FC\n"


def test_a_method_added_as_two_files_is_picked_up_by_list_registry_tests_and_sweeps(tmp_path):
    root = project_copy(tmp_path)  # the two files go into a copy: other tests run meanwhile on this tree

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=root, timeout=600)

    (root / "methods" / "zz_throwaway.py").write_text(PLUGIN)
    (root / "configs" / "methods" / "zz_throwaway.yaml").write_text(CONFIG)
    sweep = tmp_path / "everything.yaml"
    sweep.write_text("methods: all\ndatasets: [mnist5k]\n")
    listed = run("-m", "bench.cli", "list")
    assert listed.returncode == 0 and "zz_throwaway" in listed.stdout, listed.stderr
    # its description (wrapped beside the key and design range columns) and the design range it inherits
    assert "LIF layers in the layer notation" in " ".join(listed.stdout.split())
    assert "images T >= 1; events T >= 1" in listed.stdout
    dry = run("-m", "bench.cli", "sweep", str(sweep), "--dry-run")
    assert dry.returncode == 0 and "zz_throwaway" in dry.stdout and "8 cells" in dry.stdout, dry.stderr
    registry_tests = ("tests/test_methods.py", "tests/test_methods_on_fixtures.py")
    tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-n0", *registry_tests, "-k", "zz_throwaway")
    summary = tests.stdout.strip().splitlines()[-1]
    assert tests.returncode == 0 and " passed" in summary and "deselected" in summary, tests.stdout[-2000:]
    # one full-size step per dataset, and the per-method tests on a static and an event dataset
    assert int(summary.split(" passed")[0].split()[-1]) >= 10 + 2 * 2


def readme_files(section: str) -> dict[str, str]:
    """The code blocks of a README section, by the path each names on its first line (``# <path>``)."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```\w*\n(.*?)^```$", body, flags=re.S | re.M)
    return {block.split("\n", 1)[0].removeprefix("# "): block for block in blocks}


#: Run in the copy: write the fixture through the registry, read a batch, then one training step of a
#: small network through `bench run` with the dataset's config.
TRAIN_ON_FIXTURE = """
import json, sys
from pathlib import Path
from bench import registry
from bench.runner import run

key, root = sys.argv[1], Path(sys.argv[2])
datamodule = registry.get_dataset(key).fixture(root)
datamodule.prepare_data()
datamodule.setup()
x, y = next(iter(datamodule.train_dataloader()))
quick = ["logger=none", "trainer.enable_checkpointing=false", "trainer.enable_progress_bar=false"]
quick += ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
quick += ["trainer.limit_test_batches=1", "metrics.latency_samples=0", "metrics.throughput_batches=0"]
record = run("ann", key, [*quick, "method.layers=8FC", "data.batch_size=4", f"data.root={root}"]).record
print(json.dumps({"batch": list(x.shape), "labels": y.tolist(), "status": record["status"],
                  "facts": record["dataset_facts"], "test_acc": record["metrics"]["test_acc"]}))
"""


def test_a_dataset_added_as_the_readme_says_is_listed_and_trains_on_its_fixture(tmp_path):
    files = readme_files("Adding a dataset")
    folders = sorted(str(Path(path).parent) for path in files)
    assert folders == ["configs/datasets", "datamodules", "datamodules/fixtures"], list(files)
    (key,) = re.findall(r'@register_dataset\("(\w+)"\)', "".join(files.values()))
    checkout = project_copy(tmp_path)  # the real tree and the other tests never see the dataset
    for path, text in files.items():
        assert not (checkout / path).exists(), f"{path} is not a new file"
        (checkout / path).write_text(text)
    env = {name: value for name, value in os.environ.items() if not name.startswith("SNNBENCH_")}
    env |= {"PYTHONPATH": str(checkout), "COLUMNS": "200", "SNNBENCH_RESULTS": str(tmp_path / "results")}
    env |= {"SNNBENCH_LOGS": str(tmp_path / "logs"), "SNNBENCH_DATA": str(tmp_path / "elsewhere")}
    env |= {"SNNBENCH_MODELS": str(tmp_path / "models")}

    def python(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, cwd=checkout, env=env, timeout=600
        )

    listed = python("-m", "bench.cli", "list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(f"{key} ") and "static" in line]
    assert "3x32x32" in row and row.split()[-3:] == ["900", "100", "200"], row  # train, val, test
    assert "Embedded (no download): mnist5k, nmnist_sim." in listed.stdout  # not this one
    assert "My set: 32x32 RGB images of 10 classes" in listed.stdout

    trained = python("-c", TRAIN_ON_FIXTURE, key, str(tmp_path / "data"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    outcome = json.loads(trained.stdout.strip().splitlines()[-1])
    assert outcome["batch"] == [4, 3, 32, 32] and all(0 <= label < 10 for label in outcome["labels"])
    assert outcome["status"] == "ok" and outcome["facts"]["input_shape"] == [3, 32, 32]
    assert 0.0 <= outcome["test_acc"] <= 1.0
    assert (tmp_path / "data" / key / "my_set.npz").is_file()
