"""Every test item's predicted class and label in a run record, compact, in the test set's order: what
paired comparisons between methods on the same items need (a test item's outcome under method A against
its outcome under method B), which summed accuracies cannot give.

A record's ``test_predictions`` is ``{"items": N, "dtype": "uint8" | "uint16", "predicted": <base64>,
"labels": <base64>}``: the N predicted classes and the N labels as little-endian unsigned integers of the
smallest type that holds the classes, base64-encoded (1,000 mnist5k digits: 2 x 1,336 characters). An
optional ``"ids"`` (base64 of little-endian uint16) names each item by its index into the dataset's pool,
where runs test different items (k-fold cross-validation); without it the items are the test set in order.
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
#: The stored type of the optional item ids (indices into the dataset's pool).
IDS_DTYPE = "<u2"


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


def ids(entry: dict) -> np.ndarray | None:
    """The pool indices of a record's test items, in order; None when the entry names none (the items are
    then the test set in order, positions 0..N-1)."""
    import numpy as np

    if entry.get("ids") is None:
        return None
    return np.frombuffer(base64.b64decode(entry["ids"]), dtype=np.dtype(IDS_DTYPE)).astype(np.int64)


def correct(entry: dict) -> np.ndarray:
    """Whether each test item was classified correctly (bool, in the test set's order)."""
    predicted, labels = decode(entry)
    return predicted == labels


def problem(entry) -> str | None:
    """Why a record's ``test_predictions`` cannot be read, or None."""
    keys = {"items", "dtype", "predicted", "labels"}
    if not isinstance(entry, dict) or not keys <= set(entry) <= keys | {"ids"}:
        return "its test_predictions is not an object of items, dtype, predicted and labels (and ids)"
    items = entry["items"]
    if not isinstance(items, int) or isinstance(items, bool) or items < 0:
        return f"its test_predictions' items {items!r} is not a whole number >= 0"
    if entry["dtype"] not in DTYPES:
        return f"its test_predictions' dtype {entry['dtype']!r} is not one of {', '.join(DTYPES)}"
    sizes = {key: (DTYPES[entry["dtype"]][1], entry["dtype"]) for key in ("predicted", "labels")}
    sizes |= {"ids": (2, "uint16")} if entry.get("ids") is not None else {}
    for key, (width, name) in sizes.items():
        try:
            size = len(base64.b64decode(entry[key], validate=True))
        except (TypeError, ValueError, binascii.Error):
            return f"its test_predictions' {key} is not base64"
        if size != items * width:
            return f"its test_predictions' {key} holds {size} bytes, not {items} {name} values"
    return None
