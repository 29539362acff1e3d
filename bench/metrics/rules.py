"""The counting rules: how a synaptic layer's raw counts become ACs and MACs. The one place they live.

A run records, per synaptic layer, raw counts (:data:`RAW_FIELDS`, per sample) that no rule has touched:
what its inputs were, by their values, and how many connections they reached. Every rule below, and every
cost table, prices those counts afterwards, so another convention never means training again (``bench
tables --pooled folded --cost-table loihi``).

A conventional accelerator multiplies every input by every weight it meets; an event-driven one adds a
weight for each nonzero spike it receives. So (``../shared/reference/metrics-and-peers.md`` §1.3):

* **Non-spiking method** (``ann``, declared by the method's ``spiking = False``): every synaptic op is a
  MAC on every input element, zeros included, at every kernel tap, padding taps included: the dense count
  of a conventional accelerator (cuDNN's, op_counter's and the papers' FLOP counts).
* **Spiking method**, by the values of each call's input:

  - binary spikes (all in {0, 1}) and signed spikes (all in {-1, 0, 1}): ACs over the nonzero connections
    (NeuroBench's Effective_ACs);
  - graded spikes (integers, multi-threshold neurons): ACs weighted by amplitude (a spike of amplitude m
    is m additions, ``graded_spikes="amplitude"``) or one per event (``"unit"``);
  - average-pooled spikes (non-negative multiples of 1/A, A the window of an average pool of spikes in
    the same forward pass): ``pooled_spikes="folded"`` the pool compiled into the next layer's synapses,
    as an event-driven chip without a pooling unit runs it: every pre-pool spike costs one AC per
    connection it reaches (value x A x fan-out); ``"effective"`` NeuroBench's Effective_MACs, the nonzero
    pooled inputs x their fan-out, priced as MACs (a graded-spike MAC machine); ``"ac"`` the papers' "firing
    rate x FLOPs" convention, ACs = value x fan-out (fractional, not realisable by any chip); ``"mac"``
    op_counter's, dense MACs over every tap (the worst case);
  - anything else is analog (direct encoding, compressed synaptic current): MACs over every tap, padding
    included.

``dense``/``effective`` (NeuroBench's, border-aware) do not depend on these choices. Records carry
:meth:`CountingRules.conventions`; bump :data:`COUNTING_VERSION` whenever what is counted changes, so that
tables never mix records counted differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import ConfigError

#: Version 1: the rules before conventions were recorded. Version 2: the rules above, with the pooled rule
#: fixed at run time and no raw counts. Version 3: raw counts per layer (any rule priced afterwards), input
#: kinds by value (signed spikes, pooled spikes however they reached the layer), the ``folded`` rule.
COUNTING_VERSION = 3
GRADED_MODES = ("amplitude", "unit")
POOLED_MODES = ("effective", "folded", "ac", "mac")
#: The config keys that only price a run's counts: they change nothing it trains or counts, so they are
#: in no run id and split no experiment, and ``bench tables --cost-table ... --pooled ...`` overrides them.
PRICING_KEYS = tuple(
    f"metrics.{key}" for key in ("cost_table", "graded_spikes", "pooled_spikes", "memory_model")
)
#: The input kinds a synaptic layer's call is classified into, by its values.
INPUT_KINDS = ("binary", "signed", "graded", "pooled", "analog")

#: The raw counts a record keeps per synaptic layer (``layers[i]["counts"]``), per sample, summed over
#: calls and time steps; "fan-out" is the number of connections an input position reaches (border-aware).
RAW_FIELDS = {
    "calls": "forward calls of the layer",
    "rows": "passes of the layer: images for a convolution, vectors (tokens included) for a Linear",
    "outputs": "output elements",
    "dense": "NeuroBench Dense: every input x its fan-out",
    "padded": "every kernel tap of every output, padding taps included (op_counter's MACs)",
    "effective": "NeuroBench Effective ops: every nonzero input x its fan-out",
    "binary_events": "effective ops of the calls whose input was binary spikes",
    "signed_events": "effective ops of the calls whose input was signed spikes {-1, 0, 1}",
    "graded_events": "effective ops of the calls whose input was graded spikes (integers)",
    "graded_amplitude": "sum of |value| x fan-out over those calls",
    "pooled_events": "effective ops of the calls whose input was average-pooled spikes",
    "pooled_amplitude": "sum of value x fan-out over those calls",
    "pooled_folded": "sum of value x A x fan-out over those calls: the pre-pool spikes x their fan-out",
    "pooled_padded": "padded dense ops of those calls",
    "analog_padded": "padded dense ops of the calls whose input was analog",
    **{f"{kind}_calls": f"calls whose input was {kind}" for kind in INPUT_KINDS},
    "ann_macs": "the ANN reference: padded dense ops of one pass of the layer over one sample",
    "ann_outputs": "output elements of that one pass",
}


@dataclass(frozen=True)
class CountingRules:
    spiking: bool = True
    graded_spikes: str = "amplitude"
    pooled_spikes: str = "effective"

    def __post_init__(self):
        check_modes(self.graded_spikes, self.pooled_spikes)

    def ops(self, counts: dict) -> tuple[float, float]:
        """(ACs, MACs) of one layer from its raw counts (:data:`RAW_FIELDS`)."""
        if not self.spiking:
            return 0.0, counts["padded"]
        acs = counts["binary_events"] + counts["signed_events"]
        acs += counts["graded_amplitude" if self.graded_spikes == "amplitude" else "graded_events"]
        macs = counts["analog_padded"]
        pooled = {
            "folded": ("pooled_folded", None),
            "effective": (None, "pooled_events"),
            "ac": ("pooled_amplitude", None),
            "mac": (None, "pooled_padded"),
        }[self.pooled_spikes]
        acs += counts[pooled[0]] if pooled[0] else 0.0
        macs += counts[pooled[1]] if pooled[1] else 0.0
        return acs, macs

    def conventions(self) -> dict:
        """What a record states about how it was counted."""
        return {
            "version": COUNTING_VERSION,
            "spiking": self.spiking,
            "graded_spikes": self.graded_spikes,
            "pooled_spikes": self.pooled_spikes,
        }


def check_modes(graded_spikes: str, pooled_spikes: str) -> None:
    if graded_spikes not in GRADED_MODES:
        raise ConfigError(
            f"metrics.graded_spikes={graded_spikes!r} is not a counting mode; use one of "
            f"{', '.join(GRADED_MODES)}."
        )
    if pooled_spikes not in POOLED_MODES:
        raise ConfigError(
            f"metrics.pooled_spikes={pooled_spikes!r} is not a counting mode; use one of "
            f"{', '.join(POOLED_MODES)}."
        )


def conventions_label(conventions: dict | None) -> str:
    """A table's short name for a record's counting conventions (records made before version 2 have none;
    the ``spiking`` flag is the method's, not a choice, so it is not part of the label)."""
    if not conventions:
        return (
            "v1 (old rules: pooled spikes as fractional ACs, the ANN counted by input values, "
            "no padding taps)"
        )
    return (
        f"v{conventions['version']} (graded_spikes={conventions['graded_spikes']}, "
        f"pooled_spikes={conventions['pooled_spikes']})"
    )
