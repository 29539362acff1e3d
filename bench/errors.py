"""Errors the CLI reports as a one-paragraph message and a non-zero exit, never as a traceback."""


class BenchError(Exception):
    """A problem with the user's input or data that the user can fix; the message says how."""


class RegistryError(BenchError):
    """Unknown or duplicate method/dataset key."""


class ConfigError(BenchError):
    """Bad config file or override: unknown key, wrong value, unparsable."""


class DataError(BenchError):
    """Missing, corrupt or wrongly laid-out dataset files."""


class TrainingError(BenchError):
    """Training diverged (NaN/inf loss) or was interrupted."""


class RunInterrupted(TrainingError):
    """The run was stopped from outside (Ctrl+C, SIGTERM, a SLURM preemption): recorded ``interrupted``,
    resumable, not a failure of the run."""
