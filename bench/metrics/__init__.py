"""Energy/latency metrics: counting hooks, counting rules, cost tables and the energy model, latency, and the
callback that ties them together (``EnergyMetrics``, run in every test loop).

The callback and the counting hooks need torch; they are imported on first use, so reading records
(``bench tables``, ``bench compare``) can use the counting rules without importing torch.
"""

from importlib import import_module

from bench.metrics.rules import COUNTING_VERSION, CountingRules, conventions_label

#: Names imported on first use, and the module each comes from.
_LAZY = {
    "EnergyMetrics": "bench.metrics.callback",
    "MetricsError": "bench.metrics.counting",
    "CostTable": "bench.metrics.energy",
    "cost_tables": "bench.metrics.energy",
    "load_cost_table": "bench.metrics.energy",
    "MemoryModel": "bench.metrics.energy",
    "memory_models": "bench.metrics.energy",
    "load_memory_model": "bench.metrics.energy",
}

__all__ = ["COUNTING_VERSION", "CountingRules", "conventions_label", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
