"""The job master's decisions, in plain Python: no MPI, no files, no clock of its own.

The master's loop (runtime/serve.py, over MPI) feeds it what workers say and the time; it
answers with the replies to send, keeps the job state machine (t2mpi.job.states)
STARTING -> RUNNING -> COMPLETED | FAILED | KILLED | PREEMPTED, and queues events for the job folder.
"""

from __future__ import annotations

from collections import namedtuple

from ..job.states import COMPLETED, ENDED, FAILED, KILLED, PREEMPTED, RUNNING, STARTING

TYPE_CHECKING = False  # typing and dataclasses cost every rank start-up time
if TYPE_CHECKING:
    from typing import Any

WorkerInfo = namedtuple("WorkerInfo", "id host pid node local")
WorkerInfo.__doc__ = """One worker as every worker sees it in ctx.controller.workers(): its id, host, pid,
node (index of its host among the job's hosts, in order of first worker) and local (its index
among the workers on its host)."""


def worker_list(registrations: list[tuple[str, int]]) -> list[WorkerInfo]:
    """Number hosts and local indices from each worker's (host, pid), in worker-id order."""
    nodes: dict[str, int] = {}
    counts: dict[str, int] = {}
    out = []
    for wid, (host, pid) in enumerate(registrations):
        node = nodes.setdefault(host, len(nodes))
        local = counts.get(host, 0)
        counts[host] = local + 1
        out.append(WorkerInfo(wid, host, pid, node, local))
    return out


Reply = namedtuple("Reply", "worker_id message")
Reply.__doc__ = """A message for one worker: ('released', seq) or ('barrier_failed', seq, why); notices
(NOTICES) come whenever: ('checkpoint', why) asks for a checkpoint, ('stop', version) says that
version is committed and the worker is to stop."""
NOTICES = ("checkpoint", "stop")


class _WorkerStatus:
    __slots__ = ("state", "progress", "message", "operation", "started", "ended", "result", "error", "binding", "facts")

    def __init__(self) -> None:
        self.state = STARTING
        self.progress: float | None = None
        self.message = ""
        self.operation = ""  # the data operation it is in: "reduce_by_key at wordcount.py:12"
        self.started: float | None = None
        self.ended: float | None = None
        self.result: str | None = None  # a short repr for people; the value goes to results
        self.error: str | None = None
        self.binding: dict[str, Any] | None = None  # what the worker's kernel says of its binding
        self.facts: dict[str, Any] = {}  # what the worker reported of itself (network)


class _Barrier:
    __slots__ = ("seq", "deadline", "arrived")

    def __init__(self, seq: int, deadline: float, arrived: set[int]):
        self.seq, self.deadline, self.arrived = seq, deadline, arrived


class Master:
    """The state of one job, driven by a transport."""

    def __init__(
        self,
        job_id: str,
        name: str,
        num_workers: int,
        now: float,
        master: str = "rank0",
        heartbeat_timeout: float | None = None,
        progress_timeout: float | None = None,
        committed: int | None = None,
        restarts: int = 0,
        checkpoint_timeout: float = 30.0,
    ):
        self.job_id = job_id
        self.name = name
        self.num_workers = num_workers
        self.master = master
        self.state = STARTING
        self.started = now
        self.ended: float | None = None
        self.reason = ""
        self.workers: list[WorkerInfo] = []
        self.master_info: tuple[str, int] | None = None
        self.status = [_WorkerStatus() for _ in range(num_workers)]
        self.results: dict[int, Any] = {}
        self.barriers: dict[int, _Barrier] = {}
        self.events: list[dict[str, Any]] = [{"t": now, "event": "started", "workers": num_workers}]
        self.finished = 0
        self.first_ended: int | None = None  # a worker that ended: no barrier can complete now
        self.heartbeat_timeout = heartbeat_timeout
        self.progress_timeout = progress_timeout
        self.last_seen = [now] * num_workers  # when each worker last said anything
        self.last_progress = [now] * num_workers  # when each worker last called ctx.progress()
        self._next_check = now
        self.committed = committed  # the checkpoint version a restart would use
        self.restarts = restarts
        self.written: dict[int, set[int]] = {}  # checkpoint version -> workers that wrote it
        self.commit_due: int | None = None  # complete, to be made durable by the transport
        self.checkpoint_timeout = checkpoint_timeout
        self.stopping: float | None = None  # deadline of a stop request's checkpoint
        self.stopped: set[int] = set()  # workers that ended after the stop
        self.binding: dict[str, Any] | None = None  # where the master itself is pinned
        self.binding_mode = {"mode": "none", "why": ""}  # whether the workers bind, and why
        self._clock_offsets: dict[int, float] = {}  # worker -> this clock minus its monotonic one

    # -------------------------------------------------------------- inputs

    def joined(self, workers: list[WorkerInfo], master_info: tuple[str, int], now: float) -> None:
        """Every worker registered (the transport gathers them in one collective)."""
        self.workers = workers
        self.master_info = master_info
        for st in self.status:
            st.state, st.started = RUNNING, now
        self.last_seen = [now] * self.num_workers
        self.last_progress = [now] * self.num_workers
        self.state = RUNNING
        hosts = sorted({w.host for w in workers})
        self.events.append({"t": now, "event": "joined", "workers": len(workers), "hosts": hosts})

    def heard(self, wid: int, now: float) -> None:
        """Worker `wid` said something (a heartbeat or any other message): it is alive."""
        self.last_seen[wid] = now

    def progress(self, wid: int, fraction: float | None, message: str, now: float) -> None:
        self.last_progress[wid] = now
        st = self.status[wid]
        st.progress, st.message = fraction, message
        self.events.append({"t": now, "event": "progress", "worker": wid, "fraction": fraction, "message": message})

    def operation(self, wid: int, name: str, site: str, now: float) -> None:
        """Worker `wid` is in data operation `name`, written at `site` (file:line)."""
        self.status[wid].operation = f"{name} at {site}"
        self.events.append({"t": now, "event": "operation", "worker": wid, "operation": name, "site": site})

    def operations_ended(self, wid: int, records: list[tuple[Any, ...]], clock: float, now: float) -> None:
        """Worker `wid` finished these data operations; their start and end are on its monotonic
        clock, which read `clock` when it sent them. They become operation_end events on this
        clock: shifted by the smallest (now - clock) heard from that worker so far, so they are at
        most that message's delivery delay late (the worker's clock may be another node's)."""
        offset = min(now - clock, self._clock_offsets.get(wid, now - clock))
        self._clock_offsets[wid] = offset
        for record in records:
            match record:
                case (str(name), str(site), start, end, rows_in, rows_out, shuffled, spilled):
                    self.events.append(
                        {
                            "t": now,
                            "event": "operation_end",
                            "worker": wid,
                            "operation": name,
                            "site": site,
                            "start": start + offset,
                            "end": end + offset,
                            "rows_in": rows_in,
                            "rows_out": rows_out,
                            "bytes_shuffled": shuffled,
                            "bytes_spilled": spilled,
                        }
                    )
                case _:
                    raise ValueError(f"worker {wid}: an ended operation of the wrong shape: {record!r}")

    def reported(self, wid: int, facts: dict[str, Any]) -> None:
        """Worker `wid` says how it runs (e.g. the transport environment it got)."""
        self.status[wid].facts.update(facts)

    def bound(self, wid: int, report: dict[str, Any], now: float) -> None:
        """Worker `wid` is bound; `report` has its planned and its actual cores and memory."""
        self.status[wid].binding = report
        self.events.append(
            {
                "t": now,
                "event": "bound",
                "worker": wid,
                "cores": report.get("cores"),
                "affinity": report.get("affinity"),
                "mismatches": report.get("mismatches"),
            }
        )

    def barrier(self, wid: int, seq: int, timeout: float, now: float) -> list[Reply]:
        """Worker `wid` reached its barrier number `seq`; release all when the last arrives."""
        b = self.barriers.get(seq)
        if b is None:
            b = self.barriers[seq] = _Barrier(seq, now + timeout, set())
        b.arrived.add(wid)
        if len(b.arrived) == self.num_workers:
            del self.barriers[seq]
            return [Reply(w, ("released", seq)) for w in sorted(b.arrived)]
        if self.first_ended is not None:
            return self._fail_barrier(b, f"worker {self.first_ended} ended without reaching barrier {seq}")
        return []

    def finished_ok(self, wid: int, value: Any, elapsed: float, now: float) -> list[Reply]:
        st = self.status[wid]
        if st.ended is not None:  # (a worker the job's end marked KILLED has no end of its own yet)
            raise ValueError(f"worker {wid} reported its end twice")
        st.state, st.ended = COMPLETED, now
        st.result = _short_repr(value)
        self.results[wid] = value
        if self.first_ended is None:
            self.first_ended = wid
        self.finished += 1
        self.events.append(
            {"t": now, "event": "worker_completed", "worker": wid, "elapsed": elapsed, "result": st.result}
        )
        replies = []
        for b in list(self.barriers.values()):
            replies += self._fail_barrier(b, f"worker {wid} ended without reaching barrier {b.seq}")
        if self.finished == self.num_workers:
            self._end(COMPLETED, "all workers completed", now)
        return replies

    def failed(self, wid: int, error: str, elapsed: float, now: float) -> None:
        """A worker raised: the job fails (the transport then aborts the launch)."""
        st = self.status[wid]
        st.state, st.ended, st.error = FAILED, now, error
        self.events.append({"t": now, "event": "worker_failed", "worker": wid, "elapsed": elapsed, "error": error})
        host = self.workers[wid].host if self.workers else "?"
        last = error.strip().splitlines()[-1] if error.strip() else "error"
        self._end(FAILED, f"worker {wid} on {host} failed: {last}", now)

    def checkpointed(self, wid: int, version: int, now: float) -> None:
        """Worker `wid` wrote its state for `version`; once all have, the version is due for
        commit (commit_due) and the transport calls commit() after making it durable."""
        self.written.setdefault(version, set()).add(wid)
        if len(self.written[version]) == self.num_workers:
            del self.written[version]
            if self.committed is None or version > self.committed:
                self.commit_due = version

    def commit(self, version: int, now: float) -> list[Reply]:
        """`version` is durable: a restart uses it. A stopping job ends here (PREEMPTED) and
        its workers are told to stop."""
        self.commit_due = None
        self.committed = version
        self.events.append({"t": now, "event": "checkpoint_committed", "version": version})
        if self.stopping is None or self.done:
            return []
        self._end(PREEMPTED, f"stopped on request after checkpoint {version}", now)
        return [Reply(w, ("stop", version)) for w in range(self.num_workers)]

    def stop_requested(self, why: str, now: float) -> list[Reply]:
        """Preemption or walltime: every worker is asked for a checkpoint; the job ends when it
        is committed, or after checkpoint_timeout without one."""
        if self.stopping is not None or self.done:
            return []
        self.stopping = now + self.checkpoint_timeout
        self.events.append({"t": now, "event": "stop_requested", "why": why})
        return [Reply(w, ("checkpoint", why)) for w in range(self.num_workers)]

    def worker_stopped(self, wid: int) -> None:
        self.stopped.add(wid)

    @property
    def all_stopped(self) -> bool:
        return len(self.stopped) == self.num_workers

    def kill(self, reason: str, now: float) -> None:
        self._end(KILLED, reason, now)

    def abort(self, reason: str, now: float) -> None:
        """The job cannot go on (a master error, a start timeout)."""
        self._end(FAILED, reason, now)

    def not_recorded(self, reason: str, now: float) -> None:
        """The job folder cannot be written (a full or read-only disk): the job fails, one whose
        workers all completed too (their results are not kept)."""
        if self.state == COMPLETED:
            self.state, self.reason, self.ended = FAILED, reason, now
            self.events.append({"t": now, "event": "ended", "state": FAILED, "reason": reason})
        self._end(FAILED, reason, now)

    def tick(self, now: float) -> list[Reply]:
        """Time passes: fail barriers past their deadline; once a second, look for workers that
        fell silent (heartbeat_timeout) or stopped making progress (progress_timeout)."""
        if now >= self._next_check and self.state == RUNNING:
            self._next_check = now + 1.0
            self._check_liveness(now)
        if self.stopping is not None and now >= self.stopping and not self.done:
            last = "no checkpoint" if self.committed is None else f"checkpoint {self.committed}"
            self._end(
                PREEMPTED,
                f"stop requested; the workers wrote no checkpoint within "
                f"timeouts.checkpoint {self.checkpoint_timeout:g} s (a restart uses {last})",
                now,
            )
        replies: list[Reply] = []
        for b in list(self.barriers.values()):
            if now >= b.deadline:
                missing = [w for w in range(self.num_workers) if w not in b.arrived]
                shown = ", ".join(map(str, missing[:10])) + (" …" if len(missing) > 10 else "")
                replies += self._fail_barrier(b, f"barrier {b.seq} timed out; workers not there: {shown}")
        return replies

    def _check_liveness(self, now: float) -> None:
        for wid, st in enumerate(self.status):
            if st.state != RUNNING:
                continue
            if self.heartbeat_timeout is not None and now - self.last_seen[wid] > self.heartbeat_timeout:
                self._lost(
                    wid,
                    now,
                    f"stopped heartbeating: nothing for {now - self.last_seen[wid]:.1f} s "
                    f"(timeouts.heartbeat {self.heartbeat_timeout:g} s); stopped, killed, "
                    "or stuck in a call that holds the GIL",
                )
                return
            if self.progress_timeout is not None and now - self.last_progress[wid] > self.progress_timeout:
                self._lost(
                    wid,
                    now,
                    f"is hung: no ctx.progress() for {now - self.last_progress[wid]:.1f} s "
                    f"(timeouts.progress {self.progress_timeout:g} s)",
                )
                return

    def _lost(self, wid: int, now: float, what: str) -> None:
        w = self.workers[wid] if wid < len(self.workers) else None
        st = self.status[wid]
        last = f"; last progress: {st.message!r}" if st.message else ""
        who = f"worker {wid} on {w.host if w else '?'} (pid {w.pid if w else '?'})"
        st.state, st.ended, st.error = FAILED, now, f"{who} {what}{last}"
        self.events.append({"t": now, "event": "worker_lost", "worker": wid, "error": st.error})
        self._end(FAILED, f"{who} {what}{last}", now)

    # -------------------------------------------------------------- outputs

    @property
    def done(self) -> bool:
        return self.state in ENDED

    @property
    def registration(self) -> tuple[int | None, int, str]:
        """What the master tells each worker when they join: the checkpoint the run starts from,
        the restart count, and whether to bind ("cores" or "none")."""
        return self.committed, self.restarts, self.binding_mode["mode"]

    def drain_events(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events

    def snapshot(self) -> dict[str, Any]:
        """The state file's content."""
        host, pid = self.master_info or (None, None)
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "master": {
                "mode": self.master,
                "host": host,
                "pid": pid,
                **({"binding": self.binding} if self.binding else {}),
            },
            "binding_mode": self.binding_mode,
            "num_workers": self.num_workers,
            "started": self.started,
            "ended": self.ended,
            "joined": len(self.workers),
            "finished": self.finished,
            "checkpoint": self.committed,
            "restarts": self.restarts,
            "workers": [
                {
                    "id": wid,
                    "host": w.host if w else None,
                    "pid": w.pid if w else None,
                    "node": w.node if w else None,
                    "local": w.local if w else None,
                    "state": st.state,
                    "progress": st.progress,
                    "message": st.message,
                    # when it last called ctx.progress() (or joined): `t2mpi status` shows how long
                    # a running worker has been quiet, e.g. stuck in a collective
                    "last_progress": self.last_progress[wid] if w else None,
                    "operation": st.operation,
                    "started": st.started,
                    "ended": st.ended,
                    "result": st.result,
                    "error": st.error,
                    "binding": st.binding,
                    **st.facts,
                }
                for wid, st in enumerate(self.status)
                for w in [self.workers[wid] if wid < len(self.workers) else None]
            ],
        }

    # -------------------------------------------------------------- helpers

    def _fail_barrier(self, b: _Barrier, why: str) -> list[Reply]:
        del self.barriers[b.seq]
        return [Reply(w, ("barrier_failed", b.seq, why)) for w in sorted(b.arrived)]

    def _end(self, state: str, reason: str, now: float) -> None:
        if self.done:
            return
        self.state, self.reason, self.ended = state, reason, now
        for st in self.status:
            if st.state not in ENDED:
                st.state = {COMPLETED: st.state, PREEMPTED: PREEMPTED}.get(state, KILLED)
        self.events.append({"t": now, "event": "ended", "state": state, "reason": reason})


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a user's __repr__ may raise
        text = f"<unprintable {type(value).__name__}: {exc}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"
