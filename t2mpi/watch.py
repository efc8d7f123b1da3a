"""Following a running MPI launch: its output as it comes, the job folder's events, and the start
timeout.

Both ends that start a launch follow it here: `t2mpi run` (t2mpi.client) and the batch job's
supervisor (t2mpi.scheduler.supervisor). The job master says it started with the "started" event,
which it appends once every rank (or every spawned worker) has joined it. A launch that has not
said so within timeouts.start (an mpiexec stuck resolving or reaching a host, an ssh prompt, a PMI
that never answers) is ended, its whole session, and the job is FAILED with the launcher's last
stderr lines as the reason. A launch that exits before its job ended (a rank failed in MPI init)
fails the job with the MPI's own error line as the reason (t2mpi.mpi.errorline), where its stderr
has one.
"""

from __future__ import annotations

import os
import selectors
import time

from .job import states
from .mpi.errorline import mpi_error_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from typing import Any

    from .job.folder import JobDir

POLL = 0.1  # seconds between looks at the job folder while output is quiet
TAIL = 200  # stderr lines kept for the reason of a launch that ended on its own (Open MPI's help blocks are long)
REASON_LINES = 3  # of them, how many a launch that never started names


class Launch:
    """What a followed launch left: its exit status, its last stderr lines, and `never_started`,
    the reason it was ended for not starting its master in time (None: it started, or ended by
    itself)."""

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.stderr_tail: list[str] = []
        self.started = False
        self.never_started: str | None = None

    def last_line(self) -> str:
        lines = (line.replace("\x00", "").strip() for line in reversed(self.stderr_tail))  # Open MPI ends on a NUL
        return next((line for line in lines if line), "")


def follow(
    proc: subprocess.Popen[bytes],
    jd: JobDir,
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
    on_events: Callable[[list[dict[str, Any]], dict[str, Any] | None], None] | None,
    start_timeout: float,
    offset: int = 0,
    by: str = "client",
) -> Launch:
    """Follow `proc` (a launch started with start_new_session=True and its output piped) to its
    end: its output lines to `on_stdout` and `on_stderr` as they come, the job's events from byte
    `offset` of events.jsonl on to `on_events` (with the state when they changed it). A launch
    whose master has not started within `start_timeout` seconds is ended (see end_session) and
    its job settled FAILED (by `by`, for the event)."""
    from .procs import end_session

    launch = Launch()
    deadline = time.monotonic() + start_timeout
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sinks = {proc.stdout: on_stdout, proc.stderr: on_stderr}
    partial = {proc.stdout: b"", proc.stderr: b""}
    for stream in sinks:
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    last_look = 0.0
    while sel.get_map():
        for key, _ in sel.select(timeout=POLL):
            stream = key.fileobj
            chunk = os.read(stream.fileno(), 65536)  # type: ignore[union-attr]
            if not chunk:
                sel.unregister(stream)
                if partial[stream]:
                    _emit(sinks[stream], partial[stream] + b"\n", launch if stream is proc.stderr else None)
                continue
            data = partial[stream] + chunk
            end = data.rfind(b"\n") + 1
            partial[stream] = data[end:]
            if end:
                _emit(sinks[stream], data[:end], launch if stream is proc.stderr else None)
        if time.monotonic() - last_look >= POLL:
            last_look = time.monotonic()
            offset = _look(jd, offset, launch, on_events)
            if not launch.started and launch.never_started is None and last_look > deadline:
                launch.never_started = never_started_reason(start_timeout, launch.stderr_tail)
                end_session(proc)  # its output ends with it; what is left is read above
    proc.wait()
    _look(jd, offset, launch, on_events)
    launch.returncode = proc.returncode
    if launch.never_started is not None:
        jd.settle(states.FAILED, launch.never_started, by=by)
    return launch


def writer(stream: Any) -> Callable[[str], None]:
    """A sink that writes each text to `stream` at once (flushed)."""

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


def ended_early_reason(launch: Launch) -> str:
    """Why a job whose launch exited before the job ended failed: the MPI's own error line where
    the launch's stderr has one, else its last stderr line."""
    status = f"the MPI launch exited with status {launch.returncode} before the job ended"
    said = mpi_error_line(launch.stderr_tail)
    if said:
        return f"{said} ({status})"
    last = launch.last_line()
    return status + (f": {last}" if last else "")


def never_started_reason(start_timeout: float, stderr_tail: list[str]) -> str:
    """Why a launch was ended: its master did not start in time, and what the launcher said last."""
    said = [line.strip() for line in stderr_tail if line.strip()][-REASON_LINES:]
    return f"the job master did not start within timeouts.start = {start_timeout:g} s; the MPI launch was ended" + (
        f"; the launcher said: {' | '.join(said)}" if said else " (the launcher said nothing)"
    )


def _emit(sink: Callable[[str], None], data: bytes, launch: Launch | None) -> None:
    text = data.decode("utf-8", errors="replace")
    if launch is not None:
        launch.stderr_tail.extend(text.splitlines()[-TAIL:])
        del launch.stderr_tail[:-TAIL]
    sink(text)


def _look(
    jd: JobDir,
    offset: int,
    launch: Launch,
    on_events: Callable[[list[dict[str, Any]], dict[str, Any] | None], None] | None,
) -> int:
    """New events, with the state when they changed it (None: unchanged since the last look)."""
    events, offset = jd.read_events(offset)
    if any(e.get("event") == "started" for e in events):
        launch.started = True
    if on_events is not None:
        on_events(events, jd.read_state() if events else None)
    return offset
