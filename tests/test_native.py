"""t2mpi._native against the kernel's own answers, and with bad arguments in a loop."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from t2mpi import _native


def test_gettid_is_the_kernel_thread_id():
    assert _native.gettid() == threading.get_native_id()
    seen = []
    t = threading.Thread(target=lambda: seen.append((_native.gettid(), threading.get_native_id())))
    t.start()
    t.join()
    assert seen[0][0] == seen[0][1] != _native.gettid()


def test_getaffinity_matches_os():
    assert _native.getaffinity() == tuple(sorted(os.sched_getaffinity(0)))
    assert _native.getaffinity(_native.gettid()) == tuple(sorted(os.sched_getaffinity(0)))


def test_getcpu_is_within_affinity():
    assert _native.getcpu() in _native.getaffinity()


def test_setaffinity_binds_one_thread_and_reads_back():
    cpus = sorted(os.sched_getaffinity(0))
    target = cpus[-1]
    result = {}

    def pinned():
        _native.setaffinity(0, [target])
        result["native"] = _native.getaffinity()
        result["os"] = os.sched_getaffinity(_native.gettid())
        result["cpu"] = _native.getcpu()

    t = threading.Thread(target=pinned)
    t.start()
    t.join()
    assert result == {"native": (target,), "os": {target}, "cpu": target}
    assert _native.getaffinity() == tuple(cpus)  # the calling thread is untouched


def test_errors_carry_errno_and_arguments():
    with pytest.raises(OSError) as info:
        _native.getaffinity(2**30)  # no such thread
    assert info.value.errno == errno.ESRCH and "tid=1073741824" in str(info.value)
    with pytest.raises(OSError) as info:
        _native.setaffinity(0, [1023])  # a CPU this machine lacks
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: _native.getaffinity(-1), ValueError),
        (lambda: _native.getaffinity("x"), TypeError),
        (lambda: _native.setaffinity(0, []), ValueError),
        (lambda: _native.setaffinity(0, [-1]), ValueError),
        (lambda: _native.setaffinity(0, [1 << 20]), ValueError),
        (lambda: _native.setaffinity(0, ["a"]), TypeError),
        (lambda: _native.setaffinity(0, 5), TypeError),
        (lambda: _native.setaffinity(-3, [0]), ValueError),
        (lambda: _native.setaffinity(2**30, [0]), OSError),
        (lambda: _native.gettid(1), TypeError),
    ],
)
def test_bad_arguments_in_a_loop(call, exc):
    for _ in range(2000):
        with pytest.raises(exc):
            call()
    assert _native.getaffinity() == tuple(sorted(os.sched_getaffinity(0)))
