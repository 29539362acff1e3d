import subprocess
import sys
from pathlib import Path

import pytest

from bench import registry
from bench.config import CONFIG_DIR
from bench.errors import RegistryError
from datamodules.facts import CLASS_FACTS, DataFacts


def test_builtins_are_discovered_without_a_list():
    assert {"ann", "lif_sg"} <= set(registry.methods())
    assert "mnist5k" in registry.datasets()


def test_unknown_method_names_the_close_match():
    with pytest.raises(RegistryError, match="Did you mean 'lif_sg'"):
        registry.get_method("lif_sgg")


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(RegistryError) as info:
        registry.get_dataset("imagenet22k")
    assert "mnist5k" in str(info.value)


@pytest.mark.parametrize("key", ["../evil", "a/b", "", ".hidden"])
def test_a_key_that_is_not_a_name_is_refused(key):
    # keys name folders and files (logs/<method>/<dataset>/, run ids, plots): never a path
    with pytest.raises(RegistryError, match="is not a name"):
        registry.register_method(key)


def test_duplicate_key_is_an_error():
    class Other:
        pass

    with pytest.raises(RegistryError, match="Duplicate method key 'ann'"):
        registry.register_method("ann")(Other)
    assert registry.get_method("ann").__name__ == "ANN"


@pytest.mark.parametrize("key", sorted(registry.methods()))
def test_every_method_has_a_config_file_and_description(key):
    assert Path(CONFIG_DIR / "methods" / f"{key}.yaml").is_file()
    assert registry.describe(registry.get_method(key))


def test_the_catalogue_read_from_the_sources_agrees_with_the_imported_classes():
    """`bench list` reads keys, descriptions and dataset facts without importing: they must be the
    classes' own (a fact written as a non-literal is read from the class)."""
    catalogue = registry.catalogue()
    assert set(catalogue["method"]) == set(registry.methods()) and len(catalogue["method"]) >= 7
    assert set(catalogue["dataset"]) == set(registry.datasets()) and len(catalogue["dataset"]) >= 10
    for key, cls in registry.methods().items():
        info = catalogue["method"][key]
        assert (info.module, info.class_name) == (cls.__module__, cls.__name__)
        assert info.description == registry.describe(cls) != ""
    for key, cls in registry.datasets().items():
        info = catalogue["dataset"][key]
        assert info.description == registry.describe(cls) != ""
        assert info.facts == DataFacts(**{name: getattr(cls, name) for name in CLASS_FACTS})
    # Inherited facts come through the base classes: nmnist_sim inherits N-MNIST's shape, mnist5k the
    # static kind and frames=None from the DataModule base.
    assert catalogue["dataset"]["nmnist_sim"].facts.input_shape == (2, 34, 34)
    assert catalogue["dataset"]["mnist5k"].facts.kind == "static"


def test_listing_the_registry_imports_no_torch_lightning_or_plugin():
    """`bench list` and the catalogue stay quick: no heavy import (the CLI's speed promise)."""
    code = (
        "import sys; from bench.cli import main; main(['list']); "
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'spikingjelly', 'methods.ann', "
        "'datamodules.mnist5k') if m in sys.modules]; print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout and "mnist5k" in out.stdout and "lif_sg" in out.stdout


def test_looking_up_a_key_imports_only_its_module():
    code = (
        "import sys; from bench import registry; registry.get_method('ann'); "
        "print('LOADED', sorted(m for m in sys.modules if m.startswith('methods.') and m.count('.') == 1))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.split("LOADED", 1)[1]
    assert "'methods.ann'" in loaded and "methods.slssnn" not in loaded, loaded


def test_one_facts_type_feeds_the_method_and_the_record_as_published():
    """The runner builds a method from ``facts.for_method()`` and writes ``facts.for_record()`` into the
    record: the exact dicts the published records hold (results/runs/*.json)."""
    events = registry.get_dataset("nmnist_sim")(frames=8)
    spec = {"frames": 8, "height": 34, "reader_version": 1, "split_by": "time", "width": 34}
    assert events.facts.for_method() == {
        "num_classes": 10,
        "input_shape": [2, 34, 34],
        "kind": "event",
        "frames": 8,
    }
    assert events.facts.for_record() == {**events.facts.for_method(), "frame_spec": spec}
    images = registry.get_dataset("mnist5k")().facts
    assert images.for_record() == {
        "num_classes": 10,
        "input_shape": [1, 28, 28],
        "kind": "static",
        "frames": None,
    }
    assert (images.embedded, events.facts.embedded) == (True, True)
