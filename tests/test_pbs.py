"""PBS Pro and Torque end to end, against the stand-in server of tests/pbs_standin.py: submit
--wait, status, logs, list and cancel, each running the real generated script with the venv's
mpiexec, as a PBS MOM runs it."""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import JOBS, PYTHON, events_of, only_job, processes_mentioning, state_of, t2mpi, wait_for, write_job

pytestmark = pytest.mark.mpi
TESTS = Path(__file__).resolve().parent
COMMANDS = ("qsub", "qstat", "qdel", "pbs_mom")
HOST = socket.gethostname()
FLAVOURS = {"pbs": "pbspro", "torque": "torque"}


@pytest.fixture(params=sorted(FLAVOURS))
def pbs(request, work, monkeypatch):
    """The stand-in server's commands first on PATH; yields the scheduler kind (pbs, torque)."""
    bindir = work / "pbs-bin"
    bindir.mkdir()
    for name in COMMANDS:
        path = bindir / name
        path.write_text(
            f"#!{PYTHON}\nimport sys\nsys.path.insert(0, {str(TESTS)!r})\nimport pbs_standin\n"
            f"sys.exit(pbs_standin.main({name!r}, sys.argv[1:]))\n"
        )
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{Path(PYTHON).parent}:/usr/bin:/bin")
    monkeypatch.setenv("PBS_STANDIN_HOME", str(work / "pbs-server"))
    monkeypatch.setenv("PBS_STANDIN_FLAVOUR", FLAVOURS[request.param])
    return request.param


def server_record(job: Path) -> dict:
    """What the stand-in server recorded of the job's batch job."""
    seq = json.loads((job / "scheduler.json").read_text())["id"].split(".")[0]
    return json.loads((job.parent.parent / "pbs-server" / f"{seq}.json").read_text())


def test_submit_wait_status_logs_list(work, pbs):
    done = t2mpi("submit", str(JOBS / "hello.yaml"), "-n", "2", "--scheduler", pbs, "--wait", cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    job = only_job(work)
    assert done.stdout.strip().splitlines()[0] == job.name
    record = json.loads((job / "scheduler.json").read_text())
    assert record["kind"] == pbs and record["id"].endswith(".standin")
    assert state_of(job)["state"] == "COMPLETED"
    assert pickle.loads((job / "results.pkl").read_bytes()) == {0: 0, 1: 2}
    server = server_record(job)
    assert server["exit_status"] == 0 and server["state"] == ("C" if pbs == "torque" else "F")
    # PBS_NODEFILE: the host once per MPI process asked (2 workers + the master)
    nodefile = work / "pbs-server" / f"{record['id'].split('.')[0]}.nodes"
    assert nodefile.read_text().splitlines() == [HOST] * 3
    for w in (0, 1):
        assert f"[w{w}] INFO hi from worker {w} of 2" in (job / "batch.out").read_text()
    status = t2mpi("status", job.name, cwd=work)
    assert status.returncode == 0 and "COMPLETED" in status.stdout
    logs = t2mpi("logs", job.name, cwd=work)
    assert logs.returncode == 0 and "[w1] INFO hi from worker 1 of 2" in logs.stdout
    listing = t2mpi("list", cwd=work)
    assert f"{pbs} {record['id']}" in listing.stdout


FAILING = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            if ctx.worker_id == 1:
                raise RuntimeError("worker one gives up")
            return ctx.worker_id
"""


def test_a_failing_worker_fails_the_job(work, pbs):
    job_file = write_job(work, "failing", FAILING)
    done = t2mpi("submit", str(job_file), "--scheduler", pbs, "--wait", cwd=work)
    assert done.returncode != 0
    job = only_job(work)
    state = state_of(job)
    assert state["state"] == "FAILED" and "worker one gives up" in state["reason"]
    assert server_record(job)["exit_status"] != 0  # the batch job failed too
    status = t2mpi("status", job.name, cwd=work)
    assert "FAILED" in status.stdout and "worker one gives up" in status.stdout


def test_a_job_that_fails_before_its_master_starts_is_failed_with_its_exit_status(work, pbs):
    """The master never writes an end: the scheduler's exit status is what t2mpi says."""
    done = t2mpi(
        "submit", str(JOBS / "hello.yaml"), "-n", "1", "--scheduler", pbs,
        "--set", "scheduler.prologue=[exit 3]", "--wait", cwd=work,
    )  # fmt: skip
    assert done.returncode != 0
    job = only_job(work)
    state = state_of(job)
    sched_id = json.loads((job / "scheduler.json").read_text())["id"]
    assert state["state"] == "FAILED"
    assert state["reason"] == f"{pbs} job {sched_id}: FAILED (exit status 3)"
    status = t2mpi("status", job.name, cwd=work)
    assert "FAILED" in status.stdout and "exit status 3" in status.stdout


SLEEPER = """
    import threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(0.0, "sleeping")
            threading.Event().wait(600)
"""


def test_cancel_ends_the_job_killed_with_no_process_left(work, pbs):
    job_file = write_job(work, "sleepy", SLEEPER, workers=2)
    done = t2mpi("submit", str(job_file), "--scheduler", pbs, cwd=work)
    assert done.returncode == 0, done.stderr
    job = only_job(work)
    wait_for(
        lambda: (job / "events.jsonl").exists() and sum(e["event"] == "progress" for e in events_of(job)) == 2,
        90,
        "both workers to run",
    )
    assert processes_mentioning(str(job))  # the ranks are there now
    status = t2mpi("status", job.name, cwd=work)
    assert "RUNNING" in status.stdout
    cancel = t2mpi("cancel", job.name, cwd=work)
    assert cancel.returncode == 0, cancel.stderr
    state = state_of(job)
    sched_id = json.loads((job / "scheduler.json").read_text())["id"]
    assert state["state"] == "KILLED" and state["reason"] == f"cancelled (qdel {sched_id})"
    wait_for(lambda: not processes_mentioning(str(job)), 30, "the job's processes to go")
    wait_for(lambda: server_record(job)["state"] in ("F", "C"), 30, "the server to finish the job")
    again = t2mpi("cancel", job.name, cwd=work)
    assert again.returncode == 1 and "already ended (KILLED): nothing to cancel" in again.stderr


def test_a_refused_submission_leaves_no_folder(work, pbs):
    done = t2mpi(
        "submit",
        str(JOBS / "hello.yaml"),
        "-n",
        "1",
        "--scheduler",
        pbs,
        "--set",
        "scheduler.directives=[-Z]",
        cwd=work,
    )
    assert done.returncode == 1, done.stderr
    assert f"{pbs} refused the job: command failed (exit status 2): qsub " in done.stderr
    assert "option -Z not recognized" in done.stderr
    assert not [p for p in (work / "t2mpi-jobs").iterdir()]


def test_torque_refuses_what_only_pbs_pro_asks_for(work, pbs):
    """The stand-in's Torque knows no select= chunks: a Torque job must ask with nodes=:ppn=."""
    done = t2mpi(
        "submit", str(JOBS / "hello.yaml"), "-n", "1", "--scheduler", pbs,
        "--set", "scheduler.directives=['-l select=1:ncpus=2']", "--wait", cwd=work,
    )  # fmt: skip
    if pbs == "torque":
        assert done.returncode == 1 and "Unknown resource type  Resource_List.select" in done.stderr
        assert not [p for p in (work / "t2mpi-jobs").iterdir()]
    else:
        assert done.returncode == 0, done.stderr
        assert state_of(only_job(work))["state"] == "COMPLETED"


ONCE = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            return ctx.worker_id + 10
"""


def test_restart_resubmits_a_failed_job_that_then_completes(work, pbs):
    """The first run fails in its prologue (before the master starts); t2mpi restart submits the
    same job.sh again, as a new batch job, which completes."""
    job_file = write_job(
        work, "once", ONCE, scheduler={"prologue": ["sh -c 'test -e tried || { touch tried; exit 3; }'"]}
    )
    first = t2mpi("submit", str(job_file), "--scheduler", pbs, "--wait", cwd=work)
    assert first.returncode != 0
    job = only_job(work)
    assert state_of(job)["reason"] == f"{pbs} job 1.standin: FAILED (exit status 3)"
    again = t2mpi("restart", job.name, "--wait", cwd=work)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resubmitted job {job.name} ({pbs} job 2.standin)" in again.stderr
    assert json.loads((job / "scheduler.json").read_text())["id"] == "2.standin"
    assert state_of(job)["state"] == "COMPLETED"
    assert pickle.loads((job / "results.pkl").read_bytes()) == {0: 10, 1: 11}


def test_the_queue_account_and_rerun_directives_reach_the_server(work, pbs):
    done = t2mpi(
        "submit", str(JOBS / "hello.yaml"), "-n", "1", "--scheduler", pbs, "--wait",
        "--set", "scheduler.partition=debug", "--set", "scheduler.account=proj7", "--set", "max_restarts=1", cwd=work,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    server = server_record(only_job(work))
    assert (server["queue"], server["account"], server["rerunnable"]) == ("debug", "proj7", True)
    shown = subprocess.run(
        ["qstat", "-f", *(["-x"] if pbs == "pbs" else []), server["id"]], capture_output=True, text=True, timeout=30
    )
    assert "    queue = debug\n" in shown.stdout and "    Account_Name = proj7\n" in shown.stdout
    assert "    Rerunable = True\n" in shown.stdout
