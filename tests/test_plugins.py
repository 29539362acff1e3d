"""Adding a method is two new files, a module in methods/ and its config: `bench list`, the registry-driven
tests and a sweep with `methods: all` pick it up with no other edit."""

from __future__ import annotations

import subprocess
import sys

from helpers import project_copy

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
    assert "LIF layers in the layer notation" in listed.stdout
    dry = run("-m", "bench.cli", "sweep", str(sweep), "--dry-run")
    assert dry.returncode == 0 and "zz_throwaway" in dry.stdout and "8 cells" in dry.stdout, dry.stderr
    registry_tests = ("tests/test_methods.py", "tests/test_methods_on_fixtures.py")
    tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-n0", *registry_tests, "-k", "zz_throwaway")
    summary = tests.stdout.strip().splitlines()[-1]
    assert tests.returncode == 0 and " passed" in summary and "deselected" in summary, tests.stdout[-2000:]
    # one full-size step per dataset, and the per-method tests on a static and an event dataset
    assert int(summary.split(" passed")[0].split()[-1]) >= 10 + 2 * 2
