"""A job master that spawns its workers (`master: client`).

A one-rank launch (`mpiexec -n 1 python -m t2mpi.launch`, started by the client beside itself)
starts the workers with MPI_Comm_spawn and runs the same Master and loop as rank 0 does, over
the intercommunicator to the workers.

Why not inside the client's own process: with the MPICH wheel, a spawned worker that ends
abnormally (an abort, a kill) makes Hydra end the spawning process too (SIGKILL, or SIGUSR1
with -disable-auto-cleanup, even with SIGUSR1 ignored), which would take the user's Python
session with it. The Open MPI wheel cannot spawn from a singleton at all.
"""

from __future__ import annotations

import os
import signal
import time

from ..job.states import FAILED, KILLED, PREEMPTED
from ..mpi.launcher import rank_environment
from ..procs import alive, send_signal, wait_gone
from .channel import MasterPort
from .master import worker_list
from .serve import new_master, serve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..job.folder import JobDir
    from ..job.spec import JobSpec

_END_GRACE = 5.0  # seconds for ended workers to go before they are killed


def run_master(
    spec: JobSpec,
    jd: JobDir,
    python: str,
    network_env: dict[str, str] | None = None,
    on_events: Callable[[list[dict[str, Any]], dict[str, Any]], None] | None = None,
    client: dict[str, Any] | None = None,
    binding: tuple[str, str] = ("none", ""),
) -> dict[str, Any]:
    """Spawn the job's workers (with `network_env`, the environment that selects the MPI
    transport), serve them to the end, and make sure none is left; return the final state.
    KeyboardInterrupt ends every worker (state KILLED) and is raised again. `client` ({host,
    pid}): the process that started the job; if it dies, the job ends KILLED. `binding`: the
    (mode, why) the workers bind with."""
    from mpi4py import MPI

    openmpi = "Open MPI" in MPI.Get_library_version()
    info = MPI.Info.Create()
    env = "\n".join(f"{k}={v}" for k, v in sorted(rank_environment(spec, network_env).items()))
    info.Set("PMIX_ENVAR" if openmpi else "env", env)  # Open MPI 5 warns that "env" is deprecated
    if openmpi:  # t2mpi binds its workers itself (mpiexec --bind-to none does not reach spawned ones)
        info.Set("bind_to", "none")
    if openmpi and "SLURM_JOB_ID" in os.environ:
        info.Set("map_by", "node")  # over the allocation's nodes, not first filling this one
    try:
        inter = MPI.COMM_SELF.Spawn(
            python, ["-P", "-m", "t2mpi.launch", "--spawned", "--job-dir", jd.path], maxprocs=spec.workers, info=info
        )
    finally:
        info.Free()
    master = new_master(spec, jd, mode="client", binding=binding)
    registrations = inter.allgather((os.uname().nodename, os.getpid(), *master.registration))
    master.joined(worker_list(registrations), (os.uname().nodename, os.getpid()), time.time())
    pids = [pid for host, pid in registrations if host == os.uname().nodename]
    try:
        snapshot = serve(
            MasterPort(inter, first_worker_rank=0),
            master,
            jd,
            spec.timeouts.abort,
            on_events,
            gone=_client_gone(client),
        )
    except BaseException as exc:
        _end_workers(pids)
        why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"master error: {exc!r}"
        master.kill(why, time.time())
        jd.append_events(master.drain_events())
        jd.write_state(master.snapshot())
        raise
    if snapshot["state"] in (FAILED, KILLED) or snapshot["state"] == PREEMPTED and not master.all_stopped:
        # a failed worker aborts the workers' launch: wait for it; with none (a cancel), end them now
        failed = any(w["state"] == FAILED for w in snapshot["workers"])
        _end_workers(pids, first=None if failed else signal.SIGTERM)
    else:
        inter.Disconnect()
    return snapshot


def _client_gone(client: dict[str, Any] | None) -> Callable[[], str | None] | None:
    """A check that the client process on this node still lives (None: nothing to watch)."""
    if not client or client.get("host") != os.uname().nodename or not client.get("pid"):
        return None
    pid = int(client["pid"])

    def gone() -> str | None:
        return None if alive(pid) else f"the client that started the job (pid {pid}) is gone"

    return gone


def _end_workers(pids: list[int], first: int | None = None) -> None:
    """Wait for the workers on this node to go (first: send them that signal first); TERM, then
    KILL the ones that stay."""
    for sig in dict.fromkeys((first, signal.SIGTERM, signal.SIGKILL)):
        if sig is not None:
            for pid in pids:
                send_signal(pid, sig)
        pids = wait_gone(pids, _END_GRACE)
        if not pids:
            return
