"""Control traffic over MPI: workers talk to the master (rank 0) on their own communicator.

Nothing here blocks inside MPI: waits poll with a backoff (improbe, then sleep), because a
blocking receive spins a core at 100 % in Open MPI, and on a full node that core is a worker's.
"""

from __future__ import annotations

import time

from .master import NOTICES
from .worker import BarrierError

TYPE_CHECKING = False  # typing costs every rank ~10 ms of start-up; annotations are strings
if TYPE_CHECKING:
    from typing import Any

    from mpi4py import MPI

# The control messages, defined once. On the wire each is a plain tuple (cheap to pickle): a
# worker's is (kind, worker_id, *fields), the master's (kind, *fields). Both ends build and take
# them apart by these names (a `match` on the tuple's shape), never by position.
TO_MASTER = {
    "heartbeat": (),  # every timeouts.heartbeat / 3 seconds, from the worker's heartbeat thread
    "barrier": ("seq", "timeout"),  # the worker waits in barrier `seq`
    "progress": ("fraction", "message"),  # ctx.progress()
    "operation": ("name", "site"),  # the data operation (t2mpi.data) the worker is in now
    # data operations that ended: (name, site, start, end, rows_in, rows_out, bytes_shuffled,
    # bytes_spilled) each, start and end on the worker's time.monotonic(), which `clock` was at sending
    "operations_ended": ("records", "clock"),
    "report": ("facts",),  # a dict merged into the worker's state (network, topology)
    "bound": ("report",),  # what binding the worker did (resources.binding)
    "completed": ("value", "elapsed"),  # execute() returned `value`
    "failed": ("error", "elapsed"),  # execute() raised; `error` is the text people see
    "checkpointed": ("version",),  # the worker wrote its part of checkpoint `version`
    "stopped": (),  # the worker stopped after a committed checkpoint
}
TO_WORKER = {
    "released": ("seq",),  # every worker reached barrier `seq`
    "barrier_failed": ("seq", "why"),
    "abort": (),  # after a failure: the master is about to abort the launch
    "checkpoint": ("why",),  # a notice: write a checkpoint (preemption, walltime)
    "stop": ("version",),  # a notice: `version` is committed; stop
}

TAG_CONTROL = 11  # worker -> master
TAG_REPLY = 12  # master -> worker: answers to what the worker asked (barriers, abort)
TAG_NOTICE = 13  # master -> worker: whenever (a checkpoint request, stop)

_MIN_NAP = 0.0002
_WORKER_NAP = 0.01  # the longest a waiting worker sleeps between looks (barrier latency)
_MASTER_NAP = 0.025  # the longest the idle master sleeps: each look costs ~0.1 ms of CPU


class Backoff:
    """Sleep a little longer each idle round, up to `longest`; start over after activity."""

    def __init__(self, longest: float = _WORKER_NAP) -> None:
        self.nap = _MIN_NAP
        self.longest = longest

    def idle(self, until: float | None = None) -> None:
        nap = self.nap if until is None else max(0.0, min(self.nap, until - time.monotonic()))
        time.sleep(nap)
        self.nap = min(self.nap * 2, self.longest)

    def busy(self) -> None:
        self.nap = _MIN_NAP


def _poll(look: Any, timeout: float) -> Any:
    """`look()` until it gives something other than None (returned) or `timeout` seconds pass
    (None), sleeping a little longer after each empty look."""
    deadline = time.monotonic() + timeout
    backoff = Backoff()
    while True:
        found = look()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return None
        backoff.idle(deadline)


class MasterPort:
    """The master's end: receive what workers say, send them replies."""

    def __init__(self, ctrl: MPI.Comm, first_worker_rank: int):
        """`ctrl`: an intracommunicator whose rank 0 is the master and rank 1+w worker w
        (first_worker_rank=1), or an intercommunicator to the workers (first_worker_rank=0)."""
        from mpi4py import MPI

        self.ctrl = ctrl
        self.first = first_worker_rank
        self._any = MPI.ANY_SOURCE
        self._status = MPI.Status()
        self._backoff = Backoff(_MASTER_NAP)

    def receive(self, wait: float) -> list[tuple[int, Any]]:
        """Messages that arrive within `wait` seconds: as soon as one is there, all that are."""
        deadline = time.monotonic() + wait
        while True:
            got = []
            while (msg := self.ctrl.improbe(self._any, TAG_CONTROL, self._status)) is not None:
                got.append((self._status.Get_source() - self.first, msg.recv()))
            if got:
                self._backoff.busy()
                return got
            if time.monotonic() >= deadline:
                return got
            self._backoff.idle(deadline)

    def send(self, worker_id: int, message: tuple[Any, ...]) -> None:
        tag = TAG_NOTICE if message[0] in NOTICES else TAG_REPLY
        self.ctrl.send(message, dest=worker_id + self.first, tag=tag)


class WorkerPort:
    """A worker's end of the control channel (the ControlChannel of its controller)."""

    _PROGRESS_EVERY = 0.05  # seconds; repeated progress within this is dropped unless it changes
    _OPERATION_EVERY = 0.25  # seconds; a newer operation within this waits for the heartbeat thread

    def __init__(self, ctrl: MPI.Comm, worker_id: int, grace: float):
        import threading

        self.ctrl = ctrl
        self.worker_id = worker_id
        self.grace = grace
        self._last_progress = (0.0, None, "")
        self._notice_lock = threading.Lock()
        self.checkpoint_asked: str | None = None  # why the master asked for a checkpoint
        self.stop_version: int | None = None  # the committed version after which to stop
        self.on_checkpoint_request: Any = None  # a callable(why), from the heartbeat thread
        self._operation_lock = threading.Lock()
        self._operation_sent: tuple[str, str] | None = None
        self._operation_time = 0.0
        self._operation_pending: tuple[str, str] | None = None
        self._ended: list[tuple[Any, ...]] = []  # finished operations' records not sent yet
        self._ended_time = 0.0

    def _tell(self, kind: str, *fields: Any) -> None:
        """Send the master message `kind` (TO_MASTER) with its fields, after the worker id."""
        self.ctrl.send((kind, self.worker_id, *fields), dest=0, tag=TAG_CONTROL)

    def start_heartbeat(self, interval: float) -> None:
        """Tell the master every `interval` s that this worker lives, from a thread of its own
        (numpy and MPI calls let it run; a call that holds the GIL starves it, as it should)."""
        import threading

        self._beating = threading.Event()

        look = min(interval, 1.0)  # notices (a checkpoint request) are looked for more often

        def beat() -> None:
            next_beat = time.monotonic() + interval
            while not self._beating.wait(look):
                self.notices()
                self._flush_operation()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + interval
                    self._tell("heartbeat")

        self._beat_thread = threading.Thread(target=beat, name="t2mpi-heartbeat", daemon=True)
        self._beat_thread.start()

    def stop_heartbeat(self) -> None:
        """No heartbeat after the worker's last word (its result or its failure)."""
        thread = getattr(self, "_beat_thread", None)
        if thread is not None:
            self._beating.set()
            thread.join(timeout=5.0)

    def _reply(self, timeout: float) -> tuple[Any, ...] | None:
        msg = _poll(lambda: self.ctrl.improbe(0, TAG_REPLY), timeout)
        return None if msg is None else msg.recv()

    def barrier(self, seq: int, timeout: float) -> None:
        self._tell("barrier", seq, timeout)
        reply = self._reply(timeout + self.grace)
        if reply is None:
            raise BarrierError(f"barrier {seq}: no answer from the job master within {timeout + self.grace:g} s")
        match reply:
            case ("released", released) if released == seq:
                return
            case ("barrier_failed", _seq, why):
                raise BarrierError(why)
        raise BarrierError(f"barrier {seq}: unexpected answer from the job master: {reply!r}")

    def progress(self, fraction: float | None, message: str) -> None:
        now = time.monotonic()
        last_t, last_f, last_m = self._last_progress
        if now - last_t < self._PROGRESS_EVERY and message == last_m and fraction != 1.0:
            return
        self._last_progress = (now, fraction, message)
        self._tell("progress", fraction, message)

    def operation(self, name: str, site: str) -> None:
        """Tell the master which data operation this worker is in now (for the live status and
        events.jsonl): at once when the last word is older than _OPERATION_EVERY, else the
        heartbeat thread sends the newest one within a second, so a tight loop of operations
        costs no message per step."""
        with self._operation_lock:
            if (name, site) == self._operation_sent:
                self._operation_pending = None
                return
            if time.monotonic() - self._operation_time < self._OPERATION_EVERY:
                self._operation_pending = (name, site)
                return
            self._send_operation((name, site))

    def operation_ended(self, record: tuple[Any, ...]) -> None:
        """A data operation ended (a record as in TO_MASTER's operations_ended). Records are sent
        together: at once when the last batch is older than _OPERATION_EVERY, else by the heartbeat
        thread within a second, and always before the worker's last word."""
        with self._operation_lock:
            self._ended.append(record)
            if time.monotonic() - self._ended_time >= self._OPERATION_EVERY:
                self._send_ended()

    def _flush_operation(self) -> None:
        with self._operation_lock:
            if self._operation_pending is not None:
                self._send_operation(self._operation_pending)
            if self._ended:
                self._send_ended()

    def _send_operation(self, operation: tuple[str, str]) -> None:
        self._operation_sent, self._operation_time, self._operation_pending = operation, time.monotonic(), None
        self._tell("operation", *operation)

    def _send_ended(self) -> None:
        records, self._ended = self._ended, []
        self._ended_time = time.monotonic()
        self._tell("operations_ended", records, self._ended_time)

    def notices(self) -> None:
        """Take the master's notices that have come (from either thread)."""
        asked = None
        with self._notice_lock:
            while (msg := self.ctrl.improbe(0, TAG_NOTICE)) is not None:
                match msg.recv():
                    case ("checkpoint", why) if self.checkpoint_asked is None:
                        self.checkpoint_asked = asked = why
                    case ("stop", version):
                        self.stop_version = version
        if asked is not None and self.on_checkpoint_request is not None:
            self.on_checkpoint_request(asked)

    def wait_stop(self, timeout: float) -> bool:
        """Wait (boundedly) for the master's word that a checkpoint is committed and to stop."""

        def stopped() -> bool | None:
            self.notices()
            return True if self.stop_version is not None else None

        return _poll(stopped, timeout) is not None

    def checkpointed(self, version: int) -> None:
        self._tell("checkpointed", version)

    def stopped(self) -> None:
        self._flush_operation()  # the last operation it was in, for the timeline
        self.stop_heartbeat()
        self._tell("stopped")

    def report(self, facts: dict[str, Any]) -> None:
        self._tell("report", facts)

    def bound(self, report: dict[str, Any]) -> None:
        self._tell("bound", report)

    def completed(self, value: Any, elapsed: float) -> None:
        self._flush_operation()  # the last operation it was in, for the timeline
        self.stop_heartbeat()
        self._tell("completed", value, elapsed)

    def failed(self, error: str, elapsed: float) -> None:
        self._flush_operation()  # the last operation it was in, for the timeline
        self.stop_heartbeat()
        self._tell("failed", error, elapsed)

    def await_abort(self, seconds: float) -> None:
        """After a failure the master aborts the launch; wait for that, boundedly."""
        self._reply(seconds)
