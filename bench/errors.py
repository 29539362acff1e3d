"""Errors the CLI reports as a one-paragraph message and a non-zero exit, never as a traceback."""

import errno


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


class Diverged(TrainingError):
    """The loss or the weights blew up (bench.guards): the run's checkpoint holds nothing worth resuming."""


class StorageError(BenchError):
    """A file could not be read or written for a reason outside snnbench: a full disk, no permission, a
    missing or read-only folder."""


def storage_error(error: OSError, doing: str) -> StorageError:
    """The one-paragraph message for an OS error while ``doing`` something (e.g. "write the run record
    x.json"): what failed, where, and what to do."""
    where = f" ({error.filename})" if error.filename and str(error.filename) not in doing else ""
    reason = error.strerror or str(error)
    advice = {
        errno.ENOSPC: "The file system is full: free some space, or point paths.results / paths.logs "
        "(SNNBENCH_RESULTS / SNNBENCH_LOGS) at another one, then run the same command again.",
        errno.EDQUOT: "Your disk quota is used up: free some space, or point paths.results / paths.logs "
        "(SNNBENCH_RESULTS / SNNBENCH_LOGS) elsewhere, then run the same command again.",
        errno.EACCES: "You may not write or read there: fix the folder's permissions, or point "
        "paths.results / paths.logs (SNNBENCH_RESULTS / SNNBENCH_LOGS) at a folder of your own.",
        errno.EROFS: "That file system is read-only: point paths.results / paths.logs (SNNBENCH_RESULTS / "
        "SNNBENCH_LOGS) at a writable folder.",
        errno.ENOENT: "It does not exist: check the path (and SNNBENCH_RESULTS / SNNBENCH_LOGS / "
        "SNNBENCH_DATA, or --results), or create the folder.",
    }
    advice[errno.EPERM] = advice[errno.EACCES]
    text = f"Could not {doing}{where}: {reason}. {advice.get(error.errno, 'Check the path and the disk.')}"
    return StorageError(text)


class RunInterrupted(TrainingError):
    """The run was stopped from outside (Ctrl+C, SIGTERM, a SLURM preemption): recorded ``interrupted``,
    resumable, not a failure of the run."""
