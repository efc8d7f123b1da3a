"""Unit tests of the job master's decisions (t2mpi.runtime.master.Master), driven without MPI."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t2mpi.runtime.master import COMPLETED, FAILED, KILLED, RUNNING, STARTING, Master, Reply, WorkerInfo, worker_list

T0 = 100.0
TRACEBACK = (
    'Traceback (most recent call last):\n  File "job.py", line 3, in execute\n'
    '    raise ValueError("bad input")\nValueError: bad input\n'
)


def joined_master(hosts: list[str], now: float = T0 + 1) -> Master:
    """A master of len(hosts) workers, worker i on hosts[i], all joined at `now`."""
    m = Master("job-1", "hello", len(hosts), T0)
    m.joined(worker_list([(h, 1000 + i) for i, h in enumerate(hosts)]), ("head", 999), now)
    return m


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events]


def worker_states(m: Master) -> list[str]:
    return [w["state"] for w in m.snapshot()["workers"]]


# ---------------------------------------------------------------- the worker list


def test_worker_list_numbers_nodes_and_local_indices_with_hosts_interleaved():
    regs = [("a", 10), ("b", 11), ("a", 12), ("c", 13), ("b", 14), ("a", 15), ("c", 16)]
    assert worker_list(regs) == [
        WorkerInfo(0, "a", 10, 0, 0),
        WorkerInfo(1, "b", 11, 1, 0),
        WorkerInfo(2, "a", 12, 0, 1),
        WorkerInfo(3, "c", 13, 2, 0),
        WorkerInfo(4, "b", 14, 1, 1),
        WorkerInfo(5, "a", 15, 0, 2),
        WorkerInfo(6, "c", 16, 2, 1),
    ]


def test_worker_list_numbers_nodes_by_first_worker_not_by_name():
    assert [(w.node, w.local) for w in worker_list([("z", 1), ("a", 2), ("z", 3)])] == [(0, 0), (1, 0), (0, 1)]


def test_worker_list_edges():
    assert worker_list([]) == []
    assert worker_list([("only", 7)]) == [WorkerInfo(0, "only", 7, 0, 0)]


# ---------------------------------------------------------------- the state machine


def test_a_new_master_is_starting():
    m = Master("job-1", "hello", 2, T0)
    assert m.state == STARTING and not m.done
    assert m.started == T0 and m.ended is None
    assert worker_states(m) == [STARTING, STARTING]
    assert m.drain_events() == [{"t": T0, "event": "started", "workers": 2}]


def test_joined_makes_the_job_and_its_workers_running():
    m = joined_master(["b", "a", "b"])
    assert m.state == RUNNING and not m.done
    assert m.master_info == ("head", 999)
    assert worker_states(m) == [RUNNING] * 3
    assert [w["started"] for w in m.snapshot()["workers"]] == [T0 + 1] * 3
    assert m.drain_events()[-1] == {"t": T0 + 1, "event": "joined", "workers": 3, "hosts": ["a", "b"]}


def test_starting_running_completed():
    m = joined_master(["a", "a", "b"])
    assert m.finished_ok(1, "one", 1.5, T0 + 2) == []
    assert m.finished_ok(0, {"v": 0}, 2.0, T0 + 3) == []
    assert m.state == RUNNING and not m.done and m.ended is None
    assert m.finished_ok(2, None, 3.0, T0 + 4) == []
    assert m.state == COMPLETED and m.done
    assert m.reason == "all workers completed"
    assert m.ended == T0 + 4
    assert worker_states(m) == [COMPLETED] * 3
    assert m.results == {1: "one", 0: {"v": 0}, 2: None}


def test_events_of_a_completed_job():
    m = joined_master(["a", "b"])
    m.progress(0, 0.5, "half", T0 + 2)
    m.finished_ok(1, 7, 1.0, T0 + 3)
    m.finished_ok(0, [1, 2], 2.0, T0 + 4)
    events = m.drain_events()
    assert kinds(events) == ["started", "joined", "progress", "worker_completed", "worker_completed", "ended"]
    assert events[2] == {"t": T0 + 2, "event": "progress", "worker": 0, "fraction": 0.5, "message": "half"}
    assert events[3] == {"t": T0 + 3, "event": "worker_completed", "worker": 1, "elapsed": 1.0, "result": "7"}
    assert events[4]["result"] == "[1, 2]"
    assert events[5] == {"t": T0 + 4, "event": "ended", "state": COMPLETED, "reason": "all workers completed"}
    assert m.drain_events() == []
    m.progress(1, None, "late", T0 + 5)
    assert kinds(m.drain_events()) == ["progress"]


def test_a_worker_failure_fails_the_job_naming_worker_host_and_error():
    m = joined_master(["node-a", "node-b", "node-a", "node-c"])
    m.finished_ok(3, "done", 1.0, T0 + 2)
    m.failed(1, TRACEBACK, 2.5, T0 + 3)
    assert m.state == FAILED and m.done
    assert m.reason == "worker 1 on node-b failed: ValueError: bad input"
    assert m.ended == T0 + 3
    assert worker_states(m) == [KILLED, FAILED, KILLED, COMPLETED]
    snap = m.snapshot()
    assert snap["workers"][1]["error"] == TRACEBACK
    assert snap["workers"][1]["ended"] == T0 + 3
    assert m.results == {3: "done"}
    events = m.drain_events()
    assert kinds(events)[-2:] == ["worker_failed", "ended"]
    assert events[-2] == {"t": T0 + 3, "event": "worker_failed", "worker": 1, "elapsed": 2.5, "error": TRACEBACK}
    assert events[-1] == {"t": T0 + 3, "event": "ended", "state": FAILED, "reason": m.reason}


def test_failure_reasons_without_host_or_text():
    m = Master("job-1", "hello", 2, T0)
    m.failed(0, "", 0.1, T0 + 1)  # before joined: no host known
    assert m.reason == "worker 0 on ? failed: error"
    assert worker_states(m) == [FAILED, KILLED]


def test_a_second_failure_keeps_the_first_reason():
    m = joined_master(["a", "b"])
    m.failed(0, "RuntimeError: first", 1.0, T0 + 2)
    m.failed(1, "RuntimeError: second", 1.0, T0 + 3)
    assert m.state == FAILED
    assert m.reason == "worker 0 on a failed: RuntimeError: first"
    assert m.ended == T0 + 2
    assert kinds(m.drain_events()).count("ended") == 1


def test_a_completion_read_after_another_workers_failure_is_recorded():
    """Both messages in one receive: worker 1's failure ends the job (worker 0 is marked KILLED),
    then worker 0's completion is read. It completed: that is recorded, and is no error (it
    was "worker 0 reported its end twice", which crashed the master)."""
    m = joined_master(["a", "b"])
    m.failed(1, "RuntimeError: gives up", 1.0, T0 + 2)
    assert worker_states(m) == [KILLED, FAILED]
    assert m.finished_ok(0, 0, 0.5, T0 + 2) == []
    assert (m.state, m.reason, m.ended) == (FAILED, "worker 1 on b failed: RuntimeError: gives up", T0 + 2)
    assert worker_states(m) == [COMPLETED, FAILED] and m.results == {0: 0}
    with pytest.raises(ValueError, match="worker 0 reported its end twice"):
        m.finished_ok(0, 0, 0.5, T0 + 3)


def test_kill_and_abort():
    killed = joined_master(["a", "b"])
    killed.finished_ok(0, 1, 1.0, T0 + 2)
    killed.kill("cancelled by user", T0 + 3)
    assert (killed.state, killed.reason, killed.ended) == (KILLED, "cancelled by user", T0 + 3)
    assert worker_states(killed) == [COMPLETED, KILLED]

    aborted = Master("job-2", "hello", 2, T0)
    aborted.abort("workers did not join within 120 s", T0 + 120)
    assert (aborted.state, aborted.reason, aborted.done) == (FAILED, "workers did not join within 120 s", True)
    assert worker_states(aborted) == [KILLED, KILLED]
    assert kinds(aborted.drain_events()) == ["started", "ended"]


def test_a_job_folder_that_cannot_be_written_fails_the_job_even_a_completed_one():
    done = joined_master(["a", "b"])
    done.finished_ok(0, 1, 1.0, T0 + 2)
    done.finished_ok(1, 2, 1.0, T0 + 3)
    assert done.state == COMPLETED
    why = "the job folder: cannot write /j/results.pkl: No space left on device"
    done.not_recorded(why, T0 + 4)
    assert (done.state, done.reason, done.ended) == (FAILED, why, T0 + 4)
    assert worker_states(done) == [COMPLETED, COMPLETED]  # they did complete
    assert done.drain_events()[-1] == {"t": T0 + 4, "event": "ended", "state": FAILED, "reason": why}

    running = joined_master(["a", "b"])
    running.not_recorded(why, T0 + 2)
    assert (running.state, running.reason) == (FAILED, why) and worker_states(running) == [KILLED, KILLED]
    killed = joined_master(["a"])
    killed.kill("cancelled", T0 + 2)
    killed.not_recorded(why, T0 + 3)
    assert (killed.state, killed.reason) == (KILLED, "cancelled")  # an end that is not a completion stays


@pytest.mark.parametrize("end", ["complete", "fail", "kill", "abort"])
def test_a_terminal_state_is_never_overwritten(end):
    m = joined_master(["a", "b"])
    if end == "complete":
        m.finished_ok(0, 0, 1.0, T0 + 2)
        m.finished_ok(1, 1, 1.0, T0 + 2)
    elif end == "fail":
        m.failed(0, "E: x", 1.0, T0 + 2)
    elif end == "kill":
        m.kill("stop", T0 + 2)
    else:
        m.abort("broken", T0 + 2)
    first = (m.state, m.reason, m.ended)
    m.kill("too late", T0 + 9)
    m.abort("too late", T0 + 9)
    m.failed(1, "E: too late", 1.0, T0 + 9)
    assert (m.state, m.reason, m.ended) == first
    assert kinds(m.drain_events()).count("ended") == 1


# ---------------------------------------------------------------- barriers


def test_a_barrier_releases_everyone_once_when_the_last_arrives():
    m = joined_master(["a", "b", "a"])
    assert m.barrier(2, 1, 30.0, T0 + 2) == []
    assert m.barrier(0, 1, 30.0, T0 + 3) == []
    assert m.barrier(1, 1, 30.0, T0 + 4) == [
        Reply(0, ("released", 1)),
        Reply(1, ("released", 1)),
        Reply(2, ("released", 1)),
    ]
    assert m.barriers == {}
    assert m.tick(T0 + 1000) == []  # nothing left to time out
    assert m.barrier(1, 2, 30.0, T0 + 5) == []  # the next barrier starts afresh
    assert m.barrier(0, 2, 30.0, T0 + 5) == []
    assert [r.worker_id for r in m.barrier(2, 2, 30.0, T0 + 6)] == [0, 1, 2]


def test_a_barrier_of_one_worker_releases_at_once():
    m = joined_master(["a"])
    assert m.barrier(0, 1, 1.0, T0 + 2) == [Reply(0, ("released", 1))]


def test_a_barrier_timeout_lists_the_missing_workers():
    m = joined_master(["a", "b", "c", "d"])
    m.barrier(0, 1, 5.0, T0 + 10)
    m.barrier(2, 1, 60.0, T0 + 12)  # the first arrival sets the deadline
    assert m.tick(T0 + 14.9) == []
    why = "barrier 1 timed out; workers not there: 1, 3"
    assert m.tick(T0 + 15) == [Reply(0, ("barrier_failed", 1, why)), Reply(2, ("barrier_failed", 1, why))]
    assert m.tick(T0 + 16) == []  # replied once
    assert m.barriers == {}
    assert m.state == RUNNING  # the workers decide what a failed barrier means


def test_a_barrier_timeout_shortens_a_long_missing_list():
    m = joined_master(["a"] * 15)
    m.barrier(0, 1, 1.0, T0)
    [reply] = m.tick(T0 + 1)
    assert reply == Reply(
        0, ("barrier_failed", 1, "barrier 1 timed out; workers not there: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 …")
    )


def test_a_barrier_fails_at_once_when_a_worker_has_already_finished():
    m = joined_master(["a", "b", "c"])
    assert m.finished_ok(2, "early", 1.0, T0 + 2) == []
    why = "worker 2 ended without reaching barrier 1"
    assert m.barrier(0, 1, 30.0, T0 + 3) == [Reply(0, ("barrier_failed", 1, why))]
    assert m.barrier(1, 1, 30.0, T0 + 4) == [Reply(1, ("barrier_failed", 1, why))]
    assert m.barriers == {}
    assert m.tick(T0 + 1000) == []


def test_a_barrier_fails_when_a_worker_finishes_while_others_wait():
    m = joined_master(["a", "b", "c"])
    m.barrier(0, 1, 30.0, T0 + 2)
    m.barrier(1, 1, 30.0, T0 + 3)
    why = "worker 2 ended without reaching barrier 1"
    assert m.finished_ok(2, 2, 1.0, T0 + 4) == [
        Reply(0, ("barrier_failed", 1, why)),
        Reply(1, ("barrier_failed", 1, why)),
    ]
    assert m.barriers == {} and m.state == RUNNING
    assert m.tick(T0 + 1000) == []
    m.finished_ok(0, 0, 1.0, T0 + 5)
    m.finished_ok(1, 1, 1.0, T0 + 6)
    assert m.state == COMPLETED


def _run_barriers(num_workers: int, num_barriers: int, choose) -> dict[tuple[int, int], int]:
    """Workers pass barriers 1..K in order, arriving in the order `choose` picks among those free
    to move; returns how many times each (worker, barrier) was released."""
    m = joined_master([f"h{i % 3}" for i in range(num_workers)])
    next_seq = [1] * num_workers
    waiting: set[int] = set()
    released: dict[tuple[int, int], int] = {}
    now = T0 + 2
    while True:
        free = [w for w in range(num_workers) if w not in waiting and next_seq[w] <= num_barriers]
        if not free:
            break
        w = choose(free)
        now += 0.001
        waiting.add(w)
        for reply in m.barrier(w, next_seq[w], 60.0, now) + m.tick(now):
            assert reply.message == ("released", next_seq[reply.worker_id])
            assert reply.worker_id in waiting
            key = (reply.worker_id, reply.message[1])
            released[key] = released.get(key, 0) + 1
            waiting.discard(reply.worker_id)
            next_seq[reply.worker_id] += 1
    assert not waiting and m.barriers == {}
    for w in range(num_workers):
        m.finished_ok(w, w, 1.0, now)
    assert m.state == COMPLETED
    return released


@settings(max_examples=200, deadline=None)
@given(num_workers=st.integers(1, 7), num_barriers=st.integers(1, 4), data=st.data())
def test_every_barrier_releases_each_worker_exactly_once(num_workers, num_barriers, data):
    released = _run_barriers(num_workers, num_barriers, lambda free: data.draw(st.sampled_from(free)))
    assert released == {(w, s): 1 for w in range(num_workers) for s in range(1, num_barriers + 1)}


# ---------------------------------------------------------------- what the master shows


def test_snapshot_content():
    m = joined_master(["node-a", "node-b", "node-a"])
    m.progress(0, 0.25, "loading", T0 + 2)
    m.finished_ok(1, {"answer": 42}, 3.0, T0 + 4)
    snap = m.snapshot()
    json.dumps(snap)  # it is what state.json holds
    workers = snap.pop("workers")
    assert snap == {
        "job_id": "job-1",
        "name": "hello",
        "state": RUNNING,
        "reason": "",
        "master": {"mode": "rank0", "host": "head", "pid": 999},
        "binding_mode": {"mode": "none", "why": ""},
        "num_workers": 3,
        "started": T0,
        "ended": None,
        "joined": 3,
        "finished": 1,
        "checkpoint": None,
        "restarts": 0,
    }
    assert workers[0] == {
        "id": 0,
        "host": "node-a",
        "pid": 1000,
        "node": 0,
        "local": 0,
        "state": RUNNING,
        "progress": 0.25,
        "message": "loading",
        "last_progress": T0 + 2,
        "operation": "",
        "started": T0 + 1,
        "ended": None,
        "result": None,
        "error": None,
        "binding": None,
    }
    assert workers[1] == {
        "id": 1,
        "host": "node-b",
        "pid": 1001,
        "node": 1,
        "local": 0,
        "state": COMPLETED,
        "progress": None,
        "message": "",
        "last_progress": T0 + 1,  # it joined, and never called ctx.progress()
        "operation": "",
        "started": T0 + 1,
        "ended": T0 + 4,
        "result": "{'answer': 42}",
        "error": None,
        "binding": None,
    }
    assert (workers[2]["node"], workers[2]["local"], workers[2]["state"]) == (0, 1, RUNNING)


def test_snapshot_before_joining():
    snap = Master("job-1", "hello", 2, T0, master="separate").snapshot()
    assert snap["master"] == {"mode": "separate", "host": None, "pid": None}
    assert snap["joined"] == 0 and snap["state"] == STARTING
    assert [(w["id"], w["host"], w["pid"], w["node"], w["state"], w["last_progress"]) for w in snap["workers"]] == [
        (0, None, None, None, STARTING, None),
        (1, None, None, None, STARTING, None),
    ]


def test_results_keep_values_and_the_snapshot_a_short_repr():
    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")

    m = joined_master(["a", "a", "a"])
    big, odd = "x" * 500, Unprintable()
    m.finished_ok(0, big, 1.0, T0 + 2)
    m.finished_ok(1, odd, 1.0, T0 + 2)
    m.finished_ok(2, 3.5, 1.0, T0 + 2)
    assert m.results == {0: big, 1: odd, 2: 3.5}
    shown = [w["result"] for w in m.snapshot()["workers"]]
    assert len(shown[0]) == 200 and shown[0].endswith("…") and shown[0].startswith("'xxx")
    assert shown[1] == "<unprintable Unprintable: no repr>"
    assert shown[2] == "3.5"
