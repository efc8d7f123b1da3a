"""Real Slurm (slurm/cluster.sh, started by ./dev test): submit, wait, status, logs, list, cancel,
and sbatch --test-only of every script variant. Also PBS and Torque scripts run by bash under the
environment a PBS MOM gives a job."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    JOBS,
    PYTHON,
    events_of,
    job_dirs,
    only_job,
    processes_mentioning,
    stand_in_launcher,
    state_of,
    t2mpi,
    wait_for,
    write_job,
)

from t2mpi.job.spec import load
from t2mpi.mpi.launcher import Host, detect
from t2mpi.scheduler import scripts

pytestmark = pytest.mark.mpi
HOST = os.uname().nodename
MPI = detect(str(Path(PYTHON).parent / "mpiexec"))


@pytest.fixture(scope="session")
def slurm():
    """The test cluster must be up: a missing Slurm fails these tests, it never skips them."""
    if "SLURM_CONF" not in os.environ or shutil.which("sbatch") is None:
        pytest.fail(
            "no test Slurm cluster: run `slurm/cluster.sh install && slurm/cluster.sh start` "
            "and export SLURM_CONF (./dev test does both)"
        )
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or "idle" not in done.stdout and "mix" not in done.stdout:
        pytest.fail(f"the test Slurm cluster is not usable: {done.stdout}{done.stderr}")
    return os.environ["SLURM_CONF"]


SLEEPER = """
    import threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(0.0, "sleeping")
            threading.Event().wait(600)
"""


@pytest.mark.parametrize("launcher", ["mpiexec", "srun"])
def test_submit_wait_status_logs_list(work, slurm, launcher):
    done = t2mpi(
        "submit", str(JOBS / "hello.yaml"), "-n", "1", "--set", f"scheduler.launcher={launcher}", "--wait", cwd=work
    )
    assert done.returncode == 0, done.stderr
    job = only_job(work)
    assert done.stdout.strip().splitlines()[0] == job.name
    assert f"[w0] INFO hi from worker 0 of 1 on {HOST}" in done.stdout
    assert state_of(job)["state"] == "COMPLETED"
    assert pickle.loads((job / "results.pkl").read_bytes()) == {0: 0}
    record = json.loads((job / "scheduler.json").read_text())
    assert record["kind"] == "slurm" and record["id"].isdigit()
    assert "--job-dir" in (job / "job.sh").read_text()
    status = t2mpi("status", job.name, cwd=work)
    assert status.returncode == 0 and "COMPLETED" in status.stdout
    logs = t2mpi("logs", job.name, cwd=work)
    assert "[w0] INFO hi from worker 0 of 1" in logs.stdout
    listing = t2mpi("list", cwd=work)
    assert f"{job.name}" in listing.stdout and f"slurm {record['id']}" in listing.stdout


@pytest.mark.parametrize("launcher", ["mpiexec", "srun"])
def test_a_batch_job_chooses_its_transport_on_its_first_node(work, slurm, launcher):
    from t2mpi.mpi import launcher as mpilauncher
    from t2mpi.net import choice as netchoice
    from t2mpi.net import fabric, first_node

    done = t2mpi(
        "submit", str(JOBS / "hello.yaml"), "-n", "1", "--set", f"scheduler.launcher={launcher}", "--wait", cwd=work
    )
    assert done.returncode == 0, done.stderr
    job = only_job(work)
    expected = netchoice.choose(
        fabric.scan(),
        MPI.flavour,
        mpilauncher.components(MPI),
        {"transport": "auto", "interface": None, "ucx_tls": None, "provider": None},
    )
    chosen = json.loads((job / "network.json").read_text())
    assert (chosen["host"], chosen["transport"], chosen["env"], chosen["why"]) == (
        HOST,
        expected.transport,
        expected.env,
        expected.why,
    )
    events = [e for e in map(json.loads, (job / "events.jsonl").read_text().splitlines()) if e["event"] == "transport"]
    assert [(e["host"], e["env"]) for e in events] == [(HOST, expected.env)]
    assert f"t2mpi: transport chosen on {HOST}: {first_node.described(expected)}" in (job / "batch.out").read_text()
    for w in state_of(job)["workers"]:  # every rank ran with it, under mpiexec and srun alike
        assert {k: w["network"].get(k) for k in expected.env} == expected.env


def test_a_transport_the_first_node_cannot_give_fails_the_job_before_launch(work, slurm):
    done = t2mpi("submit", str(JOBS / "hello.yaml"), "-n", "1", "--set", "network.transport=ucx", "--wait", cwd=work)
    why = "network.transport ucx: no active InfiniBand or RoCE port on this node; use transport: auto or tcp"
    assert f"t2mpi: note: {why} (a batch job chooses its transport on its first node when it starts)" in done.stderr
    assert done.returncode == 1, done.stderr
    job = only_job(work)
    state = state_of(job)
    assert (state["state"], state["reason"], state["workers"]) == ("FAILED", f"on {HOST}: {why}", [])
    assert f"t2mpi: on {HOST}: {why}" in (job / "batch.out").read_text()
    assert not (job / "network.json").exists() and not list((job / "logs").iterdir())
    status = t2mpi("status", job.name, cwd=work)
    assert "FAILED" in status.stdout and why in status.stdout


def test_kmeans_through_slurm_matches_the_reference(work, slurm):
    import t2mpi as api

    sys.path.insert(0, str(JOBS))
    try:
        import kmeans
    finally:
        sys.path.remove(str(JOBS))
    done = t2mpi(
        "submit",
        str(JOBS / "kmeans.yaml"),
        "-n",
        "2",
        "--set",
        "config.points=20000",
        "--set",
        "config.iterations=10",
        "--set",
        "scheduler.directives=[--overcommit]",
        "--wait",
        cwd=work,
    )
    assert done.returncode == 0, done.stderr
    results = pickle.loads((only_job(work) / "results.pkl").read_bytes())
    expected = kmeans.kmeans_sequential(dict(seed=42, points=20000, dims=8, clusters=16, iterations=10), 2)
    for wid in (0, 1):
        np.testing.assert_allclose(results[wid], expected, rtol=1e-10, atol=1e-10)
    del api


def test_cancel_ends_the_job_killed_with_no_process_left(work, slurm):
    job = write_job(work, "sleepy", SLEEPER, workers=1)
    done = t2mpi("submit", str(job), cwd=work)
    assert done.returncode == 0, done.stderr
    folder = only_job(work)
    wait_for(lambda: (folder / "state.json").exists() and state_of(folder)["state"] == "RUNNING", 60, "the job to run")
    assert processes_mentioning(str(folder))  # its ranks are there now
    cancel = t2mpi("cancel", folder.name, cwd=work)
    assert cancel.returncode == 0, cancel.stderr
    state = state_of(folder)
    assert state["state"] == "KILLED" and "cancelled (scancel " in state["reason"]
    wait_for(lambda: not processes_mentioning(str(folder)), 30, "the job's processes to go")
    again = t2mpi("cancel", folder.name, cwd=work)
    assert again.returncode == 1 and "already ended (KILLED): nothing to cancel" in again.stderr


def test_a_batch_launch_that_never_starts_is_ended_failed(work, slurm):
    """The batch supervisor ends a launch whose master has not started within timeouts.start
    (here a stand-in launcher that hangs), in a job without max_restarts too."""
    import time

    launcher = stand_in_launcher(work)
    job = write_job(work, "stuck", SLEEPER, workers=1, mpi={"launcher": str(launcher)}, timeouts={"start": 5})
    began = time.monotonic()
    done = t2mpi("submit", str(job), "--wait", cwd=work, timeout=90)
    took = time.monotonic() - began
    print(f"hung launcher (batch): t2mpi submit --wait ended FAILED after {took:.1f} s (timeouts.start 5 s)")
    assert done.returncode == 1, done.stderr
    folder = only_job(work)
    state = state_of(folder)
    reason = (
        "the job master did not start within timeouts.start = 5 s; the MPI launch was ended; "
        "the launcher said: stand-in: resolving host n1 | stand-in: waiting for the proxies on n1"
    )
    assert (state["state"], state["reason"]) == ("FAILED", reason)
    assert [e["by"] for e in events_of(folder) if e["event"] == "ended"] == ["batch"]
    assert f"job {folder.name}: FAILED — {reason}" in done.stderr
    out = (folder / "batch.out").read_text()
    assert "stand-in: waiting for the proxies on n1\n" in out  # the launcher's own output is kept
    assert f"t2mpi.restart: job {folder.name} FAILED: {reason}" in out
    status = t2mpi("status", folder.name, cwd=work)
    assert status.returncode == 0 and f"FAILED — {reason}" in status.stdout
    wait_for(lambda: not processes_mentioning(str(work)), 30, "the stand-in and its helper to go")
    assert took < 5 + 30  # submission, the scheduler's start, the end: well before any walltime


def test_refused_submission_leaves_no_folder(work, slurm):
    done = t2mpi("submit", str(JOBS / "hello.yaml"), "-n", "1", "--set", "scheduler.partition=nosuch", cwd=work)
    assert done.returncode == 1
    assert "slurm refused the job: command failed (exit status 1): sbatch --parsable" in done.stderr
    assert "invalid partition" in done.stderr.lower()
    assert job_dirs(work) == [] and not [p for p in (work / "t2mpi-jobs").iterdir()]


def test_missing_sbatch_and_unknown_jobs(work, slurm):
    env = dict(os.environ, PATH=str(Path(PYTHON).parent))
    done = t2mpi("submit", str(JOBS / "hello.yaml"), "-n", "1", cwd=work, env=env)
    assert done.returncode == 1 and "sbatch is not on PATH: is this a slurm login node?" in done.stderr
    assert job_dirs(work) == []
    for command in ("status", "logs", "cancel"):
        unknown = t2mpi(command, "nosuch-job", cwd=work)
        assert unknown.returncode == 1
        assert "no job 'nosuch-job' in" in unknown.stderr


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["scheduler.launcher=srun"],
        ["resources.cpus=2", "resources.threads=2"],
        ["resources.cpus=2", "scheduler.launcher=srun"],
        ["scheduler.time=10", "scheduler.partition=debug"],
        ["scheduler.nodes=1", "scheduler.skip=[mem]", "scheduler.directives=[--exclusive]"],
    ],
)
def test_every_script_variant_passes_sbatch_test_only(tmp_path, slurm, overrides):
    spec = load(JOBS / "hello.yaml", overrides=["workers=1", *overrides], environ={"HOME": str(tmp_path)})
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    script = tmp_path / "job.sh"
    script.write_text(scripts.get("slurm").script(spec, str(job_dir), MPI, PYTHON, Host.here()))
    done = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "to start at" in done.stderr


@pytest.mark.parametrize("kind", ["pbs", "torque"])
def test_pbs_scripts_run_under_a_pbs_like_environment(work, kind):
    """No PBS server can be installed here: run the script as a PBS MOM would (bash, PBS_* set)."""
    spec = load(JOBS / "hello.yaml", overrides=["workers=2", f"scheduler.kind={kind}"], environ={"HOME": str(work)})
    from t2mpi.job.folder import JobDir

    jd = JobDir.make(JobDir.new_path(work / "t2mpi-jobs", "hello"), spec.to_dict())
    text = scripts.get(kind).script(spec, jd.path, MPI, PYTHON, Host.here())
    (Path(jd.path) / "job.sh").write_text(text)
    nodefile = work / "nodefile"
    nodefile.write_text(f"{HOST}\n" * 3)
    env = dict(
        os.environ,
        PBS_NODEFILE=str(nodefile),
        PBS_O_WORKDIR=str(work),
        PBS_JOBID="1.server",
        PBS_JOBNAME="hello",
        PBS_ENVIRONMENT="PBS_BATCH",
    )
    done = subprocess.run(
        ["bash", str(Path(jd.path) / "job.sh")], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert state_of(Path(jd.path))["state"] == "COMPLETED"
    assert pickle.loads(Path(jd.results_file).read_bytes()) == {0: 0, 1: 2}


# ---------------------------------------------------------------- walltime, requeue, restarts

STEADY = """
    import threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            state = ctx.restored or {"step": 0, "runs": []}
            state["runs"].append(state["step"])   # where each run began
            for step in range(state["step"], ctx.config["steps"]):
                threading.Event().wait(ctx.config["pause"])   # the work of one step
                state["step"] = step + 1
                if ctx.should_checkpoint() or ctx.config["every"] and (step + 1) % ctx.config["every"] == 0:
                    ctx.checkpoint(state)   # raises Preempted when the job is to stop
            return {"steps": state["step"], "runs": state["runs"], "restarts": ctx.restart_count}
"""


def follow_until_ended(folder: Path, timeout: float) -> dict:
    """Poll the job until its state file is final (a requeued job runs again by itself: the test
    cluster's credentials expire after 10 s, AuthInfo=cred_expire=10)."""

    def ended():
        state = state_of(folder) if (folder / "state.json").exists() else {}
        return state if state.get("state") in ("COMPLETED", "FAILED", "KILLED") else None

    return wait_for(ended, timeout, "the job to end")


def test_a_job_at_its_walltime_checkpoints_is_requeued_and_completes(work, slurm):
    """--time=2 --signal=B:USR1@60: Slurm signals 30-60 s into each run (its time-limit check runs
    every 30 s and may be up to 30 s early), so the 70 s of steps need one or two requeues."""
    job = write_job(
        work,
        "steady",
        STEADY,
        workers=1,
        max_restarts=4,
        config={"steps": 350, "pause": 0.2, "every": 0},
        scheduler={"time": 2, "signal": 60},
    )
    done = t2mpi("submit", str(job), cwd=work)
    assert done.returncode == 0, done.stderr
    folder = only_job(work)
    assert "#SBATCH --signal=B:USR1@60" in (folder / "job.sh").read_text()
    final = follow_until_ended(folder, 400)
    assert final["state"] == "COMPLETED", final
    result = pickle.loads((folder / "results.pkl").read_bytes())[0]
    history = json.loads((folder / "restarts.json").read_text())["history"]
    assert result["steps"] == 350 and result["restarts"] == len(history) >= 1
    assert all(h["state"] == "PREEMPTED" and "requeued" in h["why"] for h in history)
    runs = result["runs"]
    assert runs[0] == 0 and runs == sorted(runs) and len(runs) == len(history) + 1
    out = (folder / "batch.out").read_text()
    assert out.count("requeued (restart ") == len(history)  # one batch.out for every run (append)
    wait_for(lambda: not processes_mentioning(str(folder)), 30, "the job's processes to go")


def test_scontrol_requeue_mid_run_goes_on_from_the_last_checkpoint(work, slurm):
    job = write_job(work, "steady", STEADY, workers=1, max_restarts=2, config={"steps": 60, "pause": 0.1, "every": 5})
    done = t2mpi("submit", str(job), cwd=work)
    assert done.returncode == 0, done.stderr
    folder = only_job(work)
    job_id = json.loads((folder / "scheduler.json").read_text())["id"]
    from t2mpi.job.folder import JobDir

    wait_for(lambda: (JobDir(str(folder)).committed_version() or 0) >= 2, 120, "checkpoint 2")
    requeue = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=30)
    assert requeue.returncode == 0, requeue.stderr
    final = follow_until_ended(folder, 180)
    assert final["state"] == "COMPLETED", final
    result = pickle.loads((folder / "results.pkl").read_bytes())[0]
    assert result["steps"] == 60 and result["restarts"] == 1
    assert len(result["runs"]) == 2 and result["runs"][1] >= 10  # not from the start
    history = json.loads((folder / "restarts.json").read_text())["history"]
    assert len(history) == 1 and "requeued" in history[0]["why"]
    wait_for(lambda: not processes_mentioning(str(folder)), 30, "the job's processes to go")
