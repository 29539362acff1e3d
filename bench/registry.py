"""Method and dataset registries.

Built-ins register themselves with ``@register_method("key")`` / ``@register_dataset("key")`` when their
modules are imported; :func:`discover` imports every module of the ``methods`` and ``datamodules``
packages, so there is no hand-kept list. Adding a method is one module plus one config file.

Importing a plugin imports torch, Lightning and spikingjelly (seconds of CPU). What only needs names,
descriptions and shapes (``bench list``, ``methods: all`` in a sweep, ``bench status``) reads them from the
plugin sources instead, without running them: :func:`catalogue` parses each module's syntax tree for the
registering decorators, the class docstrings and the literal class attributes (a dataset's facts, a
method's design range; inherited ones through the base classes defined in the two packages).
:func:`get_method` / :func:`get_dataset` then import only the module that registers the key. A fact the
sources do not state as a literal is read from the imported class, so the catalogue never disagrees with
the classes (tests/test_registry.py checks it).
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench import paths
from bench.errors import RegistryError
from datamodules.facts import CLASS_FACTS, DataFacts

_REGISTRIES: dict[str, dict[str, type]] = {"method": {}, "dataset": {}}
_PACKAGES = {"method": "methods", "dataset": "datamodules"}
_DECORATORS = {"register_method": "method", "register_dataset": "dataset"}
_NOT_LITERAL = object()  # a class attribute the source does not state as a literal
_REQUIRED = object()  # a class attribute with no default: the class must have it
_discovered = False


@dataclass(frozen=True)
class PluginInfo:
    """A registered class as its source states it: where it lives, its description, its class facts."""

    key: str
    module: str
    class_name: str
    description: str
    facts: DataFacts | None = None  # a dataset's class facts; None for a method
    design: dict | None = None  # a method's design range (bench.design); None for a dataset
    design_basis: str = ""


def _package_files(package: str) -> list[tuple[str, Path]]:
    """(module name, path) of every module in a plugin package, found without importing it."""
    spec = importlib.util.find_spec(package)
    found = []
    for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=f"{package}."):
        module_spec = importlib.util.find_spec(info.name)
        if module_spec is not None and module_spec.origin and module_spec.origin.endswith(".py"):
            found.append((info.name, Path(module_spec.origin)))
    return found


def _literal_attributes(node: ast.ClassDef) -> dict:
    """The class body's ``name = <literal>`` (or annotated) assignments; non-literals are marked missing."""
    attributes = {}
    for statement in node.body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    attributes[target.id] = ast.literal_eval(value)
                except ValueError:
                    attributes[target.id] = _NOT_LITERAL
    return attributes


def _registered_key(node: ast.ClassDef) -> tuple[str, str] | None:
    """(kind, key) of a ``@register_method("key")`` / ``@register_dataset("key")`` class, else None."""
    for decorator in node.decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Name)
            and decorator.func.id in _DECORATORS
            and len(decorator.args) == 1
            and isinstance(decorator.args[0], ast.Constant)
        ):
            return _DECORATORS[decorator.func.id], decorator.args[0].value
    return None


@cache
def catalogue() -> dict[str, dict[str, PluginInfo]]:
    """``{"method": {key: PluginInfo}, "dataset": {...}}`` from the plugin sources, sorted by key."""
    classes: dict[str, tuple[ast.ClassDef, str]] = {}  # class name -> (node, module)
    registered: list[tuple[str, str, ast.ClassDef, str]] = []
    for package in _PACKAGES.values():
        for module, path in _package_files(package):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    classes.setdefault(node.name, (node, module))
                    if (kind_key := _registered_key(node)) is not None:
                        registered.append((*kind_key, node, module))

    def attribute(node: ast.ClassDef, name: str):
        """A class attribute through the bases defined in the plugin packages (depth-first, as single
        inheritance resolves it); _NOT_LITERAL where the chain leaves the packages or is not a literal."""
        own = _literal_attributes(node)
        if name in own:
            return own[name]
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                value = attribute(classes[base.id][0], name)
                if value is not _NOT_LITERAL:
                    return value
        return _NOT_LITERAL

    def stated(node: ast.ClassDef, module: str, defaults: dict) -> dict:
        """The class attributes named by ``defaults`` as the source states them; when one is not a literal,
        all of them from the imported class itself (``defaults`` for those it lacks, unless required)."""
        values = {name: attribute(node, name) for name in defaults}
        if any(value is _NOT_LITERAL for value in values.values()):
            cls = getattr(importlib.import_module(module), node.name)
            values = {
                name: getattr(cls, name) if default is _REQUIRED else getattr(cls, name, default)
                for name, default in defaults.items()
            }
        return values

    found: dict[str, dict[str, PluginInfo]] = {"method": {}, "dataset": {}}
    for kind, key, node, module in registered:
        description = describe_text(ast.get_docstring(node, clean=False))
        facts, design = None, {}
        if kind == "method":  # a class that is no BenchMethod states none: no design range
            design = stated(node, module, {"design": None, "design_basis": ""})
        if kind == "dataset":
            facts = DataFacts(**stated(node, module, dict.fromkeys(CLASS_FACTS, _REQUIRED)))
        found[kind][key] = PluginInfo(key, module, node.name, description, facts, **design)
    return {kind: dict(sorted(infos.items())) for kind, infos in found.items()}


def keys(kind: str) -> list[str]:
    """The registered keys of ``"method"`` or ``"dataset"`` (sorted), read from the sources."""
    return list(catalogue()[kind])


def _register(kind: str, key: str) -> Callable[[type], type]:
    if not paths.is_name(key):  # keys name folders and files (logs, run ids, plots)
        raise RegistryError(f"{kind} key {key!r} is not a name ({paths.NAME_RULE}).")

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


def require_key(kind: str, key: str) -> None:
    """Raise the unknown-key error (with suggestions) unless ``key`` is registered; imports nothing."""
    known = catalogue()[kind]
    if key in known or key in _REGISTRIES[kind]:
        return
    discover()  # a class registered outside the two packages' sources (e.g. by a test)
    if key in _REGISTRIES[kind]:
        return
    names = sorted({*known, *_REGISTRIES[kind]})
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise RegistryError(
        f"Unknown {kind} '{key}'.{hint} Registered {kind}s: {', '.join(names)}. "
        "Run `bench list` to see them with descriptions."
    )


def _lookup(kind: str, key: str) -> type:
    registry = _REGISTRIES[kind]
    if key not in registry:
        require_key(kind, key)
        info = catalogue()[kind].get(key)
        if info is not None:
            importlib.import_module(info.module)  # only the module that registers the key
        if key not in registry:
            discover()
    return registry[key]


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


def describe_text(docstring: str | None) -> str:
    """A docstring's first paragraph, on one line: the description ``bench list`` shows."""
    return " ".join(inspect.cleandoc(docstring or "").split("\n\n")[0].split())


def describe(cls: type) -> str:
    """A registered class's description (its docstring's first paragraph)."""
    return describe_text(cls.__doc__)
