"""What people see on the client: status lines, event lines, the summary, the bindings table.

(What a rank prints, prefixed, is t2mpi.runtime.output.)
"""

from __future__ import annotations

import sys
import time

from .job import states

TYPE_CHECKING = False  # typing costs every rank start-up time; annotations are strings
if TYPE_CHECKING:
    from typing import Any, TextIO


def _counts(state: dict[str, Any]) -> str:
    n = state.get("num_workers", 0)
    return f"joined {state.get('joined', 0)}/{n} · finished {state.get('finished', 0)}/{n}"


def _elapsed(state: dict[str, Any], now: float | None = None) -> float:
    start = state.get("started") or 0.0
    end = state.get("ended") or (now if now is not None else time.time())
    return max(0.0, end - start)


def status_line(state: dict[str, Any] | None, job_id: str, now: float | None = None) -> str:
    """One line for a terminal, rewritten in place: 'hello-…: RUNNING · joined 4/4 · …'."""
    if state is None:
        return f"{job_id}: STARTING · waiting for the MPI launch"
    line = f"{job_id}: {state['state']} · {_counts(state)} · {_elapsed(state, now):.1f} s"
    busy = [w for w in state.get("workers", []) if w.get("message") and w["state"] == states.RUNNING]
    if busy:
        w = busy[0]
        frac = f" {w['progress'] * 100:.0f}%" if w.get("progress") is not None else ""
        line += f" · w{w['id']}{frac} {w['message']}"
    running = [w for w in state.get("workers", []) if w.get("operation") and w["state"] == states.RUNNING]
    if running:
        names: dict[str, list[int]] = {}
        for w in running:
            names.setdefault(w["operation"].split(" at ", 1)[0], []).append(w["id"])
        line += " · " + ", ".join(f"{name} (w{','.join(map(str, ids))})" for name, ids in names.items())
    return line


def event_line(event: dict[str, Any]) -> str | None:
    """A line for a log (not a terminal) for the events worth a line; None for the rest."""
    kind = event.get("event")
    if kind == "joined":
        return f"all {event['workers']} workers joined on {', '.join(event.get('hosts', []))}"
    if kind == "worker_completed":
        return f"worker {event['worker']} completed in {event['elapsed']:.2f} s"
    if kind == "worker_failed":
        last = (event.get("error") or "").strip().splitlines()[-1:] or ["error"]
        return f"worker {event['worker']} FAILED: {last[0]}"
    if kind == "ended":
        return f"job {event['state']}: {event.get('reason', '')}"
    return None


def summary(state: dict[str, Any], now: float | None = None) -> str:
    """The one-screen summary: state, wall time, each worker's result or error; a running
    worker, how long since its last ctx.progress() (a stuck one shows it growing)."""
    n = state.get("num_workers", 0)
    count = "" if n is None else f"({n} worker{'s' if n != 1 else ''}) "  # None: no master ever said
    lines = [f"job {state['job_id']}: {state['state']} in {_elapsed(state):.2f} s {count}— {state.get('reason', '')}"]
    workers = state.get("workers", [])
    shown = workers if len(workers) <= 20 else workers[:10] + workers[-5:]
    if workers:
        lines.append(f"  {'worker':>6}  {'host':<16} {'state':<10} {'time':>8}  result / error")
    for i, w in enumerate(shown):
        took = (w["ended"] - w["started"]) if w.get("ended") and w.get("started") else None
        what = w.get("result") if w["state"] == states.COMPLETED else _last_line(w.get("error"))
        if w["state"] == states.RUNNING and state["state"] == states.RUNNING and w.get("last_progress"):
            what = _quiet_for(w, time.time() if now is None else now)
        lines.append(
            f"  {w['id']:>6}  {str(w.get('host') or '-'):<16} {w['state']:<10} "
            f"{(f'{took:.2f} s' if took is not None else '-'):>8}  {what or ''}"
        )
        if i == 9 and len(workers) > 20:
            lines.append(f"  {'…':>6}  ({len(workers) - 15} more)")
    return "\n".join(lines)


def _quiet_for(worker: dict[str, Any], now: float) -> str:
    """'no ctx.progress() for 95 s (last: loading)': how long a running worker has been quiet."""
    age = max(0.0, now - worker["last_progress"])
    said = f" (last: {worker['message']})" if worker.get("message") else ""
    return f"no ctx.progress() for {age:.0f} s{said}"


def bindings(state: dict[str, Any]) -> str:
    """Whether the workers were bound, and why; each worker's planned cores and NUMA domain
    against what its kernel reported."""
    chosen = state.get("binding_mode") or {}
    lines = [f"binding: {chosen.get('mode', '?')} ({chosen.get('why') or 'not recorded'})"]
    lines += [f"  {'worker':>6}  {'host':<16} {'planned cores':<14} {'kernel affinity':<16} {'numa':>4}  memory policy"]
    for w in state.get("workers", []):
        b = w.get("binding")
        if not b:
            lines.append(f"  {w['id']:>6}  {str(w.get('host') or '-'):<16} not bound")
            continue
        policy = f"{b['mempolicy'][0]} {','.join(map(str, b['mempolicy'][1]))}".strip()
        lines.append(
            f"  {w['id']:>6}  {str(w.get('host')):<16} {_ranges(b['cores']):<14} "
            f"{_ranges(b['affinity']):<16} {b['numa']:>4}  {policy}"
            + (f"  threads on {_ranges(b['thread_cores'])}" if len(b["thread_cores"]) > 1 else "")
        )
        lines += [f"          MISMATCH: {m}" for m in b.get("mismatches", [])]
    master = (state.get("master") or {}).get("binding")
    if master and "pu" in master:
        beside = (
            "a core of its own" if master["shares_with"] is None else f"sharing worker {master['shares_with']}'s core"
        )
        lines.append(
            f"  {'master':>6}  {str(state['master'].get('host')):<16} PU {master['pu']} ({beside}), "
            f"kernel affinity {_ranges(master['affinity'])}"
        )
    elif master:
        lines.append(f"  {'master':>6}  not bound: {master.get('error')}")
    return "\n".join(lines)


def _ranges(ids: list[int]) -> str:
    from .resources.cpuset import format_cpuset

    return format_cpuset(ids) or "-"


def _last_line(text: str | None) -> str:
    if not text:
        return ""
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


class LiveStatus:
    """Live status for `t2mpi run`: a line rewritten in place on a terminal, event lines elsewhere."""

    def __init__(self, job_id: str, stream: TextIO | None = None):
        self.job_id = job_id
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.state: dict[str, Any] | None = None
        self._shown = False

    def output(self, write: Any, text: str) -> None:
        self._clear()
        write(text)
        self._draw()

    def events(self, events: list[dict[str, Any]], state: dict[str, Any] | None) -> None:
        if state is not None:
            self.state = state
        if self.tty:
            self._draw()
            return
        for event in events:
            line = event_line(event)
            if line:
                self.stream.write(f"[t2mpi] {line}\n")
                self.stream.flush()

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + status_line(self.state, self.job_id))
            self.stream.flush()
            self._shown = True
