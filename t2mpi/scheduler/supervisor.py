"""Restarts: whether a run that ended goes on from its last committed checkpoint, and the
supervisor every batch script runs its MPI launch under.

    python -P -m t2mpi.restart --job-dir DIR -- mpiexec ... python -m t2mpi.launch --job-dir DIR

The supervisor follows the launch (t2mpi.watch), copying its output to the batch output: a launch
whose job master has not started within timeouts.start is ended and the job is FAILED, with the
launcher's last stderr lines as the reason (the scheduler then ends the job's steps on every node).
The supervisor is the batch script's own process (exec), so it gets the scheduler's signals:
SIGUSR1 (Slurm's --signal=B:USR1@N before the walltime, or a preemption notice sent with
`scancel --batch --signal=USR1`) asks the job's master for a checkpoint and a stop; after the
stop the job is requeued (scontrol requeue) while restarts remain. A run that fails is started
again in place from the last committed checkpoint while restarts remain. SIGTERM (a cancel, or
the scheduler ending the job) ends it: no restart. A batch run that finds the job's state
RUNNING or FAILED (the scheduler requeued it mid-run) goes on from the last committed checkpoint.
"""

from __future__ import annotations

import os
import signal
import sys

from ..job import states
from ..job.folder import JobDir
from ..job.spec import JobSpec
from ..watch import ended_early_reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

DONE, RESTART, REQUEUE, GIVE_UP = "done", "restart", "requeue", "give up"
STOP_SIGNAL = signal.SIGUSR1


def next_step(state: dict[str, Any] | None, restarts: int, max_restarts: int) -> tuple[str, str]:
    """What follows a run that ended with `state` (None: it wrote none): (DONE | RESTART |
    REQUEUE | GIVE_UP, why). Completed and killed jobs are done; a failed run restarts and a
    stopped (PREEMPTED) one is requeued while fewer than max_restarts restarts were made."""
    name = (state or {}).get("state")
    if name in (states.COMPLETED, states.KILLED):
        return DONE, ""
    reason = (state or {}).get("reason") or ""
    why = (
        f"the last run ended {name}" + (f": {reason}" if reason else "")
        if name
        else "the last run ended without a final state"
    )
    if restarts >= max_restarts:
        return GIVE_UP, why
    return (REQUEUE if name == states.PREEMPTED else RESTART), why


def give_up(jd: JobDir, state: dict[str, Any] | None, max_restarts: int) -> dict[str, Any]:
    """A job with no restarts left ends FAILED (a PREEMPTED run is not an end by itself)."""
    committed = jd.committed_version()
    where = f"checkpoint {committed}" if committed is not None else "the start (no checkpoint)"
    reason = (state or {}).get("reason") or "the run ended without a final state"
    return jd.settle(
        states.FAILED,
        f"{reason}; no restarts left (max_restarts {max_restarts}); `t2mpi restart {jd.job_id}` goes on from {where}",
        by="t2mpi",
    )


# ------------------------------------------------------------------ the batch supervisor


class _Signals:
    def __init__(self, jd: JobDir):
        self.jd = jd
        self.terminated = False
        self.launch: int | None = None  # the running launch's session (and process group)

    def stop(self, signum: int, frame: Any) -> None:
        self.jd.request_stop(f"signal {signal.Signals(signum).name} from the scheduler (walltime near, or preemption)")

    def terminate(self, signum: int, frame: Any) -> None:
        """A cancel (qdel, scancel): the launch runs in a session of its own, which a scheduler
        that signals only the batch script's session would miss, so it gets the signal too."""
        self.terminated = True
        if self.launch is not None:
            try:
                os.killpg(self.launch, signum)
            except (ProcessLookupError, PermissionError):
                pass


def supervise(job_dir: str, argv: Sequence[str], requeue: Callable[[], str | None]) -> int:
    """Run the launch `argv` for the job in `job_dir` until it is done or out of restarts;
    `requeue()` asks the scheduler to run the batch job again (None: it cannot; else why not)."""
    jd = JobDir(job_dir)
    max_restarts = int(jd.read_spec().get("max_restarts") or 0)
    signals = _Signals(jd)
    signal.signal(STOP_SIGNAL, signals.stop)
    signal.signal(signal.SIGTERM, signals.terminate)
    state = jd.read_state()
    if state is not None and state.get("state") in (states.COMPLETED, states.KILLED):
        print(f"t2mpi.restart: job {jd.job_id} already ended {state['state']}; nothing to run", flush=True)
        return 0 if state["state"] == states.COMPLETED else 1
    if state is not None and state.get("state") != states.STARTING:  # the scheduler runs it again
        why = f"the batch job was started again (requeued) after a run that was {state.get('state')}"
        if jd.restarts()["count"] >= max_restarts:
            give_up(jd, dict(state, reason=why), max_restarts)
            return 1
        jd.begin_restart(why, by="batch")
    start_timeout = JobSpec.from_dict(jd.read_spec()).timeouts.start
    while True:
        jd.clear_stop()
        launch = _launch(jd, argv, start_timeout, signals)
        returncode = launch.returncode
        if signals.terminated:  # cancelled, or requeued by the scheduler: its state stays as it is
            return returncode or 1
        if launch.never_started is not None:
            print(f"t2mpi.restart: job {jd.job_id} FAILED: {launch.never_started}", flush=True)
        state = jd.read_state()
        if state is None or state.get("state") not in states.ENDED:
            state = jd.settle(states.FAILED, ended_early_reason(launch), by="batch")
        action, why = next_step(state, jd.restarts()["count"], max_restarts)
        if action == DONE:
            return 0 if state["state"] == states.COMPLETED else 1
        if action == GIVE_UP:
            give_up(jd, state, max_restarts)
            return 1
        if action == REQUEUE:
            number = jd.begin_restart(f"{why}; requeued", by="batch")
            refused = requeue()
            if refused is None:
                print(
                    f"t2mpi.restart: job {jd.job_id} stopped after checkpoint {jd.committed_version()}; "
                    f"requeued (restart {number} of {max_restarts})",
                    flush=True,
                )
                return 0
            print(f"t2mpi.restart: cannot requeue ({refused}); restarting in place", flush=True)
        else:
            number = jd.begin_restart(why, by="batch")
        print(
            f"t2mpi.restart: restart {number} of {max_restarts} from checkpoint {jd.committed_version()}: {why}",
            flush=True,
        )


def _launch(jd: JobDir, argv: Sequence[str], start_timeout: float, signals: _Signals) -> Any:
    """Run the launch `argv` in a session of its own, its output copied to this process's (the
    batch output), to its end; a launch whose master has not started within `start_timeout`
    seconds is ended (t2mpi.watch). Returns its t2mpi.watch.Launch."""
    import subprocess

    from ..mpi.sessions import clear_stale
    from ..procs import start
    from ..watch import follow, writer

    offset = os.path.getsize(jd.events_file) if os.path.exists(jd.events_file) else 0
    clear_stale()  # what a killed Open MPI launcher left would stop this one (t2mpi.mpi.sessions)
    proc = start(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    signals.launch = proc.pid
    if signals.terminated:  # cancelled while it started
        signals.terminate(signal.SIGTERM, None)
    return follow(proc, jd, writer(sys.stdout), writer(sys.stderr), None, start_timeout, offset, by="batch")


def slurm_requeue() -> str | None:
    """`scontrol requeue $SLURM_JOB_ID`; None when done, else why it was not."""
    from ..procs import CommandError, run

    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return "not a Slurm job (no SLURM_JOB_ID)"
    try:
        run(["scontrol", "requeue", job], timeout=60)
    except CommandError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[0] != "--job-dir" or argv[2] != "--":
        print("usage: python -m t2mpi.restart --job-dir DIR -- LAUNCH-COMMAND...", file=sys.stderr)
        return 2
    requeue = slurm_requeue if os.environ.get("SLURM_JOB_ID") else (lambda: "no scheduler requeue here")
    return supervise(argv[1], argv[3:], requeue)


if __name__ == "__main__":
    sys.exit(main())
