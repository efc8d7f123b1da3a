"""End to end: real mpiexec launches through `t2mpi run`, t2mpi.run() and mpiexec directly."""

from __future__ import annotations

import os
import pickle
import re
import signal
import stat
import subprocess
import sys

import numpy as np
import psutil
import pytest
from conftest import (
    JOBS,
    PYTHON,
    events_of,
    gone,
    interrupt_run,
    job_dirs,
    mpiexec,
    only_job,
    state_of,
    t2mpi,
    wait_for,
    write_job,
)

pytestmark = pytest.mark.mpi
HOST = os.uname().nodename


def test_hello_runs_to_completion(work):
    done = t2mpi("run", str(JOBS / "hello.yaml"), "-n", "2", cwd=work)
    assert done.returncode == 0, done.stderr
    for wid in (0, 1):
        assert f"[w{wid}] INFO hi from worker {wid} of 2 on {HOST}" in done.stderr
    assert "COMPLETED" in done.stderr
    job = only_job(work)
    assert stat.S_IMODE(job.stat().st_mode) == 0o700
    state = state_of(job)
    assert state["state"] == "COMPLETED"
    assert [(w["id"], w["host"], w["node"], w["local"], w["result"]) for w in state["workers"]] == [
        (0, HOST, 0, 0, "0"),
        (1, HOST, 0, 1, "2"),
    ]
    assert pickle.loads((job / "results.pkl").read_bytes()) == {0: 0, 1: 2}
    kinds = [e["event"] for e in events_of(job)]
    assert kinds[:2] == ["started", "joined"] and kinds[-1] == "ended"
    assert sorted(kinds[2:-1]) == ["worker_completed", "worker_completed"]
    assert "INFO hi from worker 1 of 2" in (job / "logs" / "worker-1.log").read_text()


def test_python_api_returns_results(work):
    import t2mpi

    result = t2mpi.run(JOBS / "hello.yaml", workers=3, overrides=["config.greeting=hey"])
    assert result.state == "COMPLETED" and result.ok and result.exit_code == 0
    assert result.results == {0: 0, 1: 2, 2: 4}
    assert set(result.worker_times) == {0, 1, 2}
    assert result.wall_time > 0
    assert "hey from worker 2" in (only_job(work) / "logs" / "worker-2.log").read_text()


def test_direct_mpiexec_launch(work):
    done = subprocess.run(
        mpiexec(3) + [PYTHON, "-m", "t2mpi.launch", str(JOBS / "hello.yaml"), "-n", "2"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "COMPLETED" in done.stdout and "[master]" in done.stdout
    assert state_of(only_job(work))["state"] == "COMPLETED"


def test_world_size_mismatch_is_one_error_from_every_rank(work):
    done = subprocess.run(
        mpiexec(3) + [PYTHON, "-m", "t2mpi.launch", str(JOBS / "hello.yaml")],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    said = re.findall(
        r"t2mpi\.launch: (rank \d): job 'hello' needs 5 MPI processes \(4 workers \+ 1 "
        r"master\) but was started with 3",
        done.stdout + done.stderr,
    )
    assert sorted(said) == ["rank 0", "rank 1", "rank 2"], done.stderr
    assert job_dirs(work) == []


FAILING = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            if ctx.worker_id == 1:
                raise ValueError("bad things in worker one")
            ctx.comm.Barrier()   # the others wait for worker 1 forever: the abort must end them
"""


def test_worker_exception_fails_the_job_and_ends_every_rank(work):
    job = write_job(work, "failing", FAILING, workers=3)
    done = t2mpi("run", str(job), cwd=work, timeout=120)
    assert done.returncode == 1
    assert f"worker 1 of 3 on {HOST}" in done.stderr
    assert "Traceback" in done.stderr and "ValueError: bad things in worker one" in done.stderr
    state = state_of(only_job(work))
    assert state["state"] == "FAILED"
    assert state["reason"] == f"worker 1 on {HOST} failed: ValueError: bad things in worker one"
    assert "raise ValueError" in state["workers"][1]["error"]
    assert {w["state"] for w in state["workers"][::2]} == {"KILLED"}


def test_bad_result_is_reported_not_hung(work):
    job = write_job(
        work,
        "badresult",
        """
        import threading
        from t2mpi import IWorker

        class Job(IWorker):
            def execute(self, ctx):
                return threading.Lock()   # cannot be pickled to the master
    """,
    )
    done = t2mpi("run", str(job), cwd=work)
    assert done.returncode == 1
    assert "cannot pickle '_thread.lock' object" in state_of(only_job(work))["reason"]


def test_controller_workers_barrier_and_progress(work):
    job = write_job(
        work,
        "ctl",
        """
        import sys
        from t2mpi import IWorker

        class Job(IWorker):
            def execute(self, ctx):
                for step in range(3):
                    ctx.progress((step + 1) / 3, f"step {step}")
                    ctx.controller.barrier(timeout=60)
                total = ctx.comm.allreduce(ctx.worker_id)
                # pyhwloc and the Open MPI wheel break in one process: ranks never load it
                assert "pyhwloc" not in sys.modules
                return [tuple(w) for w in ctx.controller.workers()], total, ctx.persistent_dir
    """,
        workers=3,
    )
    import t2mpi

    result = t2mpi.run(job)
    assert result.ok, result.reason
    lists = {wid: r[0] for wid, r in result.results.items()}
    assert len({tuple(v) for v in lists.values()}) == 1
    assert [(w[0], w[1], w[3], w[4]) for w in lists[0]] == [(i, HOST, 0, i) for i in range(3)]
    assert {r[1] for r in result.results.values()} == {0 + 1 + 2}
    assert os.path.isdir(result.results[2][2]) and result.results[2][2].startswith(result.job_dir)
    progress = [e for e in events_of(only_job(work)) if e["event"] == "progress"]
    assert {(e["worker"], e["message"]) for e in progress} >= {(w, "step 2") for w in range(3)}


def test_barrier_timeout_names_the_missing_worker(work):
    job = write_job(
        work,
        "late",
        """
        import threading
        from t2mpi import IWorker

        class Job(IWorker):
            def execute(self, ctx):
                if ctx.worker_id == 0:
                    threading.Event().wait(600)   # never arrives: ended by the abort
                ctx.controller.barrier(timeout=1)
    """,
        workers=3,
    )
    done = t2mpi("run", str(job), cwd=work)
    assert done.returncode == 1
    assert "BarrierError: barrier 1 timed out; workers not there: 0" in done.stderr


def test_sigterm_to_the_client_ends_every_rank_and_says_it_was_sigterm(work):
    code, err, family, ranks, jobdir = interrupt_run(work, signum=signal.SIGTERM)
    assert ranks == 3
    assert code == 143, err
    assert "t2mpi: terminated (SIGTERM); every rank was ended" in err
    assert gone(family) == []
    state = state_of(jobdir)
    assert (state["state"], state["reason"]) == ("KILLED", "terminated (SIGTERM)")


def test_sigint_to_the_client_ends_every_rank(work):
    code, err, family, ranks, jobdir = interrupt_run(work)
    assert ranks == 3  # master and two workers were running
    assert code == 130, err
    assert gone(family) == []
    state = state_of(jobdir)
    assert state["state"] == "KILLED" and "interrupted" in state["reason"]


def test_kmeans_matches_sequential_reference(work):
    import t2mpi

    sys.path.insert(0, str(JOBS))
    try:
        import kmeans
    finally:
        sys.path.remove(str(JOBS))
    overrides = ["config.points=30000", "config.iterations=20"]
    result = t2mpi.run(JOBS / "kmeans.yaml", workers=3, overrides=overrides)
    assert result.ok, result.reason
    cfg = dict(seed=42, points=30000, dims=8, clusters=16, iterations=20)
    expected = kmeans.kmeans_sequential(cfg, parts=3)
    for wid in range(3):
        np.testing.assert_allclose(result.results[wid], expected, rtol=1e-10, atol=1e-10)
    assert not np.allclose(expected, kmeans.initial_centroids(42, 8, 16))


def test_dry_run_prints_the_command_and_launches_nothing(work):
    done = t2mpi("run", str(JOBS / "hello.yaml"), "--dry-run", "-n", "3", cwd=work)
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip().splitlines()[-1]
    assert " -n 4 " in command and "-P -m t2mpi.launch --job-dir" in command
    assert "OMP_NUM_THREADS=1" in done.stdout
    assert job_dirs(work) == []  # and no process is left (the work fixture checks)


def test_launch_entry_help_and_bad_arguments(work):
    done = subprocess.run(
        mpiexec(2) + [PYTHON, "-m", "t2mpi.launch", "--help"], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "usage: python -m t2mpi.launch" in done.stdout
    done = subprocess.run(
        mpiexec(2) + [PYTHON, "-m", "t2mpi.launch", str(JOBS / "hello.yaml"), "-n", "x"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "t2mpi.launch: -n: 'x' is not a whole number" in done.stderr
    assert job_dirs(work) == []


def _run_until_running(work, job, *args):
    client = subprocess.Popen(
        [PYTHON, "-m", "t2mpi", "run", str(job), *args],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    jobdir = wait_for(lambda: (job_dirs(work) or [None])[0], 60, "the job folder")
    wait_for(lambda: (jobdir / "state.json").exists() and state_of(jobdir)["state"] == "RUNNING", 60, "the job to run")
    return client, jobdir


LIVE = """
    import ctypes, threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(0.5, "halfway")
            if ctx.worker_id == 1 and ctx.config.get("hold_gil"):
                ctypes.PyDLL(None).sleep(600)          # a C call that keeps the GIL: no heartbeat
            threading.Event().wait(600)
"""


@pytest.mark.parametrize("how", ["SIGSTOP", "GIL"])
def test_a_silent_worker_is_found_and_every_rank_ends(work, how):
    job = write_job(work, "silent", LIVE, workers=2, timeouts={"heartbeat": 3}, config={"hold_gil": how == "GIL"})
    client, jobdir = _run_until_running(work, job)
    try:
        family = psutil.Process(client.pid).children(recursive=True)
        if how == "SIGSTOP":  # once its progress is in: the report names it
            wait_for(lambda: state_of(jobdir)["workers"][1]["message"] == "halfway", 60, "its progress")
            os.kill(state_of(jobdir)["workers"][1]["pid"], signal.SIGSTOP)
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 1, err
    state = state_of(jobdir)
    assert state["state"] == "FAILED"
    assert f"worker 1 on {HOST}" in state["reason"] and "stopped heartbeating" in state["reason"]
    assert "last progress: 'halfway'" in state["reason"]
    assert gone(family) == []


def test_a_worker_without_progress_is_reported_hung(work):
    job = write_job(work, "hung", LIVE, workers=2, timeouts={"progress": 2})
    done = t2mpi("run", str(job), cwd=work, timeout=60)
    assert done.returncode == 1
    reason = state_of(only_job(work))["reason"]
    assert "is hung: no ctx.progress() for" in reason and "(timeouts.progress 2 s)" in reason


def test_a_killed_worker_ends_the_job_with_no_process_left(work):
    job = write_job(work, "killed", LIVE, workers=2)
    client, jobdir = _run_until_running(work, job)
    try:
        family = psutil.Process(client.pid).children(recursive=True)
        os.kill(state_of(jobdir)["workers"][0]["pid"], signal.SIGKILL)
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 1
    assert state_of(jobdir)["state"] == "FAILED"
    assert gone(family) == []


SCRATCH = """
    import os
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            with open(os.path.join(ctx.scratch_dir, "part"), "w") as f:
                f.write("x")
            if ctx.config.get("fail") == "kill":
                ctx.comm.Barrier()  # both have written their part
                if ctx.worker_id == 1:
                    os.kill(os.getpid(), 9)  # no code of its own runs at its end
                ctx.comm.Barrier()  # worker 0: here until the job's end ends it
            if ctx.config.get("fail"):
                raise RuntimeError("on purpose")
            return ctx.scratch_dir
"""


@pytest.mark.parametrize("fail, keep", [(False, False), (True, False), ("kill", False), (False, True)])
def test_a_workers_scratch_goes_when_it_ends_unless_kept(work, fail, keep):
    scratch = work / "scratch"
    job = write_job(work, "scratch", SCRATCH, scratch_dir=str(scratch), keep_scratch=keep, config={"fail": fail})
    done = t2mpi("run", str(job), cwd=work, timeout=120)
    assert done.returncode == (1 if fail else 0), done.stderr

    def left():
        return sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*")) if scratch.exists() else []

    if fail == "kill":  # SIGKILLed workers: their watchers (t2mpi/reaper.py) remove the folders
        wait_for(lambda: left() == [], 30, "the killed workers' scratch to go")
    left = left()
    if keep:
        parts = [p for p in left if p.endswith("/part")]
        assert len(parts) == 2 and all(re.fullmatch(r"t2mpi-[^/]+/worker-[01]/part", p) for p in parts), left
    else:
        assert left == []  # the workers' folders and the job's folder above them
