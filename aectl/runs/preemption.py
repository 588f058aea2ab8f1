"""SLURM preemption and time limits, through submitit (Hydra's submitit launcher).

submitit warns a job with a signal (USR2, or $SUBMITIT_PREEMPT_SIGNAL) when SLURM preempts it
or `signal_delay_s` before its time limit; its own handler then re-pickles the job and requeues
it. aectl puts one step in front: the signal is a stop request like SIGTERM (aectl.runs.signals), so
the loop finishes its step and writes checkpoints/last.pt, mid-epoch included; then submitit's
handler requeues the job (`scontrol requeue` on SLURM, exit code 3 for the local executor).
The requeued job is the same Hydra job in the same folder: finding its own last.pt there, it
resumes from it and ends with the weights an uninterrupted run would have.

Outside a submitit job every function here is a no-op. No torch, no submitit at import.
"""

import contextlib
import logging
import os
import signal
from pathlib import Path

from aectl.runs.runfolder import has_checkpoint
from aectl.runs.signals import Interrupted

log = logging.getLogger(__name__)


def submitit_signal() -> int | None:
    """submitit's preemption signal when this process is a submitit job, else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    try:
        from submitit import JobEnvironment
    except ImportError:
        return None
    return int(JobEnvironment._usr_sig())


def stop_signals() -> tuple[int, ...]:
    """The signals that stop training cleanly: SIGINT, SIGTERM, and submitit's preemption signal."""
    extra = submitit_signal()
    return (signal.SIGINT, signal.SIGTERM) + ((extra,) if extra else ())


def requeued(run_dir: Path) -> bool:
    """Whether this is a submitit job run again (requeued) in a folder its first run left a
    checkpoint in: it continues from that checkpoint instead of refusing the used folder."""
    return submitit_signal() is not None and has_checkpoint(run_dir)


@contextlib.contextmanager
def requeue_on_preemption():
    """Around training in a submitit job: when training stopped on submitit's signal (last.pt
    is written by then), hand over to submitit's handler, which requeues the job and exits."""
    signum = submitit_signal()
    requeue = signal.getsignal(signum) if signum else None  # installed by submitit before the task ran
    try:
        yield
    except Interrupted as stopped:
        if not callable(requeue) or stopped.signum != signum:
            raise
        log.warning("preempted or near the time limit: %s; requeueing the job", stopped.message().splitlines()[0])
        requeue(signum, None)  # exits the process; raises if submitit will not requeue (too many timeouts)
        raise
