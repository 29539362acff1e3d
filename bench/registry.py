"""Method and dataset registries.

Built-ins register themselves with ``@register_method("key")`` / ``@register_dataset("key")`` when their
modules are imported; :func:`discover` imports every module of the ``methods`` and ``datamodules``
packages, so there is no hand-kept list. Adding a method is one module plus one config file.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable

from bench.errors import RegistryError

_REGISTRIES: dict[str, dict[str, type]] = {"method": {}, "dataset": {}}
_PACKAGES = {"method": "methods", "dataset": "datamodules"}
_discovered = False


def _register(kind: str, key: str) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        registry = _REGISTRIES[kind]
        if key in registry and registry[key] is not cls:
            raise RegistryError(
                f"Duplicate {kind} key '{key}': {registry[key].__module__}.{registry[key].__name__} "
                f"and {cls.__module__}.{cls.__name__} both register it. Rename one of them."
            )
        cls.registry_key = key
        registry[key] = cls
        return cls

    return decorator


def register_method(key: str) -> Callable[[type], type]:
    """Class decorator: make a LightningModule available as ``--method key``."""
    return _register("method", key)


def register_dataset(key: str) -> Callable[[type], type]:
    """Class decorator: make a LightningDataModule available as ``--dataset key``."""
    return _register("dataset", key)


def discover() -> None:
    """Import every module of the built-in packages so that their decorators run (once)."""
    global _discovered
    if _discovered:
        return
    for package_name in _PACKAGES.values():
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            importlib.import_module(info.name)
    _discovered = True


def _lookup(kind: str, key: str) -> type:
    discover()
    registry = _REGISTRIES[kind]
    if key in registry:
        return registry[key]
    close = difflib.get_close_matches(key, registry, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise RegistryError(
        f"Unknown {kind} '{key}'.{hint} Registered {kind}s: {', '.join(sorted(registry))}. "
        "Run `bench list` to see them with descriptions."
    )


def get_method(key: str) -> type:
    return _lookup("method", key)


def get_dataset(key: str) -> type:
    return _lookup("dataset", key)


def methods() -> dict[str, type]:
    discover()
    return dict(sorted(_REGISTRIES["method"].items()))


def datasets() -> dict[str, type]:
    discover()
    return dict(sorted(_REGISTRIES["dataset"].items()))


def describe(cls: type) -> str:
    """First line of a class docstring: the one-line description ``bench list`` shows."""
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
