"""The control channel's messages (t2mpi.runtime.channel): what a worker sends is what the table
says, and the master's dispatch takes each kind apart by its fields; driven without MPI."""

from __future__ import annotations

import os

import pytest

from t2mpi.runtime import channel
from t2mpi.runtime.master import COMPLETED, FAILED, Master, worker_list
from t2mpi.runtime.serve import dispatch
from t2mpi.runtime.worker import BarrierError

T0 = 100.0


class Recorder:
    """Stands in for the worker's control communicator: keeps what is sent, never has a reply."""

    def __init__(self) -> None:
        self.sent: list[tuple[tuple, int, int]] = []

    def send(self, message: tuple, dest: int, tag: int) -> None:
        self.sent.append((message, dest, tag))

    def improbe(self, source: int, tag: int) -> None:
        return None


def joined(n: int = 2) -> Master:
    m = Master("job-1", "hello", n, T0)
    m.joined(worker_list([("node", 1000 + i) for i in range(n)]), ("head", 999), T0 + 1)
    return m


def test_every_worker_message_has_the_fields_the_table_names():
    ctrl = Recorder()
    port = channel.WorkerPort(ctrl, 3, grace=0.0)
    with pytest.raises(BarrierError, match="no answer"):
        port.barrier(1, timeout=0.01)
    port.progress(0.5, "half")
    port.operation("reduce_by_key", "wc.py:8")
    port.operation_ended(("reduce_by_key", "wc.py:8", 1.0, 2.0, 3, 3, 100, 0))
    port.report({"network": {}})
    port.bound({"cores": [0]})
    port.checkpointed(2)
    port.completed(42, 0.1)
    port.failed("boom", 0.2)
    port.stopped()
    kinds = []
    for message, dest, tag in ctrl.sent:
        kind, worker, *fields = message
        assert (dest, tag, worker) == (0, channel.TAG_CONTROL, 3)
        assert len(fields) == len(channel.TO_MASTER[kind]), message
        kinds.append(kind)
    assert set(kinds) == set(channel.TO_MASTER) - {"heartbeat"}


def test_dispatch_takes_each_kind_by_its_fields():
    m = joined(2)
    assert dispatch(m, ("heartbeat", 0), T0 + 2) == []
    dispatch(m, ("progress", 0, 0.25, "a quarter"), T0 + 2)
    assert m.snapshot()["workers"][0]["message"] == "a quarter"
    replies = dispatch(m, ("completed", 0, "ok", 1.0), T0 + 3)
    assert replies == [] and m.snapshot()["workers"][0]["state"] == COMPLETED
    dispatch(m, ("failed", 1, "worker 1 failed:\nValueError: bad", 1.0), T0 + 4)
    assert m.snapshot()["workers"][1]["state"] == FAILED and m.state == FAILED


@pytest.mark.parametrize(
    "message", [("progress", 0, 0.5), ("barrier", 0, 1), ("completed", 0), ("no-such-kind", 0), ("stopped", 0, 1)]
)
def test_dispatch_refuses_a_message_of_the_wrong_shape(message):
    with pytest.raises(RuntimeError, match="unknown control message"):
        dispatch(joined(2), message, T0 + 2)


def test_a_worker_tells_its_operations_without_a_message_per_step():
    ctrl = Recorder()
    port = channel.WorkerPort(ctrl, 0, grace=0.0)
    port.operation("reduce_by_key", "wc.py:8")  # the first goes at once
    for _ in range(1000):  # a tight loop: within _OPERATION_EVERY nothing more is sent
        port.operation("all_reduce", "km.py:20")
        port.operation("map_partitions", "km.py:19")
    port.operation("reduce_by_key", "wc.py:8")  # back to what was sent: nothing pending
    assert [m for m, _, _ in ctrl.sent] == [("operation", 0, "reduce_by_key", "wc.py:8")]
    port.operation("top", "wc.py:9")
    port.completed("ok", 0.1)  # the newest operation goes before the worker's last word
    assert [m[0] for m, _, _ in ctrl.sent] == ["operation", "operation", "completed"]
    assert ctrl.sent[1][0] == ("operation", 0, "top", "wc.py:9")


def test_the_master_keeps_each_workers_operation_and_an_event():
    m = joined(2)
    dispatch(m, ("operation", 1, "sort_by", "ts.py:5"), T0 + 2)
    assert [w["operation"] for w in m.snapshot()["workers"]] == ["", "sort_by at ts.py:5"]
    assert {"event": "operation", "worker": 1, "operation": "sort_by", "site": "ts.py:5", "t": T0 + 2} in m.events


def test_the_live_status_names_the_operations_the_workers_are_in():
    from t2mpi.console import status_line

    m = joined(3)
    dispatch(m, ("operation", 0, "sort_by", "ts.py:5"), T0 + 2)
    dispatch(m, ("operation", 2, "sort_by", "ts.py:5"), T0 + 2)
    dispatch(m, ("operation", 1, "collect", "ts.py:6"), T0 + 2)
    line = status_line(m.snapshot(), "job-1", now=T0 + 3)
    assert line.endswith(" · sort_by (w0,2), collect (w1)"), line


RECORD = ("reduce_by_key", "km.py:20", 5.0, 5.5, 10, 8, 400, 0)


def test_ended_operations_are_batched_and_flushed_before_the_last_word():
    ctrl = Recorder()
    port = channel.WorkerPort(ctrl, 1, grace=0.0)
    for i in range(500):  # a tight loop of operations: one message at once, the rest wait
        port.operation_ended(RECORD[:2] + (float(i), float(i) + 0.5) + RECORD[4:])
    sent = [m for m, _, _ in ctrl.sent if m[0] == "operations_ended"]
    assert len(sent) == 1 and len(sent[0][2]) == 1
    port.completed("ok", 0.1)
    kinds = [m[0] for m, _, _ in ctrl.sent]
    assert kinds[-2:] == ["operations_ended", "completed"]
    records = [r for m, _, _ in ctrl.sent if m[0] == "operations_ended" for r in m[2]]
    assert [r[2] for r in records] == [float(i) for i in range(500)]  # every one, in order, once


def test_the_heartbeat_thread_sends_waiting_records():
    ctrl = Recorder()
    port = channel.WorkerPort(ctrl, 0, grace=0.0)
    port.operation_ended(RECORD)
    port.operation_ended(RECORD)  # within _OPERATION_EVERY: waits
    port._flush_operation()  # what the heartbeat thread does each look
    assert [len(m[2]) for m, _, _ in ctrl.sent if m[0] == "operations_ended"] == [1, 1]


def test_the_master_records_operation_end_events_on_its_clock():
    m = joined(2)
    # the worker's monotonic clock reads 50 when it sends; the master's reads T0 + 10 when it gets it
    dispatch(m, ("operations_ended", 1, [RECORD], 50.0), T0 + 10)
    ev = [e for e in m.events if e["event"] == "operation_end"]
    assert ev == [
        {
            "t": T0 + 10,
            "event": "operation_end",
            "worker": 1,
            "operation": "reduce_by_key",
            "site": "km.py:20",
            "start": T0 + 10 - 45.0,
            "end": T0 + 10 - 44.5,
            "rows_in": 10,
            "rows_out": 8,
            "bytes_shuffled": 400,
            "bytes_spilled": 0,
        }
    ]
    # a later message that took longer to arrive does not move the clock back: the smallest delay wins
    dispatch(m, ("operations_ended", 1, [RECORD], 60.0), T0 + 21)
    assert [e["start"] for e in m.events if e["event"] == "operation_end"][-1] == T0 + 10 - 45.0
    with pytest.raises(ValueError, match="wrong shape"):
        dispatch(m, ("operations_ended", 0, [("x",)], 1.0), T0 + 22)


class _Port:
    """Stands in for the master's port: hands out the queued messages, one batch per receive."""

    def __init__(self, batches: list[list[tuple]]) -> None:
        self.batches = batches
        self.sent: list[tuple[int, tuple]] = []

    def receive(self, wait: float) -> list[tuple[int, tuple]]:
        return [(1, m) for m in self.batches.pop(0)] if self.batches else []

    def send(self, worker_id: int, message: tuple) -> None:
        self.sent.append((worker_id, message))


def test_the_results_are_in_the_folder_before_the_state_says_completed(tmp_path):
    """A follower that sees COMPLETED in state.json finds results.pkl (CI once read the state
    between the two writes)."""
    from conftest import JOBS

    from t2mpi.job.folder import JobDir
    from t2mpi.job.spec import load
    from t2mpi.runtime.serve import serve

    spec = load(JOBS / "hello.yaml", environ={"HOME": str(tmp_path)})
    jd = JobDir.create(tmp_path / "t2mpi-jobs", "hello", spec.to_dict())
    seen = []
    write_state = jd.write_state

    def watched(snapshot):
        seen.append((snapshot["state"], os.path.exists(jd.results_file)))
        write_state(snapshot)

    jd.write_state = watched
    m = joined(2)
    port = _Port([[("completed", 0, "a", 0.1)], [("completed", 1, "b", 0.1)]])
    final = serve(port, m, jd)
    assert final["state"] == COMPLETED and jd.read_results() == {0: "a", 1: "b"}
    assert (COMPLETED, True) in seen and (COMPLETED, False) not in seen, seen
