"""Progress a person can follow in a log: the lines of long phases (a frame cache being built, an ANN being
converted, a sweep's cells being checked) and the time formats of the training lines
(:mod:`bench.training_lines`).

The lines are plain ``print``s, flushed at once, not records of the ``bench`` logger: that logger's one
handler (``bench.cli.show_warnings``) shows warnings as ``warning: ...`` lines, and these are no warnings;
and they must reach the run's own output wherever it runs (a sweep cell's log file, a SLURM task's
``.out`` file), where no logging handler is set up. Only the global-rank-0 process of a DDP run prints. The
module imports nothing heavy: ``bench status`` and a sweep's dry run use it without torch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from lightning_utilities.core.rank_zero import rank_zero_only

#: A long phase's progress line comes at most this often (seconds).
PHASE_EVERY_S = 30.0


def rank_zero() -> bool:
    """Whether this is the global-rank-0 process (or no DDP run at all)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def say(line: str, stream=None) -> None:
    """Print one line at once (flushed: a log file shows it now, not when a buffer fills), on rank 0 only."""
    if rank_zero():
        print(line, file=stream or sys.stdout, flush=True)


def clock(seconds: float) -> str:
    """``H:MM:SS``, as an ETA reads."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def took(seconds: float) -> str:
    """A duration as a person reads it: ``4.2 s`` under a minute, else ``H:MM:SS``."""
    return f"{seconds:.1f} s" if seconds < 60 else clock(seconds)


class Phase:
    """The lines of one long phase, each starting ``<name>: ``: :meth:`start` says what it does, :meth:`tick`
    how far it got (at most one line every ``every_s`` seconds), :meth:`note` a step worth a line of its own,
    :meth:`end` that it ended and how long it took. ``printer`` prints a line (default :func:`say`; a
    LightningModule passes its ``print``, which goes around a progress bar on a terminal)."""

    def __init__(
        self, name: str, every_s: float = PHASE_EVERY_S, printer: Callable[[str], None] | None = None
    ):
        self.name, self.every_s = name, every_s
        self.printer = printer or say
        self.started = self.last = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _print(self, text: str) -> None:
        self.last = time.monotonic()
        self.printer(f"{self.name}: {text}")

    def start(self, text: str) -> None:
        self.started = time.monotonic()
        self._print(text)

    def tick(self, text: str) -> bool:
        """A line with the elapsed time if ``every_s`` passed since the last one; whether it printed."""
        if time.monotonic() - self.last < self.every_s:
            return False
        self._print(f"{text} ({took(self.elapsed)} so far)")
        return True

    def note(self, text: str) -> None:
        self._print(f"{text} ({took(self.elapsed)} so far)")

    def end(self, text: str, after: str = "") -> None:
        """``<text> in <time taken><after>``."""
        self._print(f"{text} in {took(self.elapsed)}{after}")


class Counter:
    """``checking cells 40/252`` on stderr while a count goes on, but only once it has taken ``after_s``
    seconds (a quick count prints nothing); on a terminal one line rewritten in place every ``every_s``
    seconds, elsewhere (a log) a new line every ``log_every_s`` seconds. :meth:`done` ends the line, and says
    how long it all took, if anything was printed."""

    def __init__(self, what: str, total: int, after_s: float = 2.0, every_s: float = 0.5, log_every_s=10.0):
        self.what, self.total, self.after_s = what, total, after_s
        self.stream = sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s if self.tty else log_every_s
        self.started = time.monotonic()
        self.last: float | None = None  # when the last line was printed (None: none yet)

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.started < self.after_s or (self.last is not None and now - self.last < self.every_s):
            return
        self.last = now
        line = f"{self.what} {done}/{self.total}"
        if self.tty:
            self.stream.write(f"\r{line}")
            self.stream.flush()
        else:
            say(line, self.stream)

    def done(self, complete: bool = True) -> None:
        """The last line (``complete``: the whole count was done), or only the end of the rewritten line
        when the count stopped early (an error follows on a line of its own)."""
        if self.last is None:
            return
        line = f"{self.what} {self.total}/{self.total} in {took(time.monotonic() - self.started)}"
        if not complete:
            if self.tty:
                self.stream.write("\n")
            return
        if self.tty:
            self.stream.write(f"\r{line}\n")
            self.stream.flush()
        else:
            say(line, self.stream)
