"""Job status from the scheduler's view and the master's state file, with a stand-in scontrol."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
from conftest import JOBS, t2mpi

from t2mpi.job.folder import JobDir
from t2mpi.job.spec import load


def _job_with_fake_scontrol(work, answer: str):
    spec = load(JOBS / "hello.yaml", environ={"HOME": str(work)})
    jd = JobDir.create(work / "t2mpi-jobs", "hello", spec.to_dict())
    jd.write_scheduler("slurm", "7")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    fake.write_text(f"#!/bin/sh\necho '{answer}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return jd, env


@pytest.mark.parametrize(
    "answer, state, reason",
    [
        ("JobId=7 JobState=TIMEOUT Reason=TimeLimit", "FAILED", "slurm job 7: TIMEOUT (TimeLimit)"),
        ("JobId=7 JobState=OUT_OF_MEMORY Reason=OutOfMemory", "FAILED", "slurm job 7: OUT_OF_MEMORY (OutOfMemory)"),
        ("JobId=7 JobState=NODE_FAIL Reason=NodeDown", "FAILED", "slurm job 7: NODE_FAIL (NodeDown)"),
        ("JobId=7 JobState=PREEMPTED Reason=None", "KILLED", "slurm job 7: PREEMPTED"),
        ("JobId=7 JobState=CANCELLED Reason=None", "KILLED", "slurm job 7: CANCELLED"),
    ],
)
def test_a_job_the_scheduler_ended_is_settled_with_its_reason(work, answer, state, reason):
    jd, env = _job_with_fake_scontrol(work, answer)
    done = t2mpi("status", jd.job_id, "--json", cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["state"], shown["reason"]) == (state, reason)
    assert json.loads(open(jd.state_file).read())["state"] == state  # written, and final now


def test_a_pending_job_says_why(work):
    jd, env = _job_with_fake_scontrol(work, "JobId=7 JobState=PENDING Reason=Resources")
    done = t2mpi("status", jd.job_id, cwd=work, env=env)
    assert done.returncode == 0
    assert f"job {jd.job_id}: PENDING — slurm job 7: PENDING (Resources)" in done.stdout
    assert not os.path.exists(jd.state_file)


def test_the_master_state_wins_once_final(work):
    jd, env = _job_with_fake_scontrol(work, "JobId=7 JobState=FAILED Reason=NonZeroExitCode")
    jd.write_state(
        {
            "job_id": jd.job_id,
            "state": "COMPLETED",
            "reason": "all workers completed",
            "num_workers": 1,
            "started": 1.0,
            "ended": 2.0,
            "workers": [],
        }
    )
    shown = json.loads(t2mpi("status", jd.job_id, "--json", cwd=work, env=env).stdout)
    assert shown["state"] == "COMPLETED"


def test_list_skips_folders_being_made_and_tolerates_broken_ones(work):
    spec = load(JOBS / "hello.yaml", environ={"HOME": str(work)})
    good = JobDir.create(work / "t2mpi-jobs", "hello", spec.to_dict())
    (work / "t2mpi-jobs" / ".hello-x.creating").mkdir()
    broken = JobDir.create(work / "t2mpi-jobs", "other", spec.to_dict())
    open(broken.state_file, "w").write("{not json")
    done = t2mpi("list", cwd=work)
    assert done.returncode == 0, done.stderr
    assert good.job_id in done.stdout and "STARTING" in done.stdout
    assert broken.job_id in done.stdout and "UNREADABLE" in done.stdout
    assert ".creating" not in done.stdout


def _master_writes(folders, barrier):
    for folder in folders:
        jd = JobDir(folder)
        barrier.wait(timeout=30)
        jd.write_state({"job_id": jd.job_id, "state": "COMPLETED", "reason": "all workers completed", "workers": []})


def _client_settles(folders, barrier):
    for folder in folders:
        jd = JobDir(folder)
        barrier.wait(timeout=30)
        jd.settle("FAILED", "slurm job 7: COMPLETED without a master end", by="slurm")


def test_a_settle_racing_the_masters_end_never_overwrites_it(work):
    # the master writes COMPLETED while a t2mpi status settles the job FAILED, at the same moment,
    # many times: whichever comes first, the master's end is what stays
    import multiprocessing

    spec = load(JOBS / "hello.yaml", environ={"HOME": str(work)})
    dirs = [JobDir.create(work / "t2mpi-jobs", f"race{i}", spec.to_dict()) for i in range(150)]
    for jd in dirs:
        jd.write_state({"job_id": jd.job_id, "state": "RUNNING", "reason": "", "workers": []})
    folders = [jd.path for jd in dirs]
    ctx = multiprocessing.get_context("spawn")  # not fork: the test process has threads
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=f, args=(folders, barrier)) for f in (_master_writes, _client_settles)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    states = [json.loads(open(jd.state_file).read())["state"] for jd in dirs]
    assert states == ["COMPLETED"] * len(dirs)


def _ended_jobs(work, ends):
    """Job folders in work/t2mpi-jobs: (name, state, ended seconds ago or None) each."""
    spec = load(JOBS / "hello.yaml", environ={"HOME": str(work)})
    made = {}
    now = time.time()
    for name, state, ago in ends:
        jd = JobDir.create(work / "t2mpi-jobs", name, spec.to_dict())
        record = {"job_id": jd.job_id, "state": state, "reason": "", "workers": [], "started": now - 99999}
        if ago is not None:
            record["ended"] = now - ago
        jd.write_state(record)
        made[name] = jd
    return made


def test_clean_removes_only_jobs_that_ended_long_enough_ago_in_the_states_asked(work):
    jobs = _ended_jobs(
        work,
        [
            ("old_ok", "COMPLETED", 9 * 86400),
            ("old_failed", "FAILED", 8 * 86400),
            ("new_ok", "COMPLETED", 60),
            ("running", "RUNNING", None),
            ("preempted", "PREEMPTED", 30 * 86400),  # its scheduler may requeue it
        ],
    )
    jobs_dir = str(work / "t2mpi-jobs")
    dry = t2mpi("clean", "--jobs-dir", jobs_dir, "--older-than", "7d", "--dry-run", cwd=work)
    assert dry.returncode == 0, dry.stderr
    assert sorted(line.split()[2].split("-")[0] for line in dry.stdout.splitlines()[:-1]) == ["old_failed", "old_ok"]
    assert dry.stdout.splitlines()[-1].startswith("would remove 2 job folders")
    assert all(os.path.isdir(jd.path) for jd in jobs.values())  # a dry run removes nothing

    done = t2mpi("clean", "--jobs-dir", jobs_dir, "--older-than", "7d", "--state", "completed", cwd=work)
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(jobs["old_ok"].path)
    assert [n for n, jd in jobs.items() if os.path.isdir(jd.path)] == ["old_failed", "new_ok", "running", "preempted"]
    assert done.stdout.splitlines()[-1].startswith("removed 1 job folder ")

    everything = t2mpi("clean", "--jobs-dir", jobs_dir, cwd=work)
    assert everything.returncode == 0
    assert sorted(os.listdir(jobs_dir)) == sorted(os.path.basename(jobs[n].path) for n in ("running", "preempted"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--older-than", "7 weeks"], "--older-than '7 weeks': give a number and a unit, s, m, h or d"),
        (
            ["--state", "RUNNING"],
            "--state 'RUNNING': RUNNING cannot be cleaned; give some of COMPLETED, FAILED, KILLED, LOST",
        ),
    ],
)
def test_clean_refuses_bad_arguments_in_one_line(work, args, message):
    done = t2mpi("clean", "--jobs-dir", str(work / "t2mpi-jobs"), *args, cwd=work)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"t2mpi: {message}"), done.stderr  # one line, no traceback
