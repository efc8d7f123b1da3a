"""The job master's loop: feed the Master what workers say, send its replies, keep the job folder.

The same loop serves rank 0 of an MPI launch and a master inside the client process; only the
port (the communicator, and which rank is which worker) differs.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..job.folder import JobDir
    from ..job.spec import JobSpec
    from .channel import MasterPort
    from .master import Master, Reply

STATE_EVERY = 0.2  # seconds between state.json rewrites while only progress changes
STOP_LOOK_EVERY = 1.0  # seconds between looks for a stop or cancel request in the job folder


def new_master(spec: JobSpec, jd: JobDir, mode: str = "rank0", binding: tuple[str, str] = ("none", "")) -> Master:
    """The Master of a job about to run in `jd`: its timeouts, the checkpoint and restart count
    it starts from, and `binding`, the (mode, why) the launch binds its workers with
    (t2mpi.resources.autobind)."""
    from .master import Master

    master = Master(
        jd.job_id,
        spec.name,
        spec.workers,
        time.time(),
        master=mode,
        heartbeat_timeout=spec.timeouts.heartbeat,
        progress_timeout=spec.timeouts.progress,
        committed=jd.committed_version(),
        restarts=jd.restarts()["count"],
        checkpoint_timeout=spec.timeouts.checkpoint,
    )
    master.binding_mode = {"mode": binding[0], "why": binding[1]}
    return master


def serve(
    port: MasterPort,
    master: Master,
    jd: JobDir,
    stop_grace: float = 10.0,
    on_events: Callable[[list[dict[str, Any]], dict[str, Any]], None] | None = None,
    gone: Callable[[], str | None] | None = None,
) -> dict[str, Any]:
    """Run the master until the job ends; return its last state. Failed workers are told to go;
    after a stop (PREEMPTED) the workers get `stop_grace` seconds to say they stopped
    (master.all_stopped tells whether they did). `gone()`, asked once a second, says why the
    job is to end now (KILLED), e.g. the client that started it died; None: it goes on. A cancel
    request in the job folder (t2mpi cancel) ends the job KILLED, with its reason. A write into
    the job folder that fails (a full or read-only disk) fails the job, with that reason."""
    from ..procs import process_start

    # who writes the state: t2mpi status tells a lost master by its pid and start time
    me = {"pid_start": process_start(os.getpid())}
    try:
        last = _persist(jd, master, None, on_events, me)
        _loop(port, master, jd, last, on_events, me, gone)
        if master.results:
            jd.write_results(master.results)
    except OSError as exc:
        master.not_recorded(f"the job folder: {jd.not_written(exc)}", time.time())
    snapshot = master.snapshot()
    try:
        _persist(jd, master, None, on_events, me)
    except OSError as exc:  # the state file stays as it was, whole; say why it is not the end
        print(
            f"t2mpi.launch: job {jd.job_id}: {master.state} ({master.reason}), and its end cannot be recorded: "
            f"{jd.not_written(exc)}",
            file=sys.stderr,
            flush=True,
        )
    _after(port, master, jd, snapshot, stop_grace)
    return snapshot


def _loop(
    port: MasterPort,
    master: Master,
    jd: JobDir,
    last: tuple[float, str, bool],
    on_events: Callable[[list[dict[str, Any]], dict[str, Any]], None] | None,
    me: dict[str, Any],
    gone: Callable[[], str | None] | None,
) -> None:
    """Until the job ends: the workers' messages, the master's replies, checkpoint commits, the
    requests in the job folder, the state file."""
    next_look = 0.0
    while not master.done:
        replies: list[Reply] = []
        for _source, message in port.receive(wait=0.5):
            replies += dispatch(master, message, time.time())
        if master.commit_due is not None:  # durable first, then the master (and workers) rely on it
            jd.commit_checkpoint(master.commit_due, master.num_workers)
            replies += master.commit(master.commit_due, time.time())
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + STOP_LOOK_EVERY
            why = jd.stop_request()
            if why is not None:
                replies += master.stop_requested(why, time.time())
            why = jd.cancel_request() or (gone() if gone is not None else None)
            if why is not None:
                master.kill(why, time.time())
        replies += master.tick(time.time())
        for reply in replies:
            port.send(reply.worker_id, reply.message)
        if not master.done:  # the final state is written after the results (serve)
            last = _persist(jd, master, last, on_events, me)


def _after(port: MasterPort, master: Master, jd: JobDir, snapshot: dict[str, Any], stop_grace: float) -> None:
    """The job has ended: tell failed workers to abort; after a stop, wait for the workers."""
    from ..job.states import COMPLETED, FAILED, PREEMPTED

    if master.state == COMPLETED:  # no restart can use the persisted data sets any more
        jd.drop_persisted()
    if master.state == FAILED:  # a failed worker waits for this before it ends its launch
        for wid, w in enumerate(snapshot["workers"]):
            if w["state"] == FAILED:
                port.send(wid, ("abort",))
    if master.state == PREEMPTED and master.committed is not None:
        deadline = time.monotonic() + stop_grace
        while not master.all_stopped and time.monotonic() < deadline:
            for _source, message in port.receive(wait=min(0.5, max(0.0, deadline - time.monotonic()))):
                match message:
                    case ("stopped", wid):
                        master.worker_stopped(wid)


def dispatch(master: Master, message: tuple[Any, ...], now: float) -> list[Reply]:
    """Hand one worker message (runtime.channel.TO_MASTER) to the master; its replies."""
    _kind, who, *_fields = message
    master.heard(who, now)
    match message:
        case ("heartbeat", _wid):
            return []
        case ("barrier", wid, seq, timeout):
            return master.barrier(wid, seq, timeout, now)
        case ("progress", wid, fraction, text):
            master.progress(wid, fraction, text, now)
        case ("operation", wid, name, site):
            master.operation(wid, name, site, now)
        case ("operations_ended", wid, records, clock):
            master.operations_ended(wid, records, clock, now)
        case ("report", wid, facts):
            master.reported(wid, facts)
        case ("bound", wid, report):
            master.bound(wid, report, now)
        case ("completed", wid, value, elapsed):
            return master.finished_ok(wid, value, elapsed, now)
        case ("failed", wid, error, elapsed):
            master.failed(wid, error, elapsed, now)
        case ("checkpointed", wid, version):
            master.checkpointed(wid, version, now)
        case ("stopped", wid):
            master.worker_stopped(wid)
        case _:
            raise RuntimeError(f"unknown control message {message!r} from worker {who}")
    return []


def _persist(
    jd: JobDir,
    master: Master,
    last: tuple[float, str, bool] | None,
    on_events: Callable[[list[dict[str, Any]], dict[str, Any]], None] | None,
    me: dict[str, Any],
) -> tuple[float, str, bool]:
    """Append new events; rewrite state.json at once when the job's state changes, else at
    most every 0.2 s while something happened (at 10,000 workers a rewrite costs 0.1 s)."""
    events = master.drain_events()
    jd.append_events(events)
    now = time.monotonic()
    pending = bool(events) or (last is not None and last[2])
    if last is None or master.state != last[1] or (pending and now - last[0] >= STATE_EVERY):
        snapshot = master.snapshot()
        snapshot["master"].update(me, cpu_seconds=time.process_time())  # and the master's own cost
        jd.write_state(snapshot)
        if on_events is not None:
            on_events(events, snapshot)
        return (now, master.state, False)
    if on_events is not None and events:
        on_events(events, None)
    return (last[0], last[1], pending)
