"""The round loop under ctx.stream.run(): bulk-synchronous micro-batch rounds over MPI.

Each round every node of the plan runs once, in the order the user made them (a node's inputs come
before it): the sources read up to `batch` records of each of their partitions on this worker, the
narrow operators run, key_by's shuffle moves the round's records in one alltoall, the windows update
and emit what the watermark closed, the sinks write. A round ends with one small guarded allgather:
whether any worker was asked to stop, whether a checkpoint is due, whether every source ended.
Rounds bound the memory (a slow sink slows the round; nothing queues), and a checkpoint between two
rounds is aligned on every worker for free.

A failure in a node's local work is kept until the round's next collective, which carries it to every
worker (the batch package's guarded collectives), so that every worker raises it and none waits.
"""

from __future__ import annotations

import math
import time

from ..data.errors import DataError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATE_KEY = "t2mpi.stream"
OPERATION = "stream.run"  # the operation a running stream reports; `t2mpi run` makes the first Ctrl-C a stop for it
STATUS_EVERY = 3.0  # seconds between live-status samples


def streaming(state: dict[str, Any] | None) -> bool:
    """Whether a job's state (state.json) shows its workers running a stream."""
    workers = (state or {}).get("workers", [])
    return bool(workers) and any(str(w.get("operation", "")).startswith(OPERATION + " at ") for w in workers)


class Hooks:
    """What the engine needs of the job around it; outside a job every hook is None (no checkpoints,
    no stop requests)."""

    def __init__(
        self,
        checkpoint=None,
        next_version=None,
        committed=None,
        asked=None,
        restored=None,
        progress=None,
        operation=None,
    ):
        self.checkpoint, self.next_version, self.committed = checkpoint, next_version, committed
        self.asked, self.restored, self.progress = asked, restored, progress
        self.operation = operation  # operation(name, site): what the worker is in, for the live status


class Engine:
    def __init__(self, stream: Any):
        self.stream = stream
        self.exchange = stream.exchange
        self.batch = stream.batch
        self.failure: BaseException | None = None
        self.rounds = 0
        self.checkpoints = 0
        self.blocked = 0.0  # seconds in collectives and sinks: back-pressure

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def guarded(self, produce: Any) -> Any:
        def run() -> Any:
            self.raise_failure()
            return produce()

        return run

    # -- a round ------------------------------------------------------------------------------
    def round(self, nodes: list[Any]) -> None:
        self.rounds += 1
        for node in nodes:
            chunks = [c for i in node.inputs for c in i.out]
            if node.collective or getattr(node, "is_sink", False):
                start = time.monotonic()
                if node.collective:
                    node.out = node.step(chunks, self)
                else:
                    node.out = self._local(node, chunks)
                self.blocked += time.monotonic() - start
            else:
                node.out = self._local(node, chunks)

    def _local(self, node: Any, chunks: list[Any]) -> list[Any]:
        if self.failure is not None:
            return []
        return self.attempt(node.where, node.step, chunks, self)

    def attempt(self, where: Any, fn: Any, *args: Any) -> Any:
        """fn(*args), a node's local work: a failure is kept (named at `where`) for the round's
        next collective to carry to every worker, and [] is returned (the node gives nothing)."""
        try:
            return fn(*args)
        except DataError as exc:
            self.failure = exc
        except Exception as exc:
            self.failure = where.failed(exc)
            self.failure.__cause__ = exc
        return []

    # -- the run ------------------------------------------------------------------------------
    def run(self, nodes: list[Any], checkpoint_every: float | None, hooks: Hooks) -> dict[str, Any]:
        stream = self.stream
        sources = stream.sources
        sinks = [n for n in nodes if getattr(n, "is_sink", False)]
        self._restore(nodes, sources, hooks)
        where = stream.where("run", stream.run_site)
        if hooks.operation is not None:
            hooks.operation(OPERATION, stream.run_site)
        last_checkpoint = last_poll = last_status = time.monotonic()
        waiting: int | None = None  # a checkpoint version the sinks wait on
        status = _Status(self, sources, nodes)
        idle_wait, last_read = 0.0, -1
        while True:
            self.round(nodes)
            now = time.monotonic()
            asked = bool(hooks.asked and hooks.asked())
            due = (
                hooks.checkpoint is not None
                and checkpoint_every is not None
                and now - last_checkpoint >= checkpoint_every
            )
            done = all(s.done for s in sources)
            found = [s.discover() for s in sources] if stream.rank == 0 else None
            read = sum(s.records_in for s in sources)
            mine = (asked, due, done, found, read != last_read)
            last_read = read
            flags = self.exchange.allgather(where, self.guarded(lambda mine=mine: mine))
            for s, names in zip(sources, flags[0][3]):
                if names:
                    s.grow(names)
            if waiting is not None and now - last_poll >= 0.2:
                last_poll = now
                committed = hooks.committed()
                if committed is not None:  # each sink publishes what it committed, though the newest
                    for s in sinks:  # checkpoint may still be on its way (under load, always one is)
                        s.committed(committed)
                    if committed >= waiting:
                        waiting = None
            if hooks.progress is not None and now - last_status >= STATUS_EVERY:
                last_status = now
                hooks.progress(status.line(now))
            if all(f[2] for f in flags):
                break
            idle_wait = self._idle_wait(any(f[4] for f in flags), idle_wait)
            if any(f[0] for f in flags) and hooks.checkpoint is None:  # outside a job: stop here
                break
            if any(f[0] for f in flags) or any(f[1] for f in flags):
                waiting = self._checkpoint(nodes, sources, sinks, hooks)
                last_checkpoint = time.monotonic()
        if hooks.checkpoint is not None:
            version = self._checkpoint(nodes, sources, sinks, hooks)
            self._wait_commit(version, hooks, sinks)
        else:
            for s in sinks:
                s.ended()
        for s in sources:
            s.close()
        if hooks.progress is not None:
            hooks.progress(status.line(time.monotonic()))
        return self._summary(nodes, sources, where)

    def _idle_wait(self, read_any: bool, wait: float) -> float:
        """After a round that read nothing on any worker (sources that follow, waiting for more), a
        pause that grows to 50 ms, so that waiting costs no core; a record anywhere resets it."""
        if read_any:
            return 0.0
        wait = min(max(wait * 2, 0.001), 0.05)
        time.sleep(wait)
        return wait

    def _checkpoint(self, nodes: list[Any], sources: list[Any], sinks: list[Any], hooks: Hooks) -> int:
        version = hooks.next_version()
        for s in sinks:
            s.checkpointed(version)
        state = {
            "rounds": self.rounds,
            "sources": [s.state() for s in sources],
            "nodes": [n.state() for n in nodes],
            "kinds": [n.where.op for n in nodes],
        }
        self.checkpoints += 1
        try:
            return hooks.checkpoint({STATE_KEY: state})
        except BaseException:  # Preempted (the job stops after this committed checkpoint), or a failure
            committed = hooks.committed()
            if committed is not None and committed >= version:
                for s in sinks:
                    s.committed(committed)
            raise

    def _wait_commit(self, version: int, hooks: Hooks, sinks: list[Any], timeout: float = 120.0) -> None:
        start = time.monotonic()
        deadline = start + timeout
        delay = 0.001
        while True:
            committed = hooks.committed()
            if committed is not None and committed >= version:
                for s in sinks:
                    s.committed(committed)
                return
            now = time.monotonic()
            if now > deadline:
                raise DataError(
                    f"run: checkpoint {version} was not committed within {timeout:g} s; its output stays uncommitted"
                )
            time.sleep(delay)  # polling the job folder's commit record, with a backoff: a look every
            delay = min(delay * 2, 0.005 if now - start < 1.0 else 0.05)  # 5 ms while a commit is due

    def _restore(self, nodes: list[Any], sources: list[Any], hooks: Hooks) -> None:
        restored = hooks.restored() if hooks.restored is not None else None
        if not isinstance(restored, dict) or STATE_KEY not in restored:
            for n in nodes:
                if getattr(n, "is_sink", False):
                    n.fresh()
            return
        state = restored[STATE_KEY]
        kinds = [n.where.op for n in nodes]
        if state["kinds"] != kinds or len(state["sources"]) != len(sources):
            raise DataError(
                f"run at {self.stream.run_site}: the checkpoint holds a stream of {state['kinds']}, this job makes {kinds}; "
                "a restart must build the same stream"
            )
        self.rounds = state["rounds"]
        for s, st in zip(sources, state["sources"]):
            s.restore(st)
        for n, st in zip(nodes, state["nodes"]):
            if st is not None:
                n.restore(st)

    def _summary(self, nodes: list[Any], sources: list[Any], where: Any) -> dict[str, Any]:
        from .sinks import Collect

        mine = {
            "events_in": sum(s.records_in for s in sources),
            "events_out": sum(n.count for n in nodes if getattr(n, "is_sink", False)),
            "late": sum(getattr(n, "late_count", 0) for n in nodes),
            "collected": [n.items for n in nodes if isinstance(n, Collect)],
        }
        every = self.exchange.allgather(where, lambda: mine)
        collected = [[r for w in every for r in w["collected"][i]] for i in range(len(mine["collected"]))]
        for i, n in enumerate(n for n in nodes if isinstance(n, Collect)):
            n.records = collected[i]
        return {
            "workers": [{k: w[k] for k in ("events_in", "events_out", "late")} for w in every],
            "events_in": sum(w["events_in"] for w in every),
            "events_out": sum(w["events_out"] for w in every),
            "late": sum(w["late"] for w in every),
            "rounds": self.rounds,
            "checkpoints": self.checkpoints,
            "collected": collected,
        }


_FIGURES = None


def status_figures(message: str) -> dict[str, float] | None:
    """The figures of a live-status line (_Status.line), for `t2mpi report`: in, out (events/s),
    and, when the stream has windows, watermark, lag (s) and windows; blocked (a share, 0-1)."""
    import re

    global _FIGURES
    if _FIGURES is None:
        _FIGURES = re.compile(
            r"stream: (?P<in>[\d.]+) ev/s in, (?P<out>[\d.]+) ev/s out"
            r"(?:, watermark (?P<watermark>\S+) \(lag (?P<lag>\S+) s\), (?P<windows>\d+) open windows)?"
            r", (?P<blocked>\d+)% blocked$"
        )
    m = _FIGURES.match(message or "")
    if m is None:
        return None
    out = {k: float(v) for k, v in m.groupdict().items() if v is not None}
    out["blocked"] /= 100
    return out


class _Status:
    """The live-status line: events/s in and out since the last sample, the watermark and its lag
    behind the newest event, open windows, and the share of time blocked in shuffles and sinks."""

    def __init__(self, engine: Engine, sources: list[Any], nodes: list[Any]):
        self.engine, self.sources, self.nodes = engine, sources, nodes
        self.t = time.monotonic()
        self.events_in = self.events_out = 0
        self.blocked = 0.0

    def line(self, now: float) -> str:
        from .windowing import Window

        events_in = sum(s.records_in for s in self.sources)
        events_out = sum(n.count for n in self.nodes if getattr(n, "is_sink", False))
        dt = max(now - self.t, 1e-9)
        rate_in, rate_out = (events_in - self.events_in) / dt, (events_out - self.events_out) / dt
        blocked = (self.engine.blocked - self.blocked) / dt
        self.t, self.events_in, self.events_out, self.blocked = now, events_in, events_out, self.engine.blocked
        text = f"stream: {rate_in:.0f} ev/s in, {rate_out:.0f} ev/s out"
        windows = [n for n in self.nodes if isinstance(n, Window) and n.watermark is not None]
        if windows:
            wm = min(w.watermark.value for w in windows)
            newest = max(w.newest() for w in windows)  # a processing-time window's is its clock: lag 0
            lag = newest - wm if math.isfinite(wm) and math.isfinite(newest) else math.inf
            text += f", watermark {wm:.3f} (lag {lag:.3f} s), {sum(w.open_windows() for w in windows)} open windows"
        return text + f", {100 * min(blocked, 1.0):.0f}% blocked"
