"""t2mpi.resources.binding against the kernel: each worker's placement is applied in a subprocess of its
own (the test process is never rebound) and read back from /proc and sched_getaffinity."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from t2mpi.resources import binding
from t2mpi.resources import placement as P
from t2mpi.resources import topology as T

CPUS = sorted(os.sched_getaffinity(0))
MiB = 2**20
PYTHON = sys.executable


def this_machine() -> T.Node:
    return T.from_sysfs()


def synthetic_domains() -> T.Node:
    """One NUMA domain per CPU of this process, numbered like its CPUs: CPU c is in domain c."""
    return T.from_synthetic(f"numa:{max(CPUS) + 1} core:1 pu:1", allowed=CPUS)


def as_json(p: P.WorkerPlacement) -> str:
    return json.dumps(
        {
            "worker": p.worker,
            "node": p.node,
            "numa": p.numa,
            "cores": p.cores,
            "thread_cores": p.thread_cores,
            "memory": p.memory,
        }
    )


# A rank gets its placement without importing t2mpi.resources.placement (and numpy): a namedtuple alike.
PRELUDE = """\
import json, os, sys
from collections import namedtuple
WorkerPlacement = namedtuple("WorkerPlacement", "worker node numa cores thread_cores memory")
"""


def in_subprocess(cwd: Path, *code: str, placement: P.WorkerPlacement | None = None, timeout: float = 120) -> dict:
    """Run the code in a fresh python with PLACEMENT defined; its last stdout line is JSON."""
    prelude = PRELUDE
    if placement is not None:
        prelude += f"PLACEMENT = WorkerPlacement(**json.loads({as_json(placement)!r}))\n"
    program = prelude + "".join(textwrap.dedent(c) for c in code)
    proc = subprocess.run([PYTHON, "-c", program], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"the subprocess failed ({proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


BIND_AND_REPORT = """
    from t2mpi.resources import binding
    b = binding.bind_worker(PLACEMENT{options})
    report = binding.read_binding()
    print(json.dumps({{"binding": b._asdict(), "report": report, "check": binding.check(PLACEMENT, report{check}),
                      "env": os.environ.get("OMP_NUM_THREADS"), "modules": sorted(sys.modules)}}))
"""


def bind_in_subprocess(cwd: Path, p: P.WorkerPlacement, options: str = "", check: str = "") -> dict:
    return in_subprocess(cwd, BIND_AND_REPORT.format(options=options, check=check), placement=p)


# ---- bind_worker -----------------------------------------------------------------------


def test_machine_has_the_cpus_these_tests_use():
    assert len(CPUS) >= 2, f"these tests need two CPUs, this process may use {CPUS}"


@pytest.mark.parametrize("cpus", [1, 2])
def test_each_worker_of_a_plan_runs_on_its_cores_and_numa(tmp_path, cpus):
    node = this_machine()
    plan = P.plan([node], workers=len(node.allowed_cores) // cpus, cpus=cpus, threads=cpus, memory=64 * MiB)
    for p in plan:
        out = bind_in_subprocess(tmp_path, p)
        b, report = out["binding"], out["report"]
        assert tuple(b["affinity"]) == p.cores == tuple(report["affinity"])
        assert b["cores"] == list(p.cores)
        assert b["mem_note"] == ""
        assert b["mempolicy"] == ["bind", [p.numa]]
        assert report["mempolicy"] == {"mode": "bind", "nodes": [p.numa]}
        main = next(t for t in report["threads"] if t["tid"] == report["tid"])
        assert main["affinity"] == list(p.cores) and main["last_cpu"] in p.cores
        assert out["check"] == []
    assert sorted(os.sched_getaffinity(0)) == CPUS  # this process was never rebound


def test_one_core_worker_last_ran_on_that_core(tmp_path):
    p = P.plan([this_machine()], workers=2, cpus=1, threads=1, memory=64 * MiB).worker(1)
    out = bind_in_subprocess(tmp_path, p)
    main = next(t for t in out["report"]["threads"] if t["tid"] == out["report"]["tid"])
    assert main["last_cpu"] == p.cores[0] == CPUS[1]  # field 39 of /proc/self/task/TID/stat


def test_threads_that_already_run_are_moved_onto_the_cores(tmp_path):
    p = P.plan([this_machine()], workers=2, cpus=1, threads=1, memory=64 * MiB).worker(1)
    out = in_subprocess(
        tmp_path,
        """
        import threading
        from t2mpi.resources import binding
        stop = threading.Event()
        early = threading.Thread(target=stop.wait, args=(60,), name="early")
        early.start()
        before = sorted(os.sched_getaffinity(early.native_id))
        b = binding.bind_worker(PLACEMENT)
        after = sorted(os.sched_getaffinity(early.native_id))
        report = binding.read_binding()
        stop.set()
        early.join(10)
        print(json.dumps({"tid": early.native_id, "before": before, "after": after, "rebound": b.rebound,
                          "check": binding.check(PLACEMENT, report)}))
    """,
        placement=p,
    )
    assert out["before"] == CPUS
    assert out["after"] == list(p.cores)
    assert out["tid"] in out["rebound"]
    assert out["check"] == []


def test_a_domain_that_is_not_a_memory_node_here_is_skipped_and_said_why(tmp_path):
    plan = P.plan([synthetic_domains()], workers=len(CPUS), cpus=1, threads=1, memory=64 * MiB)
    here = binding.memory_nodes()
    for p in plan:
        out = bind_in_subprocess(tmp_path, p)
        b = out["binding"]
        assert tuple(b["affinity"]) == p.cores
        if p.numa in here:
            assert b["mem_note"] == "" and b["mempolicy"] == ["bind", [p.numa]] and out["check"] == []
        else:
            assert f"NUMA {p.numa} is not a memory node" in b["mem_note"]
            assert b["mempolicy"] == ["default", []]
            assert out["check"] == [
                f"worker {p.worker}: the plan's NUMA domain {p.numa} is not a memory node here "
                f"(memory nodes: {binding.format_cpuset(here)}): was the plan made for another node?"
            ]
    assert any(p.numa not in here for p in plan), "on this machine the synthetic plan has a domain that is not here"


def test_memory_policy_can_be_preferred_or_left_alone(tmp_path):
    p = P.plan([this_machine()], workers=1, cpus=1, threads=1, memory=64 * MiB).worker(0)
    preferred = bind_in_subprocess(tmp_path, p, ", mem_policy='preferred'", ", mem_policy='preferred'")
    assert preferred["report"]["mempolicy"] == {"mode": "preferred", "nodes": [p.numa]}
    assert preferred["check"] == []
    untouched = bind_in_subprocess(tmp_path, p, ", mem_policy=None", ", mem_policy=None")
    assert untouched["report"]["mempolicy"] == {"mode": "default", "nodes": []}
    assert untouched["binding"]["mem_note"] == "no memory policy was asked for"
    assert untouched["check"] == []


def test_cores_this_process_may_not_use_raise_a_binding_error(tmp_path):
    outside = max(CPUS) + 1
    p = P.WorkerPlacement(0, 0, 0, (outside,), (outside,), 64 * MiB)
    out = in_subprocess(
        tmp_path,
        """
        from t2mpi.resources import binding
        try:
            binding.bind_worker(PLACEMENT)
        except binding.BindingError as exc:
            print(json.dumps({"error": str(exc), "affinity": sorted(os.sched_getaffinity(0))}))
    """,
        placement=p,
    )
    assert out["error"] == (
        f"worker 0: cannot bind to CPUs {outside}: Invalid argument; this process may use "
        f"CPUs {binding.format_cpuset(CPUS)} (was the plan made for another node?)"
    )
    assert out["affinity"] == CPUS


# ---- thread pools ---------------------------------------------------------------------


def test_pools_are_capped_by_environment_alone_when_no_blas_is_loaded(tmp_path):
    p = P.plan([this_machine()], workers=1, cpus=2, threads=1, memory=64 * MiB).worker(0)
    out = bind_in_subprocess(tmp_path, p)
    assert out["binding"]["pools"] == "env"
    assert out["env"] == "1"
    assert "threadpoolctl" not in out["modules"] and "numpy" not in out["modules"]


def test_a_blas_already_loaded_is_capped_with_threadpoolctl(tmp_path):
    p = P.plan([this_machine()], workers=1, cpus=2, threads=1, memory=64 * MiB).worker(0)
    out = in_subprocess(
        tmp_path,
        """
        import numpy
        import threadpoolctl
        before = [i["num_threads"] for i in threadpoolctl.threadpool_info()]
        from t2mpi.resources import binding
        b = binding.bind_worker(PLACEMENT)
        after = [i["num_threads"] for i in threadpoolctl.threadpool_info()]
        print(json.dumps({"pools": b.pools, "before": before, "after": after}))
    """,
        placement=p,
    )
    assert out["pools"].startswith("env + threadpoolctl (")
    assert out["before"] and max(out["before"]) > 1
    assert out["after"] == [1] * len(out["before"])


# ---- read_binding and check ------------------------------------------------------------


def test_read_binding_lists_every_thread_of_this_process():
    report = binding.read_binding()
    assert report["pid"] == os.getpid()
    assert sorted(t["tid"] for t in report["threads"]) == sorted(int(t) for t in os.listdir("/proc/self/task"))
    for t in report["threads"]:
        assert t["affinity"] == sorted(os.sched_getaffinity(t["tid"]))
        assert t["last_cpu"] in range(os.cpu_count() or 1)
    assert report["affinity"] == CPUS
    assert json.loads(json.dumps(report)) == report


def test_check_reports_a_worker_bound_to_another_workers_core(tmp_path):
    plan = P.plan([this_machine()], workers=2, cpus=1, threads=1, memory=64 * MiB)
    out = in_subprocess(
        tmp_path,
        f"""
        from t2mpi.resources import binding
        OTHER = WorkerPlacement(**json.loads({as_json(plan.worker(1))!r}))
        binding.bind_worker(PLACEMENT)
        print(json.dumps(binding.check(OTHER, binding.read_binding())))
    """,
        placement=plan.worker(0),
    )
    tid = "[0-9]+"
    assert len(out) == 2
    assert re.fullmatch(rf"worker 1: its thread {tid} may run on CPUs {CPUS[0]}; the plan gives it {CPUS[1]}", out[0])
    assert re.fullmatch(rf"worker 1: its thread {tid} last ran on CPU {CPUS[0]}, outside its cores {CPUS[1]}", out[1])


def test_check_names_each_kind_of_mismatch():
    p = P.WorkerPlacement(4, 0, 0, (2, 3), (2, 3), 64 * MiB)
    report = {
        "pid": 1,
        "tid": 10,
        "affinity": [2, 3],
        "mempolicy": {"mode": "default", "nodes": []},
        "memory_nodes": [0],
        "memory_limit": None,
        "threads": [
            {"tid": 10, "name": "python", "affinity": [2, 3], "last_cpu": 3},
            {"tid": 11, "name": "mpi-progress", "affinity": [0, 1, 2, 3], "last_cpu": 0},
            {"tid": 12, "name": "t2mpi-thread-0", "affinity": [2], "last_cpu": 2},
            {"tid": 13, "name": "t2mpi-thread-1", "affinity": [2], "last_cpu": 2},
        ],
        "pool": [
            {"thread": 0, "tid": 12, "core": 2},
            {"thread": 1, "tid": 13, "core": 3},
            {"thread": 2, "tid": 14, "core": 3},
        ],
    }
    assert binding.check(p, report) == [
        "worker 4: thread 11 (mpi-progress) may run on CPUs 0-3, outside the worker's cores 2-3",
        "worker 4: pool thread 1 (tid 13) may run on CPUs 2; the plan pins it to CPU 3",
        "worker 4: pool thread 2 (tid 14) is not among the process's threads",
        "worker 4: memory policy is default on nodes none; the plan wants bind on NUMA 0",
    ]
    report["threads"][1]["affinity"] = [3]
    report["threads"][3]["affinity"] = [3]
    report["pool"].pop()
    report["mempolicy"] = {"mode": "bind", "nodes": [0]}
    assert binding.check(p, report) == []


# ---- limit_memory ------------------------------------------------------------------------

OVER_THE_LIMIT = """
    import resource
    import numpy as np
    try:
        np.ones(1 << 27)  # 1 GiB, written
        raised = False
    except MemoryError:
        raised = True
    fits = np.ones(100 * 2**20 // 8)  # 100 MiB, within the limit
    small = np.arange(1000).sum()
    soft = resource.getrlimit(resource.RLIMIT_DATA)[0]
    out.update(raised=raised, fits=float(fits.sum()), small=int(small), soft=soft)
    print(json.dumps(out))
"""


def test_an_allocation_beyond_the_limit_raises_memory_error_and_the_worker_goes_on(tmp_path):
    out = in_subprocess(
        tmp_path,
        """
        import numpy as np
        from t2mpi.resources import binding
        limit = binding.limit_memory(300 * 2**20)
        out = {"limit": limit._asdict()}
    """,
        OVER_THE_LIMIT,
    )
    limit = out["limit"]
    assert limit["resource"] == "RLIMIT_DATA" and limit["nbytes"] == 300 * MiB
    assert limit["soft"] == out["soft"] == limit["base"] + 300 * MiB + limit["headroom"]
    assert limit["headroom"] == binding.HEADROOM + binding.HEADROOM_PER_CPU * len(CPUS)
    assert out["raised"] is True
    assert out["fits"] == 100 * MiB // 8 and out["small"] == 499500


@pytest.mark.mpi  # MPI_Init under the limit: each MPI's own start-up (its threads, its memory)
def test_a_limit_set_before_numpy_mpi_and_threads_lets_them_all_start(tmp_path):
    p = P.plan([this_machine()], workers=1, cpus=len(CPUS), threads=len(CPUS), memory=64 * MiB).worker(0)
    out = in_subprocess(
        tmp_path,
        """
        from t2mpi.resources import binding
        binding.bind_worker(PLACEMENT)
        limit = binding.limit_memory(300 * 2**20)   # before any of them
        import numpy as np
        from mpi4py import MPI
        from t2mpi.resources.threads import WorkerThreads
        total = MPI.COMM_WORLD.allreduce(1)
        a = np.ones((200, 200))
        with WorkerThreads(PLACEMENT.thread_cores) as pool:
            sums = pool.run_on_each(lambda: float((a @ a).sum()))
        out = {"total": total, "sums": sums}
    """,
        OVER_THE_LIMIT,
        placement=p,
    )
    assert out["total"] == 1
    assert out["sums"] == [200.0**3] * len(CPUS)
    assert out["raised"] is True and out["small"] == 499500


def test_limit_memory_refuses_a_size_that_is_not_positive():
    with pytest.raises(ValueError, match="nbytes must be positive"):
        binding.limit_memory(0)
