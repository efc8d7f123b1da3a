"""The control channel's messages (t2mpi.runtime.channel): what a worker sends is what the table
says, and the master's dispatch takes each kind apart by its fields; driven without MPI."""

from __future__ import annotations

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
