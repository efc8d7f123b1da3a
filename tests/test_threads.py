"""WorkerThreads: each thread pinned to its planned core (read back from the kernel, from inside
the thread and from outside it), ordered map, errors with their traceback, clean close."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
import traceback

import pytest

from t2mpi import _native
from t2mpi.resources import placement as P
from t2mpi.resources import topology as T
from t2mpi.resources.threads import WorkerThreads

CPUS = sorted(os.sched_getaffinity(0))
WAIT = 10.0  # seconds: the bound on every wait in these tests


def tasks_gone(tids: list[int], within: float = 5.0) -> bool:
    """Whether the kernel tasks `tids` are gone from /proc/self/task, looking for at most `within`
    seconds: CPython's join() returns when the thread's last Python step is done, a moment before
    its OS thread exits (the kernel gives no notice of that to wait on). A leaked thread stays."""
    deadline = time.monotonic() + within
    while set(tids) & {int(t) for t in os.listdir("/proc/self/task")}:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("t2mpi-thread")]


@pytest.fixture(autouse=True)
def no_pool_thread_left():
    assert pool_threads() == []
    yield
    left = pool_threads()
    assert left == [], f"threads left behind: {left}"


def where_am_i():
    return _native.gettid(), _native.getaffinity(), _native.getcpu()


# ---- pinning ------------------------------------------------------------------------------


def test_each_thread_runs_on_its_planned_core():
    p = P.plan([T.from_sysfs()], workers=1, cpus=len(CPUS), threads=len(CPUS), memory=2**26).worker(0)
    with WorkerThreads.for_worker(p) as pool:
        assert pool.cores == p.thread_cores == tuple(CPUS)
        inside = pool.run_on_each(where_am_i)
        for t, (tid, affinity, cpu) in enumerate(inside):
            assert tid == pool.tids[t]
            assert affinity == (p.thread_cores[t],) and cpu == p.thread_cores[t]
            assert os.sched_getaffinity(tid) == {p.thread_cores[t]}  # from outside the thread
        assert len(set(pool.tids)) == len(CPUS)
        assert set(pool.tids) <= {int(t) for t in os.listdir("/proc/self/task")}
    assert os.sched_getaffinity(0) == set(CPUS)  # the caller's own thread is not pinned


def test_thread_t_takes_core_t_in_the_order_given():
    cores = CPUS[::-1]
    with WorkerThreads(cores) as pool:
        assert [os.sched_getaffinity(tid) for tid in pool.tids] == [{c} for c in cores]
        assert [a for _, a, _ in pool.run_on_each(where_am_i)] == [(c,) for c in cores]


def test_a_core_this_process_may_not_use_fails_the_first_use_and_leaves_no_thread():
    outside = max(CPUS) + 1
    pool = WorkerThreads([CPUS[0], outside])
    with pytest.raises(OSError, match=rf"thread 1: cannot pin to CPU {outside}: Invalid argument"):
        pool.submit(int)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(int)


def test_threads_take_the_memory_policy_of_the_thread_that_made_the_pool():
    _native.set_mempolicy("bind", [0])
    try:
        pool = WorkerThreads(CPUS)
    finally:
        _native.set_mempolicy("default")
    started = threading.Thread(target=lambda: pool.tids)  # started by a thread with the default policy
    started.start()
    started.join(WAIT)
    with pool:
        assert pool.run_on_each(_native.get_mempolicy) == [("bind", (0,))] * len(CPUS)
    assert _native.get_mempolicy() == ("default", ())


def test_unbound_threads_run_wherever_the_process_may():
    with WorkerThreads(threads=3) as pool:
        assert pool.cores is None and len(pool) == 3
        inside = pool.run_on_each(where_am_i)
        assert [tid for tid, _, _ in inside] == list(pool.tids)
        assert all(affinity == tuple(CPUS) for _, affinity, _ in inside)
        assert all(os.sched_getaffinity(tid) == set(CPUS) for tid in pool.tids)
        assert pool.map(lambda x: x + 1, range(10)) == list(range(1, 11))


# ---- work ------------------------------------------------------------------------------


def test_map_returns_results_in_item_order_when_they_finish_out_of_order():
    finished = []
    fifth_done = threading.Event()

    def work(x):
        if x == 0:
            assert fifth_done.wait(WAIT), "item 5 never ran"
        finished.append(x)
        if x == 5:
            fifth_done.set()
        return x * x

    with WorkerThreads(CPUS) as pool:
        assert pool.map(work, range(20)) == [x * x for x in range(20)]
    assert finished.index(5) < finished.index(0)  # they did finish out of order


def failing(x):
    if x == 3:
        raise ValueError(f"item {x} is bad")
    return x


def test_an_error_in_map_reaches_the_caller_with_its_traceback():
    with WorkerThreads(CPUS) as pool:
        with pytest.raises(ValueError, match="item 3 is bad") as info:
            pool.map(failing, range(10))
        frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
        assert frames[-1] == "failing"
        assert pool.map(failing, [1, 2]) == [1, 2]  # the pool goes on


def test_submit_gives_futures():
    with WorkerThreads(CPUS) as pool:
        ok, bad = pool.submit(pow, 2, 10), pool.submit(failing, 3)
        assert isinstance(ok, concurrent.futures.Future)
        assert ok.result(WAIT) == 1024
        assert isinstance(bad.exception(WAIT), ValueError)
        assert pool.submit(dict, a=1).result(WAIT) == {"a": 1}


def test_run_on_each_runs_once_on_every_thread_while_another_task_is_queued():
    release = threading.Event()
    with WorkerThreads(CPUS) as pool:
        busy = pool.submit(release.wait, WAIT)  # one thread may still be busy when run_on_each starts
        seen = []
        lock = threading.Lock()

        def visit():
            with lock:
                seen.append(_native.gettid())
            return pool.index()

        result = concurrent.futures.Future()
        caller = threading.Thread(target=lambda: result.set_result(pool.run_on_each(visit, timeout=WAIT)))
        caller.start()
        release.set()
        caller.join(WAIT)
        assert busy.result(WAIT) is True
        assert result.result(WAIT) == list(range(len(CPUS)))
        assert sorted(seen) == sorted(pool.tids)


def test_run_on_each_from_a_pool_thread_is_an_error():
    with WorkerThreads(CPUS) as pool:
        with pytest.raises(RuntimeError, match="would wait for itself"):
            pool.submit(pool.run_on_each, int).result(WAIT)


# ---- life -----------------------------------------------------------------------------


def test_threads_start_on_first_use_only():
    pool = WorkerThreads(CPUS)
    assert pool_threads() == []
    assert len(pool.tids) == len(CPUS)
    assert len(pool_threads()) == len(CPUS) and all(t.daemon for t in pool_threads())
    pool.close()


def test_close_runs_what_was_submitted_then_joins_every_thread():
    pool = WorkerThreads(CPUS)
    tids = pool.tids
    futures = [pool.submit(pow, x, 2) for x in range(50)]
    pool.close()
    assert [f.result(0) for f in futures] == [x * x for x in range(50)]
    assert pool_threads() == []
    assert tasks_gone(tids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(int)
    pool.close()  # a second close is harmless


def test_close_without_use_starts_nothing():
    with WorkerThreads(threads=2):
        pass
    assert pool_threads() == []


def test_close_says_which_thread_is_still_busy():
    release = threading.Event()
    pool = WorkerThreads(threads=1)
    pool.submit(release.wait, WAIT)
    with pytest.raises(TimeoutError, match=r"t2mpi-thread-0 still running a task after 0\.05 s"):
        pool.close(timeout=0.05)
    release.set()
    for t in pool_threads():
        t.join(WAIT)


def test_a_pool_needs_cores_or_a_thread_count():
    with pytest.raises(ValueError, match="give thread_cores"):
        WorkerThreads()
    with pytest.raises(ValueError, match="threads=3 but 2 thread_cores"):
        WorkerThreads([0, 1], threads=3)
    with pytest.raises(ValueError, match="at least one thread"):
        WorkerThreads(threads=0)
