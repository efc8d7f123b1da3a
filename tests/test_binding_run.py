"""binding in real launches: with mode cores each worker and each of its threads on its planned
core, the memory limit enforced, and a request the node cannot hold refused with the planner's
reason; mode auto saying why it does not bind outside a job's own allocation."""

from __future__ import annotations

import os

import pytest
from conftest import JOBS, only_job, state_of, t2mpi, write_job

pytestmark = pytest.mark.mpi
CORES = sorted(os.sched_getaffinity(0))

REPORTER = """
    import os
    from t2mpi import IWorker
    from t2mpi import _native

    class Job(IWorker):
        def execute(self, ctx):
            on_threads = ctx.threads.run_on_each(lambda: (_native.gettid(), _native.getaffinity()))
            return {"process": sorted(os.sched_getaffinity(0)), "threads": on_threads,
                    "blas": os.environ.get("OPENBLAS_NUM_THREADS"),
                    "squares": ctx.threads.map(lambda x: x * x, range(5))}
"""


def test_each_worker_runs_on_its_planned_core(work):
    import t2mpi

    job = write_job(work, "bound", REPORTER, workers=len(CORES), binding={"mode": "cores"})
    result = t2mpi.run(job)
    assert result.ok, result.reason
    seen = [tuple(result.results[w]["process"]) for w in range(len(CORES))]
    assert sorted(seen) == [(c,) for c in CORES]  # one distinct core each
    state = state_of(only_job(work))
    for w in state["workers"]:
        b = w["binding"]
        assert b["affinity"] == b["cores"] == list(result.results[w["id"]]["process"])
        assert b["mismatches"] == []
        assert b["mempolicy"][0] == "bind"
    assert all(r["squares"] == [0, 1, 4, 9, 16] for r in result.results.values())
    # the node's topology was read once, by its first worker, and reported to the master
    facts = [w.get("topology") for w in state["workers"]]
    assert facts[1:] == [None] * (len(CORES) - 1)
    assert facts[0]["hostname"] == os.uname().nodename and facts[0]["pus"] >= len(CORES)
    from t2mpi.resources.topology import parse_cpuset

    assert parse_cpuset(facts[0]["allowed"]) == tuple(CORES)
    # the master is pinned as the plan says: here every core has a worker, so it shares one
    master = state["master"]["binding"]
    assert master["affinity"] == [master["pu"]] and master["pu"] in CORES
    assert master["shares_with"] is not None


def test_the_master_gets_a_core_no_worker_uses_when_there_is_one(work):
    import t2mpi

    job = write_job(work, "bound", REPORTER, workers=max(1, len(CORES) - 1), binding={"mode": "cores"})
    result = t2mpi.run(job)
    assert result.ok, result.reason
    used = {c for r in result.results.values() for c in r["process"]}
    master = state_of(only_job(work))["master"]["binding"]
    assert master["shares_with"] is None and master["affinity"] == [master["pu"]]
    assert master["pu"] not in used


def test_threads_of_one_worker_each_on_one_core(work):
    import t2mpi

    job = write_job(
        work,
        "threads",
        REPORTER,
        workers=1,
        binding={"mode": "cores"},
        resources={"cpus": len(CORES), "threads": len(CORES), "memory": "1G"},
    )
    result = t2mpi.run(job)
    assert result.ok, result.reason
    r = result.results[0]
    assert [tuple(aff) for _tid, aff in r["threads"]] == [(c,) for c in CORES]
    assert len({tid for tid, _ in r["threads"]}) == len(CORES)
    assert r["blas"] == str(len(CORES))


def test_a_job_that_does_not_fit_the_node_says_why(work):
    done = t2mpi("run", str(JOBS / "hello.yaml"), "-n", str(len(CORES) + 1), "--set", "binding.mode=cores", cwd=work)
    assert done.returncode == 1
    n = len(CORES) + 1
    assert (
        f"{n} workers × 1 cpu = {n} cores; node {os.uname().nodename} has {len(CORES)} allowed cores"
        in state_of(only_job(work))["reason"]
    )


def test_memory_past_the_limit_is_a_memory_error_in_that_worker(work):
    job = write_job(
        work,
        "greedy",
        """
        import numpy as np
        from t2mpi import IWorker

        class Job(IWorker):
            def execute(self, ctx):
                if ctx.worker_id == 0:
                    return np.ones(2 << 30, dtype=np.uint8).sum()   # 2 GiB against 256 MiB
                return 0
    """,
        workers=1,
        binding={"mode": "cores"},
        resources={"cpus": 1, "threads": 1, "memory": "256M"},
    )
    done = t2mpi("run", str(job), cwd=work)
    assert done.returncode == 1
    state = state_of(only_job(work))
    assert (
        state["reason"].startswith(f"worker 0 on {os.uname().nodename} failed: ") and "MemoryError" in state["reason"]
    )


def test_report_bindings_prints_planned_and_actual(work):
    done = t2mpi(
        "run", str(JOBS / "hello.yaml"), "-n", "1", "--set", "binding.mode=cores", "--report-bindings", "-q", cwd=work
    )
    assert done.returncode == 0, done.stderr
    table = done.stderr[done.stderr.index("planned cores") :]
    assert f"       0  {os.uname().nodename}" in table and "bind 0" in table
    assert f"  master  {os.uname().nodename:<16} PU " in table and "kernel affinity" in table


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "PBS_JOBID")}
    return {**env, **extra}


def test_auto_says_why_it_does_not_bind_on_a_node_outside_an_allocation(work):
    hello = str(JOBS / "hello.yaml")
    dry = t2mpi("run", hello, "-n", "1", "--dry-run", cwd=work, env=_env())
    assert dry.returncode == 0, dry.stderr
    assert "# binding: none (auto: outside a scheduler allocation (no $SLURM_JOB_ID or $PBS_JOBID)" in dry.stdout
    done = t2mpi("run", hello, "-n", "1", "--report-bindings", "-q", cwd=work, env=_env())
    assert done.returncode == 0, done.stderr
    assert "\nbinding: none (auto: outside a scheduler allocation" in done.stderr
    assert f"       0  {os.uname().nodename:<16} not bound" in done.stderr
    chosen = state_of(only_job(work))["binding_mode"]
    assert chosen["mode"] == "none" and chosen["why"].startswith("auto: outside a scheduler allocation")


def test_auto_does_not_bind_in_an_allocation_whose_cgroup_is_not_this_process(work):
    """As in salloc's shell on a login node: the job's id, but not its cgroup."""
    env = _env(SLURM_JOB_ID="t2mpi-no-such-job", SLURM_JOB_NUM_NODES="1")
    done = t2mpi("run", str(JOBS / "hello.yaml"), "-n", "1", "--report-bindings", "-q", cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    state = state_of(only_job(work))
    assert state["binding_mode"]["mode"] == "none"
    assert "inside Slurm job t2mpi-no-such-job, but this process's cgroup (" in state["binding_mode"]["why"]
    assert all(w["binding"] is None for w in state["workers"])


def test_mode_cores_binds_anyway_and_says_so(work):
    done = t2mpi(
        "run",
        str(JOBS / "hello.yaml"),
        "-n",
        "1",
        "--set",
        "binding.mode=cores",
        "--report-bindings",
        "-q",
        cwd=work,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    assert "\nbinding: cores (binding.mode: cores)" in done.stderr
    assert state_of(only_job(work))["workers"][0]["binding"]["cores"]


def test_spawned_workers_bind_too(work):
    """master: client: the workers are spawned (MPI_Comm_spawn), and Open MPI binds spawned
    processes to a core each unless told not to; t2mpi places them itself."""
    n = str(min(2, len(CORES)))
    done = t2mpi(
        "run",
        str(JOBS / "hello.yaml"),
        "-n",
        n,
        "--master",
        "client",
        "--set",
        "binding.mode=cores",
        "-q",
        cwd=work,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    workers = state_of(only_job(work))["workers"]
    planned = [tuple(w["binding"]["cores"]) for w in workers]
    assert len(set(planned)) == len(workers), planned
    assert all(w["binding"]["affinity"] == w["binding"]["cores"] and not w["binding"]["mismatches"] for w in workers)
