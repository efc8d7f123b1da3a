"""Jobs from a login node: submit, status, list, logs, cancel. The job folder is the record; the
scheduler is asked only while the master's state file is not final. A local job (t2mpi run) has
no scheduler: while its state is not final, its master's process is looked at on its host."""

from __future__ import annotations

import os
import shlex
import signal
import time

from ..errors import JobError, T2mpiError
from ..job import states
from ..job.folder import JobDir
from ..net import first_node
from ..procs import CommandError, alive, mentioning, mentions, process_start, send_signal, wait_gone
from ..procs import run as run_command
from ..scheduler import scripts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from ..client import PreparedJob

# Scheduler states (Slurm's words; PBS is mapped onto them) that end a job, and the t2mpi state
# the job gets when the master did not write one.
_ENDED = {
    "COMPLETED": states.FAILED,
    "FAILED": states.FAILED,
    "TIMEOUT": states.FAILED,
    "OUT_OF_MEMORY": states.FAILED,
    "NODE_FAIL": states.FAILED,
    "BOOT_FAIL": states.FAILED,
    "DEADLINE": states.FAILED,
    "PREEMPTED": states.KILLED,
    "CANCELLED": states.KILLED,
    "REVOKED": states.KILLED,
}
_CANCEL_WAIT = 30.0  # seconds for a cancelled job to end
_CANCEL_GRACE = 10.0  # seconds for a local job's master to end a cancelled job before it is signalled
_DRAIN = 30.0  # seconds to read a finished job's last output


class SchedulerError(T2mpiError):
    exit_code = 1


def script(job: PreparedJob, job_dir: str) -> str:
    """The batch script for a checked job (t2mpi script prints it; submit writes it)."""
    return scripts.get(job.spec.batch.kind).script(
        job.spec, job_dir, job.mpi, job.python, job.host, first_node.described(job.network)
    )


def submit(job: PreparedJob) -> tuple[JobDir, str]:
    """Make the job folder with spec and script, submit the script, record the scheduler's id.
    A refused submission leaves no folder behind; its error shows the command and the answer."""
    sched = scripts.get(job.spec.batch.kind)
    final = JobDir.new_path(job.spec.jobs_dir, job.spec.name)
    # mpi.json keeps the MPI's facts, for the transport's choice on the job's first node
    jd = JobDir.make(final, job.spec.to_dict(), script=script(job, final), mpi=first_node.record(job.mpi))
    try:
        return jd, _submit_script(jd, sched)
    except SchedulerError:
        jd.remove()
        raise


def resubmit(jd: JobDir) -> str:
    """Submit a submitted job's batch script again (t2mpi restart); it goes on from its last
    committed checkpoint. Returns the scheduler's new id."""
    record = jd.read_scheduler()
    assert record is not None
    jd.begin_restart("t2mpi restart", by="t2mpi restart")
    try:
        return _submit_script(jd, scripts.get(record["kind"]))
    except SchedulerError as exc:
        jd.settle(states.FAILED, f"t2mpi restart: {exc}")
        raise


def _submit_script(jd: JobDir, sched: scripts.Scheduler) -> str:
    """Submit the folder's job.sh; record and return the scheduler's id."""
    argv = sched.submit_argv(jd.script_file)
    try:
        done = run_command(argv, timeout=120, cwd=jd.path)
        sched_id = sched.parse_submit(done.stdout)
    except (CommandError, ValueError) as exc:
        if isinstance(exc, CommandError) and exc.returncode is None and "not found" in str(exc):
            raise SchedulerError(
                f"{argv[0]} is not on PATH: is this a {sched.kind} login node? "
                f"(scheduler.kind or --scheduler chooses another)"
            ) from None
        raise SchedulerError(f"{sched.kind} refused the job: {exc}") from None
    jd.write_scheduler(sched.kind, sched_id)
    jd.append_events([{"t": time.time(), "event": "submitted", "scheduler": sched.kind, "id": sched_id}])
    return sched_id


def find(name: str, jobs_dir: str) -> JobDir:
    """A job named by its folder or its t2mpi job id (looked up in jobs_dir)."""
    for path in (name, os.path.join(jobs_dir, name)):
        if os.path.isfile(os.path.join(path, "spec.json")):
            return JobDir(path)
    if os.path.isdir(name):
        raise JobError(f"{name}: not a t2mpi job folder (no spec.json)")
    raise JobError(f"no job '{name}' in {jobs_dir} (give a job id from `t2mpi list` or a job folder)")


def scheduler_view(jd: JobDir) -> tuple[str, str] | None:
    """What the scheduler says of the job now: (state, reason), or None when it does not know it."""
    record = jd.read_scheduler()
    if record is None:
        return None
    sched = scripts.get(record["kind"])
    try:
        done = run_command(sched.status_argv(record["id"]), timeout=60, check=False)
    except CommandError as exc:
        raise SchedulerError(f"cannot ask {record['kind']} about job {record['id']}: {exc}") from None
    return sched.parse_status(done.stdout) if done.returncode == 0 else None


def status(jd: JobDir) -> dict[str, Any]:
    """The job's state, the master's state file merged with the scheduler's view. The state file is
    the truth once it is final; a job the scheduler ended without one is settled here."""
    state = jd.read_state()
    if state is not None and state.get("state") in states.FINAL:
        return state
    record = jd.read_scheduler()
    if record is None:
        return local_view(jd, state)
    view = scheduler_view(jd)
    if view is None:
        state = jd.read_state()  # the job may have ended between the two looks
        if state is not None and state.get("state") in states.FINAL:
            return state
        return jd.settle(
            states.FAILED,
            f"{record['kind']} no longer knows job {record['id']} and its master wrote no end",
            by=record["kind"],
        )
    sched_state, reason = view
    if sched_state in _ENDED:
        return jd.settle(
            _ENDED[sched_state],
            f"{record['kind']} job {record['id']}: {sched_state}"
            + (f" ({reason})" if reason not in ("None", "") else ""),
            by=record["kind"],
        )
    merged = dict(state or {"job_id": jd.job_id, "workers": [], "state": states.STARTING, "reason": ""})
    if state is None:
        merged["state"] = states.PENDING if sched_state in ("PENDING", "CONFIGURING") else states.STARTING
        merged["reason"] = f"{record['kind']} job {record['id']}: {sched_state}" + (
            f" ({reason})" if reason not in ("None", "") else ""
        )
    merged["scheduler"] = {**record, "state": sched_state, "reason": reason}
    return merged


def local_view(jd: JobDir, state: dict[str, Any] | None) -> dict[str, Any]:
    """A local job's state (it has no scheduler). One not ended whose master process is gone from
    this host, or whose pid is now another process's (another start time), is settled LOST here;
    one whose master is on another host cannot be looked at from here: the state says so
    ("unverified") and stays. Before its master has recorded itself, a job whose client (t2mpi
    run) is gone from this host, with no process left that names the job folder, is LOST too."""
    if state is None:
        state = {"job_id": jd.job_id, "state": states.STARTING, "reason": "", "workers": []}
    master = state.get("master") or {}
    host, pid = master.get("host"), master.get("pid")
    here = os.uname().nodename
    if state.get("state") in states.ENDED:
        return state
    if not host or not pid:
        client = jd.read_client() or {}
        if client.get("host") != here or not client.get("pid") or alive(int(client["pid"])) or mentioning(jd.path):
            return state
        why = (
            f"its client pid {client['pid']} on {here} is gone, no process of the job is left, and no end was recorded"
        )
        return jd.settle(states.LOST, why, by="t2mpi status", keep=states.ENDED)
    if host != here:
        return dict(
            state, unverified=f"its master (pid {pid}) is on {host}: whether it still runs is unknown from {here}"
        )
    started = process_start(int(pid))
    if started is not None and master.get("pid_start") in (None, started):
        return state
    other = "" if started is None else " (the pid is another process's now)"
    return jd.settle(
        states.LOST,
        f"master pid {pid} on {host} is gone{other}, and it recorded no end",
        by="t2mpi status",
        keep=states.ENDED,
    )


def cancel(jd: JobDir) -> dict[str, Any]:
    """Cancel a job; its state ends KILLED. A submitted job: scancel / qdel. A local one (t2mpi run):
    its master is asked to end it; if it has not within _CANCEL_GRACE, its client and launch are
    signalled (TERM, then KILL)."""
    current = status(jd)
    if current.get("state") in states.FINAL:
        raise JobError(f"job {jd.job_id} already ended ({current['state']}): nothing to cancel")
    record = jd.read_scheduler()
    if record is None:
        return _cancel_local(jd, current)
    sched = scripts.get(record["kind"])
    run_command(sched.cancel_argv(record["id"]), timeout=60)
    deadline = time.monotonic() + _CANCEL_WAIT
    while time.monotonic() < deadline:
        view = scheduler_view(jd)
        if view is None or view[0] in _ENDED:
            break
        time.sleep(0.2)
    return jd.settle(states.KILLED, f"cancelled ({shlex.join(sched.cancel_argv(record['id']))})", by=record["kind"])


def _cancel_local(jd: JobDir, current: dict[str, Any]) -> dict[str, Any]:
    """End a job started by t2mpi run on this host: the cancel request first (the master ends the
    job KILLED and its launch aborts); then SIGTERM to the client (it ends the launch it started)
    and the master; then SIGKILL to them and the workers. Returns once none of them is left, with
    the job settled KILLED (the request's reason, "cancelled (t2mpi cancel on HOST)")."""
    here = os.uname().nodename
    master = current.get("master") or {}
    client = jd.read_client() or {}
    for who in (master, client):
        if who.get("host") not in (None, here):
            raise JobError(f"job {jd.job_id} runs on {who['host']}, not here ({here}): run t2mpi cancel there")
    try:
        jd.request_cancel(f"cancelled (t2mpi cancel on {here})")
    except OSError as exc:
        raise JobError(f"job {jd.job_id}: cannot ask it to end: {jd.not_written(exc)}") from None
    # only processes that are the job's: a pid may be another process's by now
    first = [int(client["pid"])] if client.get("pid") and mentions(int(client["pid"]), "t2mpi") else []
    if master.get("pid") and process_start(int(master["pid"])) in (master.get("pid_start"), None):
        first.append(int(master["pid"]))
    workers = [int(w["pid"]) for w in current.get("workers", []) if w.get("pid") and w.get("host") == here]
    pids = [p for p in dict.fromkeys(first + workers) if p != os.getpid() and (p in first or mentions(p, jd.path))]
    left = wait_gone(pids, _CANCEL_GRACE, poll=0.1)
    for sig, whom in ((signal.SIGTERM, first), (signal.SIGKILL, pids)):
        if not left:
            break
        for pid in whom:
            send_signal(pid, sig)
        left = wait_gone(pids, _CANCEL_GRACE, poll=0.1)
    state = jd.settle(states.KILLED, "cancelled", by="t2mpi cancel")  # as the request says, unless it ended so
    if left:
        raise JobError(f"job {jd.job_id}: processes {', '.join(map(str, left))} are still there after SIGKILL")
    return state


def list_jobs(jobs_dir: str) -> list[dict[str, Any]]:
    """One row per job folder, newest last; folders being made or removed are hidden. A local job
    whose master is gone is settled LOST (local_view); "unverified" says why a state could not be
    checked from here."""
    rows = []
    try:
        names = sorted(os.listdir(jobs_dir))
    except FileNotFoundError:
        return rows
    for name in names:
        jd = JobDir(os.path.join(jobs_dir, name))
        if name.startswith(".") or not os.path.isfile(jd.spec_file):
            continue
        try:
            state = jd.read_state() or {}
            record = jd.read_scheduler() or {}
            spec = jd.read_spec()
            if not record:
                state = local_view(jd, state or None)  # a lost master is settled LOST here too
        except JobError as exc:
            rows.append({"job_id": name, "state": "UNREADABLE", "reason": str(exc)})
            continue
        rows.append(
            {
                "job_id": name,
                "state": state.get("state") or (states.SUBMITTED if record else states.STARTING),
                "workers": spec.get("workers"),
                "scheduler": record.get("kind", "-"),
                "scheduler_id": record.get("id", "-"),
                "started": state.get("started"),
                "ended": state.get("ended"),
                "unverified": state.get("unverified"),
            }
        )
    return rows


def clean(jobs_dir: str, older_than: float, wanted: tuple[str, ...], now: float, dry_run: bool) -> list[dict[str, Any]]:
    """Remove the job folders that have ended for good (a state in `wanted`, all of them FINAL)
    at least `older_than` seconds ago; a job that may still run (no end, or PREEMPTED: it may be
    requeued) is never touched. Returns a row per folder removed (or, dry_run, that would be)."""
    done = []
    for row in list_jobs(jobs_dir):
        if row["state"] not in wanted or row["state"] not in states.FINAL:
            continue
        ended = row.get("ended")
        if ended is None or now - float(ended) < older_than:
            continue
        jd = JobDir(os.path.join(jobs_dir, row["job_id"]))
        if not dry_run and (jd.read_state() or {}).get("state") not in wanted:
            continue  # it changed since the listing: leave it
        row["bytes"] = jd.size()
        if not dry_run:
            jd.remove()
        done.append(row)
    return done


def follow(
    jd: JobDir,
    out: Callable[[str], None],
    on_state: Callable[[dict[str, Any]], None],
    files: Sequence[str],
    poll: float = 0.5,
) -> dict[str, Any]:
    """Print what `files` gain until the job ends; return its final state. A local job's
    PREEMPTED is its end too (nothing requeues it; `t2mpi restart` continues it); a batch
    job's is not while its scheduler may requeue it."""
    offsets = dict.fromkeys(files, 0)
    last_asked = 0.0
    current: dict[str, Any] = {}
    final = states.FINAL if jd.read_scheduler() is not None else states.ENDED
    while True:
        for path in files:
            offsets[path] = _tail(path, offsets[path], out)
        state = jd.read_state()
        if state is not None and state.get("state") in final:
            current = state
        elif time.monotonic() - last_asked >= max(poll, 2.0) or state is None:
            last_asked = time.monotonic()
            current = status(jd)
        else:
            current = state
        on_state(current)
        if current.get("state") in final:
            _drain(jd, files, offsets, out)
            return current
        time.sleep(poll)


def _drain(jd: JobDir, files: Sequence[str], offsets: dict[str, int], out: Callable[[str], None]) -> None:
    """The master wrote the end; the batch job may still be writing its output. Keep reading
    until the scheduler says the job has ended (at most _DRAIN seconds)."""
    deadline = time.monotonic() + _DRAIN
    while True:
        for path in files:
            offsets[path] = _tail(path, offsets[path], out)
        if jd.read_scheduler() is None or time.monotonic() > deadline:
            return
        view = scheduler_view(jd)
        if view is None or view[0] in _ENDED:
            for path in files:
                offsets[path] = _tail(path, offsets[path], out)
            return
        time.sleep(0.2)


def _tail(path: str, offset: int, out: Callable[[str], None]) -> int:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b"\n") + 1
    if end:
        out(data[:end].decode("utf-8", errors="replace"))
    return offset + end


def log_files(jd: JobDir, worker: int | None) -> list[str]:
    if worker is not None:
        return [jd.worker_log(worker)]
    if os.path.exists(jd.batch_out) or jd.read_scheduler() is not None:
        return [jd.batch_out]
    names = (
        sorted(os.listdir(jd.logs_dir), key=lambda n: int(n.split("-")[1].split(".")[0]))
        if os.path.isdir(jd.logs_dir)
        else []
    )
    return [os.path.join(jd.logs_dir, n) for n in names]
