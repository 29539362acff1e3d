"""What a dataset is, as everything outside its DataModule sees it: one type, read by the runner (into the
method and the run record), the config checks and ``bench list``. No torch here, so the registry's
listing reads it without importing a plugin."""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: The facts every method receives as constructor arguments (so a config never sets them).
METHOD_FACTS = ("num_classes", "input_shape", "kind", "frames")
#: The facts a DataModule class states as class attributes (``bench list`` shows them without an instance).
CLASS_FACTS = (*METHOD_FACTS, "embedded", "sizes")
#: The data choices of one configured DataModule that its run record keeps (where made: None is left out).
CHOICES = ("split", "frame_spec", "cross_validation")


@dataclass(frozen=True)
class DataFacts:
    """The facts a DataModule publishes as soon as it is constructed, without touching the disk.

    ``split``, ``frame_spec`` and ``cross_validation`` are data choices of one configured DataModule (which
    published split; how events were cut into frames; which fold of a k-fold partition is the test set, as
    ``{"folds": k, "fold": f, "fold_seed": s}``): the run record keeps them, so that every result says
    which inputs it was measured on.
    """

    num_classes: int
    input_shape: tuple[int, ...]  # (C, H, W)
    kind: str = "static"  # "static" or "event"
    frames: int | None = None  # fine frames per event sample
    embedded: bool = False  # ships with the suite (no download)
    sizes: str = ""  # "train / val / test" sample counts
    split: str | None = None
    frame_spec: dict | None = None
    cross_validation: dict | None = None

    def for_method(self) -> dict:
        """The constructor arguments every method takes from its dataset."""
        facts = {name: getattr(self, name) for name in METHOD_FACTS}
        return {**facts, "input_shape": list(self.input_shape)}

    def for_record(self) -> dict:
        """What a run record keeps of its data: the method's facts and the data choices that were made."""
        chosen = {key: value for key, value in asdict(self).items() if key in CHOICES}
        return {**self.for_method(), **{key: value for key, value in chosen.items() if value is not None}}
