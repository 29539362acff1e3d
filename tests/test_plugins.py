"""Adding a method is two new files, a module in methods/ and its config: `bench list`, the registry-driven
tests and a sweep with `methods: all` pick it up with no other edit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import CONFIG_DIR, PROJECT_ROOT

PLUGIN = '''"""A throwaway method written by tests/test_plugins.py (deleted when the test ends)."""

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


def run(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_a_method_added_as_two_files_is_picked_up_by_list_registry_tests_and_sweeps(tmp_path):
    module = PROJECT_ROOT / "methods" / "zz_throwaway.py"
    config = CONFIG_DIR / "methods" / "zz_throwaway.yaml"
    assert not module.exists() and not config.exists()
    sweep = tmp_path / "everything.yaml"
    sweep.write_text("methods: all\ndatasets: [mnist5k]\n")
    try:
        module.write_text(PLUGIN)
        config.write_text(CONFIG)
        listed = run("-m", "bench.cli", "list")
        assert listed.returncode == 0 and "zz_throwaway" in listed.stdout, listed.stderr
        assert "LIF layers in the layer notation" in listed.stdout
        dry = run("-m", "bench.cli", "sweep", str(sweep), "--dry-run")
        assert dry.returncode == 0 and "zz_throwaway" in dry.stdout and "8 cells" in dry.stdout, dry.stderr
        tests = run(
            "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_methods.py", "-k", "zz_throwaway"
        )
        summary = tests.stdout.strip().splitlines()[-1]
        assert tests.returncode == 0 and " passed" in summary and "deselected" in summary, tests.stdout[
            -2000:
        ]
        assert int(summary.split(" passed")[0].split()[-1]) >= 10  # at least one test per dataset
    finally:
        module.unlink(missing_ok=True)
        config.unlink(missing_ok=True)
        for cached in (module.parent / "__pycache__").glob("zz_throwaway.*"):
            cached.unlink()
