from pathlib import Path

import pytest

from bench import registry
from bench.config import CONFIG_DIR
from bench.errors import RegistryError


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
