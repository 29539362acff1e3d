"""Every test item's predicted class and label in a run record, compact, in the test set's order: what
paired comparisons between methods on the same items need (a test item's outcome under method A against
its outcome under method B), which summed accuracies cannot give.

A record's ``test_predictions`` is ``{"items": N, "dtype": "uint8" | "uint16", "predicted": <base64>,
"labels": <base64>}``: the N predicted classes and the N labels as little-endian unsigned integers of the
smallest type that holds the classes, base64-encoded (1,000 mnist5k digits: 2 x 1,336 characters).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # reading records (bench status) imports neither numpy nor torch
    import numpy as np
    import torch

#: Each stored type's numpy type string (little-endian) and size in bytes.
DTYPES = {"uint8": ("<u1", 1), "uint16": ("<u2", 2)}


def encode(outcomes: torch.Tensor) -> dict:
    """``outcomes`` ``[2, N]`` (predicted classes, labels) as a record's ``test_predictions``."""
    values = outcomes.detach().cpu().numpy()
    name = "uint8" if values.size == 0 or values.max() < 256 else "uint16"
    if values.size and (values.min() < 0 or values.max() >= 65536):
        raise ValueError(f"classes must lie in [0, 65536): got {values.min()}..{values.max()}")
    predicted, labels = (base64.b64encode(row.astype(DTYPES[name][0]).tobytes()).decode() for row in values)
    return {"items": int(values.shape[1]), "dtype": name, "predicted": predicted, "labels": labels}


def decode(entry: dict) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes, labels) of a record's ``test_predictions`` (checked by :func:`problem` first)."""
    import numpy as np

    dtype = np.dtype(DTYPES[entry["dtype"]][0])
    return tuple(np.frombuffer(base64.b64decode(entry[key]), dtype=dtype) for key in ("predicted", "labels"))


def correct(entry: dict) -> np.ndarray:
    """Whether each test item was classified correctly (bool, in the test set's order)."""
    predicted, labels = decode(entry)
    return predicted == labels


def problem(entry) -> str | None:
    """Why a record's ``test_predictions`` cannot be read, or None."""
    if not isinstance(entry, dict) or set(entry) != {"items", "dtype", "predicted", "labels"}:
        return "its test_predictions is not an object of items, dtype, predicted and labels"
    items = entry["items"]
    if not isinstance(items, int) or isinstance(items, bool) or items < 0:
        return f"its test_predictions' items {items!r} is not a whole number >= 0"
    if entry["dtype"] not in DTYPES:
        return f"its test_predictions' dtype {entry['dtype']!r} is not one of {', '.join(DTYPES)}"
    for key in ("predicted", "labels"):
        try:
            size = len(base64.b64decode(entry[key], validate=True))
        except (TypeError, ValueError, binascii.Error):
            return f"its test_predictions' {key} is not base64"
        if size != items * DTYPES[entry["dtype"]][1]:
            return f"its test_predictions' {key} holds {size} bytes, not {items} {entry['dtype']} values"
    return None
