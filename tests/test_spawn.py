"""`master: client`: the master runs beside the client as a one-rank launch that spawns the workers."""

from __future__ import annotations

import os

import pytest
from conftest import JOBS, gone, interrupt_run, job_dirs, only_job, state_of, t2mpi, write_job

pytestmark = pytest.mark.mpi
HOST = os.uname().nodename

REPORTER = """
    import os
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(1.0, f"worker {ctx.worker_id} done")
            total = ctx.comm.allreduce(ctx.worker_id)
            return {"id": ctx.worker_id, "total": total, "omp": os.environ.get("OMP_NUM_THREADS"),
                    "workers": [tuple(w) for w in ctx.controller.workers()]}
"""


def test_results_come_back_as_objects_with_progress(work):
    import t2mpi

    job = write_job(work, "reporter", REPORTER, workers=3)
    seen = []
    first = t2mpi.run(job, master="client", progress=seen.append)
    second = t2mpi.run(job, master="client", workers=2)  # several jobs from one process
    assert first.ok and second.ok, (first.reason, second.reason)
    assert sorted(first.results) == [0, 1, 2]
    assert {r["total"] for r in first.results.values()} == {3}
    assert {r["omp"] for r in first.results.values()} == {"1"}
    assert [w[:2] for w in first.results[0]["workers"]] == [(i, HOST) for i in range(3)]
    assert sorted(e["message"] for e in seen) == [f"worker {i} done" for i in range(3)]
    assert {r["total"] for r in second.results.values()} == {1}
    states = [state_of(d) for d in job_dirs(work)]
    assert sorted(s["master"]["mode"] for s in states) == ["client", "client"]
    assert all(s["state"] == "COMPLETED" for s in states)


def test_worker_exception_fails_the_job_and_ends_the_workers(work):
    job = write_job(
        work,
        "failing",
        """
        from t2mpi import IWorker

        class Job(IWorker):
            def execute(self, ctx):
                if ctx.worker_id == 2:
                    raise RuntimeError("worker two gives up")
                ctx.comm.Barrier()
    """,
        workers=3,
    )
    done = t2mpi("run", str(job), "--master", "client", cwd=work)
    assert done.returncode == 1
    assert "RuntimeError: worker two gives up" in done.stderr
    state = state_of(only_job(work))
    assert state["state"] == "FAILED" and state["master"]["mode"] == "client"
    assert state["reason"] == f"worker 2 on {HOST} failed: RuntimeError: worker two gives up"


def test_sigint_ends_the_master_and_every_worker(work):
    code, err, family, ranks, jobdir = interrupt_run(work, "--master", "client")
    assert ranks == 3  # the master and the two it spawned
    assert code == 130, err
    assert gone(family) == []
    assert state_of(jobdir)["state"] == "KILLED"


def test_master_mode_is_validated(work):
    done = t2mpi("run", str(JOBS / "hello.yaml"), "--set", "master=elsewhere", cwd=work)
    assert done.returncode == 2
    assert "master: 'elsewhere' is not a master mode; use one of rank0, client" in done.stderr


def test_a_killed_client_ends_its_master_and_every_worker(work):
    """SIGKILL of the client: the master (a separate launch) sees it within a second and ends
    the job KILLED; no rank is left."""
    import signal
    import subprocess

    import psutil
    from conftest import PYTHON, SLEEPY, events_of, wait_for

    job = write_job(work, "sleepy", SLEEPY, workers=2)
    client = subprocess.Popen(
        [PYTHON, "-m", "t2mpi", "run", str(job), "--master", "client", "-q"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        jobdir = wait_for(lambda: (job_dirs(work) or [None])[0], 60, "the job folder")
        wait_for(
            lambda: (
                (jobdir / "events.jsonl").exists() and sum(e["event"] == "progress" for e in events_of(jobdir)) == 2
            ),
            60,
            "the workers",
        )
        family = psutil.Process(client.pid).children(recursive=True)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
    assert len(family) >= 4  # mpiexec, the master and its two workers (and hydra's proxies)
    assert gone(family, timeout=20) == []
    state = wait_for(lambda: state_of(jobdir) if state_of(jobdir)["state"] != "RUNNING" else None, 10, "the end")
    assert state["state"] == "KILLED"
    assert state["reason"] == f"the client that started the job (pid {client.pid}) is gone"
