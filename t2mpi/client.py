"""The job client: check a job, start its MPI launch, follow it through the job folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import namedtuple

from .job import states
from .job.folder import JobDir
from .job.spec import JobSpec, load
from .mpi import launcher as mpilauncher
from .mpi.limit import check_local_launch
from .net.first_node import choose_network
from .runtime.worker import load_worker_class
from .watch import ended_early_reason, writer

TYPE_CHECKING = False  # typing and dataclasses would cost the client ~30 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .watch import Launch


class PreparedJob(namedtuple("PreparedJob", "spec mpi host python network")):
    """A checked job (JobSpec), its MPI launcher and host facts, the Python the ranks run, and
    the transport chosen for this node (t2mpi.net.fabric.Choice)."""

    __slots__ = ()

    def argv(self, job_dir: str) -> list[str]:
        """The exact command that runs the job in `job_dir`."""
        return mpilauncher.command(self.mpi, self.spec, job_dir, self.python, self.host, network=self.network.env)


class JobResult(namedtuple("JobResult", "job_id job_dir state reason results errors wall_time worker_times exit_code")):
    """How a job ended: its state and reason, each worker's return value (results) or error text
    (errors) by worker id, wall and per-worker times in seconds, its folder, the CLI exit code."""

    __slots__ = ()

    @property
    def ok(self) -> bool:
        return self.state == states.COMPLETED


class Follower:
    """Callbacks for a run: output lines as they come (by default to this process's stdout and
    stderr), new events with the state they left, and the start (job folder and command)."""

    def __init__(
        self,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
        on_events: Callable[[list[dict[str, Any]], dict[str, Any] | None], None] | None = None,
        on_start: Callable[[JobDir, list[str]], None] | None = None,
    ):
        self.on_stdout = on_stdout or writer(sys.stdout)
        self.on_stderr = on_stderr or writer(sys.stderr)
        self.on_events = on_events or (lambda events, state: None)
        self.on_start = on_start or (lambda job_dir, argv: None)


def prepare(
    job: str | os.PathLike[str],
    *,
    workers: int | None = None,
    master: str | None = None,
    overrides: Sequence[str] = (),
    python: str | None = None,
    batch: bool = False,
) -> PreparedJob:
    """Resolve and check everything that can be checked before anything is launched. `batch`:
    for a batch script, whose transport is chosen on its first node when it starts, so a port,
    interface or library this node lacks is no error here (network.transport is None, and
    network.why says what is missing)."""
    if master is not None:
        overrides = [*overrides, f"master={master}"]
    return _checked(load(job, workers=workers, overrides=overrides), python, batch)


def _checked(spec: JobSpec, python: str | None, batch: bool = False) -> PreparedJob:
    from .net import fabric

    load_worker_class(spec)
    python = python or sys.executable
    mpi = mpilauncher.detect(mpilauncher.find(spec, python))
    try:
        network = choose_network(spec, mpi)
    except fabric.NotHereError as exc:
        if not batch:
            raise
        network = fabric.Choice(None, {}, [str(exc)])
    job = PreparedJob(spec, mpi, mpilauncher.Host.here(), python, network)
    job.argv("<job-dir>")  # an unsupported launcher fails here, before a folder is made
    return job


def run(
    job: str | os.PathLike[str],
    *,
    workers: int | None = None,
    master: str | None = None,
    overrides: Sequence[str] = (),
    follower: Follower | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> JobResult:
    """Run a job to its end and return its JobResult. Ctrl-C ends every rank (state KILLED).

    master="client" runs the job master beside this process, as a one-rank launch that spawns
    the workers (see spawn.py for why not inside it); `progress` is called with each worker's
    progress event as it comes. More workers than this node or allocation allows is a LaunchError
    unless the job sets mpi.oversubscribe (t2mpi.mpi.limit)."""
    prepared = prepare(job, workers=workers, master=master, overrides=overrides)
    check_local_launch(prepared.spec, prepared.host.cpus, os.environ)
    follower = follower or Follower()
    if progress is not None:
        follower = _with_progress(follower, progress)
    return execute(prepared, follower)


def _with_progress(follower: Follower, progress: Callable[[dict[str, Any]], None]) -> Follower:
    inner = follower.on_events

    def on_events(events: list[dict[str, Any]], state: dict[str, Any] | None) -> None:
        for event in events:
            if event.get("event") == "progress":
                progress(event)
        inner(events, state)

    return Follower(follower.on_stdout, follower.on_stderr, on_events, follower.on_start)


def execute(job: PreparedJob, follower: Follower) -> JobResult:
    """Make the job folder and run the job to its end, restarting a failed run from its last
    committed checkpoint while fewer than max_restarts restarts were made."""
    return run_in(job, make_folder(job), follower)


def make_folder(job: PreparedJob) -> JobDir:
    """The new job folder of a prepared job; network.json keeps the transport chosen here, for a
    master that spawns the workers."""
    return JobDir.create(
        job.spec.jobs_dir, job.spec.name, job.spec.to_dict(), network={"host": job.host.name, **job.network._asdict()}
    )


def detach(job: PreparedJob) -> tuple[JobDir, int]:
    """The job's folder, and a fork (its pid; 0 in the child) that runs on detached: a session of
    its own (no terminal, so no hang-up reaches it; SIGHUP ignored too), no standard input, its
    output appended to the folder's batch.out."""
    import signal

    jd = make_folder(job)
    out = os.open(jd.batch_out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # before `t2mpi logs` looks
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        devnull = os.open(os.devnull, os.O_RDONLY)
        for fd, to in ((devnull, 0), (out, 1), (out, 2)):
            os.dup2(fd, to)
        os.close(devnull)
    os.close(out)
    return jd, pid


def run_in(job: PreparedJob, jd: JobDir, follower: Follower) -> JobResult:
    """Run a prepared job in its new folder `jd` (make_folder) to its end, as execute does."""
    follower.on_start(jd, job.argv(str(jd.path)))
    return _runs(job, jd, follower)


def resume(job: PreparedJob, jd: JobDir, follower: Follower, why: str) -> JobResult:
    """Run a job that ended (failed, killed, stopped) again in its folder, from its last
    committed checkpoint (t2mpi restart)."""
    jd.begin_restart(why, by="t2mpi restart")
    follower.on_start(jd, job.argv(str(jd.path)))
    return _runs(job, jd, follower)


def load_prepared(jd: JobDir, python: str | None = None) -> PreparedJob:
    """The PreparedJob of a job folder's resolved spec, on this node."""
    return _checked(JobSpec.from_dict(jd.read_spec()), python)


def _runs(job: PreparedJob, jd: JobDir, follower: Follower) -> JobResult:
    from .scheduler import supervisor

    while True:
        result = _run_once(job, jd, follower)
        action, why = supervisor.next_step(
            {"state": result.state, "reason": result.reason}, jd.restarts()["count"], job.spec.max_restarts
        )
        if action == supervisor.RESTART:
            number = jd.begin_restart(why)
            follower.on_stderr(
                f"t2mpi: restart {number} of {job.spec.max_restarts} from checkpoint {jd.committed_version()}: {why}\n"
            )
            continue
        return result  # done, out of restarts, or stopped on request (t2mpi restart goes on)


def _run_once(job: PreparedJob, jd: JobDir, follower: Follower) -> JobResult:
    from .errors import Interrupted
    from .mpi.sessions import clear_stale
    from .procs import end_session, start
    from .watch import follow

    jd.write_client(os.uname().nodename, os.getpid())  # a master: client ends the job if this dies

    offset = _size(jd.events_file)
    clear_stale()  # what a killed Open MPI launcher left would stop this one (t2mpi.mpi.sessions)
    proc = start(job.argv(str(jd.path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        launch = follow(
            proc, jd, follower.on_stdout, follower.on_stderr, follower.on_events, job.spec.timeouts.start, offset
        )
    except BaseException as exc:
        end_session(proc)
        if isinstance(exc, Interrupted):
            why = exc.why
        elif isinstance(exc, KeyboardInterrupt):
            why = "interrupted (Ctrl-C)"
        else:
            why = f"client error: {exc!r}"
        jd.settle(states.KILLED, why)
        raise
    return _result(jd, launch)


def stop_on_interrupt(jd: JobDir | None, asked_before: bool) -> bool:
    """Ctrl-C to `t2mpi run`: whether it became a stop request (the first one, to a job that runs
    a stream: it checkpoints and ends PREEMPTED); False: end every rank, as for any other job."""
    from .stream.engine import streaming

    if jd is None or asked_before:
        return False
    try:
        state = jd.read_state()
    except Exception:  # an unreadable state.json: Ctrl-C ends the job, as for any other
        return False
    if not streaming(state):
        return False
    jd.request_stop("Ctrl-C to t2mpi")
    return True


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _result(jd: JobDir, launch: Launch) -> JobResult:
    state = jd.read_state()
    if state is None or state.get("state") not in states.ENDED:
        # what was settled, even where it could not be written (a full disk)
        state = jd.settle(states.FAILED, ended_early_reason(launch))
    assert state is not None
    workers = state.get("workers", [])
    return JobResult(
        job_id=jd.job_id,
        job_dir=str(jd.path),
        state=state["state"],
        reason=state.get("reason", ""),
        results=jd.read_results() if state["state"] == states.COMPLETED else {},
        errors={w["id"]: w["error"] for w in workers if w.get("error")},
        wall_time=(state.get("ended") or time.time()) - (state.get("started") or time.time()),
        worker_times={w["id"]: w["ended"] - w["started"] for w in workers if w.get("ended") and w.get("started")},
        exit_code=0 if state["state"] == states.COMPLETED else 1,
    )
