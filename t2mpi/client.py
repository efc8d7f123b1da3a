"""The job client: check a job, start its MPI launch, follow it through the job folder."""

from __future__ import annotations

import os
import selectors
import signal
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

TYPE_CHECKING = False  # typing and dataclasses would cost the client ~30 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

_POLL = 0.1  # seconds between looks at the job folder while output is quiet
_TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when ending a launch


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


def _write(stream: Any) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


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
        self.on_stdout = on_stdout or _write(sys.stdout)
        self.on_stderr = on_stderr or _write(sys.stderr)
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
    # network.json keeps the transport chosen here, for a master that spawns the workers
    jd = JobDir.create(
        job.spec.jobs_dir, job.spec.name, job.spec.to_dict(), network={"host": job.host.name, **job.network._asdict()}
    )
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
    from .procs import start

    jd.write_client(os.uname().nodename, os.getpid())  # a master: client ends the job if this dies

    proc = start(job.argv(str(jd.path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    stderr_tail: list[str] = []
    try:
        _follow(proc, jd, follower, stderr_tail, _size(jd.events_file))
    except BaseException as exc:
        _end_launch(proc)
        why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else f"client error: {exc!r}"
        jd.settle(states.KILLED, why)
        raise
    return _result(jd, proc.returncode, stderr_tail)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _follow(
    proc: subprocess.Popen[bytes], jd: JobDir, follower: Follower, stderr_tail: list[str], offset: int = 0
) -> None:
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sinks = {proc.stdout: follower.on_stdout, proc.stderr: follower.on_stderr}
    partial = {proc.stdout: b"", proc.stderr: b""}
    for stream in sinks:
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    last_look = 0.0
    while sel.get_map():
        for key, _ in sel.select(timeout=_POLL):
            stream = key.fileobj
            chunk = os.read(stream.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                sel.unregister(stream)
                if partial[stream]:
                    _emit(sinks[stream], partial[stream] + b"\n", stream is proc.stderr, stderr_tail)
                continue
            data = partial[stream] + chunk
            end = data.rfind(b"\n") + 1
            partial[stream] = data[end:]
            if end:
                _emit(sinks[stream], data[:end], stream is proc.stderr, stderr_tail)
        if time.monotonic() - last_look >= _POLL:
            last_look = time.monotonic()
            offset = _look(jd, offset, follower)
    proc.wait()
    _look(jd, offset, follower)


def _emit(sink: Callable[[str], None], data: bytes, is_stderr: bool, tail: list[str]) -> None:
    text = data.decode("utf-8", errors="replace")
    if is_stderr:
        tail.extend(text.splitlines()[-20:])
        del tail[:-20]
    sink(text)


def _look(jd: JobDir, offset: int, follower: Follower) -> int:
    """New events, with the state when they changed it (None: unchanged since the last look)."""
    events, offset = jd.read_events(offset)
    follower.on_events(events, jd.read_state() if events else None)
    return offset


def _end_launch(proc: subprocess.Popen[bytes]) -> None:
    """End the launcher and every process it started (they share its new session)."""
    for sig, grace in ((signal.SIGTERM, _TERM_GRACE), (signal.SIGKILL, _TERM_GRACE)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # the launcher is gone; make sure nothing it started outlives it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
    if proc.returncode is None:
        proc.wait()


def _result(jd: JobDir, returncode: int, stderr_tail: list[str]) -> JobResult:
    state = jd.read_state()
    if state is None or state.get("state") not in states.ENDED:
        last = next((line for line in reversed(stderr_tail) if line.strip()), "")
        state = jd.settle(  # what was settled, even where it could not be written (a full disk)
            states.FAILED,
            f"the MPI launch exited with status {returncode} "
            f"before the job ended" + (f": {last.strip()}" if last else ""),
        )
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
