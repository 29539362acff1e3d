"""One liveness rule: run claims and the frame cache's temporary folders agree on whether a pid runs."""

from __future__ import annotations

import os
import socket

import pytest

from bench import claims
from bench.processes import pid_alive, process_start
from datamodules.frame_cache import HOST, TMP_MARK, remove_orphans

PID = 4_000_000  # above Linux's pid_max: never a real process, so only the faked os.kill answers


@pytest.mark.parametrize(
    ("refusal", "alive"),
    [(PermissionError, True), (ProcessLookupError, False)],
    ids=["another user's process", "no such process"],
)
def test_claims_and_frame_cache_agree_on_a_pid(tmp_path, monkeypatch, refusal, alive):
    """``kill(pid, 0)`` refused with EPERM means the process exists (another user's): both callers keep
    what it owns; ESRCH means it is gone: both let its claim and its folder go."""

    def kill(pid, signal):
        assert (pid, signal) == (PID, 0)
        raise refusal

    monkeypatch.setattr(os, "kill", kill)
    claim = {"host": socket.gethostname(), "pid": PID, "pid_started": None, "slurm_job_id": None}
    folder = tmp_path / f"frames-v1-T4-number-34x34{TMP_MARK}{HOST}-{PID}"
    folder.mkdir()
    remove_orphans(tmp_path, TMP_MARK)

    assert pid_alive(PID) is alive
    assert (claims.liveness(claim) == f"pid {PID} on {claim['host']}") is alive
    assert folder.exists() is alive


def test_a_reused_pid_is_not_its_former_process():
    me = os.getpid()
    assert pid_alive(me, process_start(me)) and pid_alive(me)
    assert not pid_alive(me, "1")  # our pid, but a process that started at another time
