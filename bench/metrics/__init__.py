"""Energy/latency metrics: counting hooks, counting rules, cost tables and the energy model, latency, and the
callback that ties them together (``EnergyMetrics``, run in every test loop)."""

from bench.metrics.callback import EnergyMetrics
from bench.metrics.counting import MetricsError, spike_kind
from bench.metrics.energy import CostTable, cost_tables, load_cost_table
from bench.metrics.rules import COUNTING_VERSION, CountingRules, conventions_label

__all__ = [
    "COUNTING_VERSION",
    "CostTable",
    "CountingRules",
    "EnergyMetrics",
    "MetricsError",
    "conventions_label",
    "cost_tables",
    "load_cost_table",
    "spike_kind",
]
