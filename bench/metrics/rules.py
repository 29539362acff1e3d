"""The counting rules: how one call of a synaptic layer splits into ACs and MACs. The one place they live.

A conventional accelerator multiplies every input by every weight it meets; an event-driven one adds a
weight for each nonzero spike it receives. So (``../shared/reference/metrics-and-peers.md`` §1.3):

* **Non-spiking method** (``ann``, declared by the method's ``spiking = False``): every synaptic op is a
  MAC on every input element, zeros included, at every kernel tap, padding taps included: the dense count
  of a conventional accelerator (cuDNN's, op_counter's and the papers' FLOP counts). Its energy is then
  its ANN reference times its number of steps.
* **Spiking method**, by the values of each call's input:

  - binary spikes (all in {0, 1}): ACs over the nonzero connections (NeuroBench's effective ops);
  - graded spikes (non-negative integers, multi-threshold neurons): ACs weighted by amplitude (a spike of
    amplitude m is m additions, ``graded_spikes="amplitude"``) or one per event (``"unit"``);
  - average-pooled spikes (fractions from pooling a spike map): ``pooled_spikes="effective"`` (default)
    NeuroBench's Effective MACs, the nonzero pooled inputs x their fan-out, priced as MACs; ``"ac"`` the
    papers' "firing rate x FLOPs" convention, ACs = sum of value x fan-out (fractional, it can fall below
    the number of nonzero connections); ``"mac"`` op_counter's, dense MACs over every tap;
  - anything else is analog (direct encoding, compressed synaptic current): MACs over every tap, padding
    included.

``dense_ops`` and ``effective_ops`` are NeuroBench's (border-aware, whatever the rules) and do not depend
on these choices. Records carry :meth:`CountingRules.conventions`; bump :data:`COUNTING_VERSION` whenever a
rule changes, so that tables never average records counted differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import ConfigError

#: Version 1: the rules before conventions were recorded (pooled spikes as fractional ACs, the ANN counted
#: by input values, MACs without padding taps). Version 2: the rules above.
COUNTING_VERSION = 2
GRADED_MODES = ("amplitude", "unit")
POOLED_MODES = ("effective", "ac", "mac")


@dataclass(frozen=True)
class CountingRules:
    spiking: bool = True
    graded_spikes: str = "amplitude"
    pooled_spikes: str = "effective"

    def __post_init__(self):
        check_modes(self.graded_spikes, self.pooled_spikes)

    def split(self, kind: str, pooled: bool, effective, amplitude, padded) -> tuple:
        """(ACs, MACs) of one call, from its input ``kind`` (``binary``/``graded``/``analog``), whether it
        is an average-pooled spike map, and its effective, amplitude-weighted and padded-dense counts."""
        if not self.spiking:
            return 0.0, padded
        if kind == "binary":
            return effective, 0.0
        if kind == "graded":
            return (amplitude if self.graded_spikes == "amplitude" else effective), 0.0
        if pooled:
            return {"effective": (0.0, effective), "ac": (amplitude, 0.0), "mac": (0.0, padded)}[
                self.pooled_spikes
            ]
        return 0.0, padded

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
