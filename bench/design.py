"""A method's design range: the input kinds and time steps its paper designs it for.

Each method class states ``design`` (per input kind, ``"static"`` images or ``"event"`` streams, the lowest
and highest T, ``None`` for no upper bound; a kind left out is outside the design) and ``design_basis``
(the paper's grounds, in a few words). A run outside the range is allowed, since asking how a method
fares outside its design is a fair question, but its record says so (``outside_design`` and the reason),
so that a comparison can rank methods only where their papers put them. Torch-free: ``bench list`` reads
the ranges from the plugin sources.
"""

from __future__ import annotations

KIND_NAMES = {"static": "images", "event": "events"}


def describe(design: dict) -> str:
    """``design`` in words, e.g. ``images T = 1; events T = 1-10`` (``-`` when a class states none)."""
    if not design:
        return "-"
    parts = []
    for kind, (low, high) in design.items():
        steps = f"T >= {low}" if high is None else f"T = {low}" if low == high else f"T = {low}-{high}"
        parts.append(f"{KIND_NAMES.get(kind, kind)} {steps}")
    return "; ".join(parts)


def outside_reason(method: str, design: dict, basis: str, kind: str, time_steps: int) -> str | None:
    """Why a run of ``method`` on ``kind`` input at ``time_steps`` lies outside its design, or None."""
    grounds = f" ({basis})" if basis else ""
    if kind not in design:
        return f"{method} is designed for {describe(design)}, not {KIND_NAMES.get(kind, kind)}{grounds}"
    low, high = design[kind]
    if time_steps < low or (high is not None and time_steps > high):
        return (
            f"{method} is designed for {describe(design)}, not T = {time_steps} on "
            f"{KIND_NAMES.get(kind, kind)}{grounds}"
        )
    return None
