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


def disagreements() -> list[str]:
    """Where the catalogue read from the plugin sources differs from the classes the decorators registered
    (after :func:`registry.discover`): keys, each key's module, class name and description, dataset facts."""
    catalogue, found = registry.catalogue(), []
    for kind, registered in (("method", registry.methods()), ("dataset", registry.datasets())):
        listed = catalogue[kind]
        for key in sorted(set(listed) ^ set(registered)):
            found.append(f"{kind} {key}: only in the {'catalogue' if key in listed else 'registry'}")
        for key in sorted(set(listed) & set(registered)):
            info, cls = listed[key], registered[key]
            read = (info.module, info.class_name, info.description)
            real = (cls.__module__, cls.__name__, registry.describe(cls))
            if read != real:
                found.append(f"{kind} {key}: the catalogue says {read}, the class {real}")
            facts = (
                DataFacts(**{name: getattr(cls, name) for name in CLASS_FACTS}) if kind == "dataset" else None
            )
            if info.facts != facts:
                found.append(f"{kind} {key}: the catalogue's facts {info.facts}, the class's {facts}")
            design = (
                (getattr(cls, "design", None), getattr(cls, "design_basis", ""))
                if kind == "method"
                else (None, "")
            )
            if (info.design, info.design_basis) != design:
                found.append(f"{kind} {key}: the catalogue's design {info.design}, the class's {design}")
    return found


def test_the_catalogue_read_from_the_sources_agrees_with_the_imported_classes():
    """`bench list` reads keys, descriptions and dataset facts without importing: they must be the
    classes' own (a fact written as a non-literal is read from the class)."""
    assert disagreements() == []
    catalogue = registry.catalogue()
    assert len(catalogue["method"]) >= 7 and len(catalogue["dataset"]) >= 10
    assert all(info.description for infos in catalogue.values() for info in infos.values())
    # Inherited facts come through the base classes: nmnist_sim inherits N-MNIST's shape, mnist5k the
    # static kind and frames=None from the DataModule base.
    assert catalogue["dataset"]["nmnist_sim"].facts.input_shape == (2, 34, 34)
    assert catalogue["dataset"]["mnist5k"].facts.kind == "static"


FAKE_METHODS = '''
from bench import registry
from bench.registry import register_method


@register_method("seen")
class Seen:
    """Read from the source and registered."""


@registry.register_method("unseen")  # an attribute call: a form the catalogue's parser does not read
class Unseen:
    """Registered when imported, missing from the catalogue."""
'''
FAKE_DATASETS = '''
from bench.registry import register_dataset


@register_dataset(key="by_keyword")  # a keyword argument: not read either
class ByKeyword:
    """Registered when imported, missing from the catalogue."""
'''


def test_a_class_registered_in_a_form_the_catalogue_does_not_read_is_a_disagreement(tmp_path, monkeypatch):
    """The check above fails when the two sources of truth drift apart (plugin packages of throwaway
    classes, no torch)."""
    packages = {"method": "snnbench_fake_methods", "dataset": "snnbench_fake_datasets"}
    for package, source in zip(packages.values(), (FAKE_METHODS, FAKE_DATASETS), strict=True):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "plugins.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_PACKAGES", packages)
    monkeypatch.setattr(registry, "_REGISTRIES", {"method": {}, "dataset": {}})
    monkeypatch.setattr(registry, "_discovered", False)
    registry.catalogue.cache_clear()
    try:
        assert list(registry.catalogue()["method"]) == ["seen"]
        assert disagreements() == [
            "method unseen: only in the registry",
            "dataset by_keyword: only in the registry",
        ]
    finally:
        registry.catalogue.cache_clear()  # the real packages' catalogue for the other tests
        for name in [m for m in sys.modules if m.startswith(tuple(packages.values()))]:
            del sys.modules[name]


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
