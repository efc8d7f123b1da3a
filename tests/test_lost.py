"""Local jobs whose master is gone (LOST), and t2mpi cancel of a local job: real `t2mpi run`s,
real SIGKILLs, real processes looked up in /proc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import (
    JOBS,
    PYTHON,
    SLEEPY,
    events_of,
    gone,
    processes_mentioning,
    state_of,
    t2mpi,
    wait_for,
    wait_for_workers,
    write_job,
)

from t2mpi.job.folder import JobDir
from t2mpi.job.spec import load

HOST = os.uname().nodename


def _start_run(work, *args: str, workers: int = 2) -> tuple[subprocess.Popen, object]:
    """A `t2mpi run` of a job whose workers wait forever, in a session of its own (as from a
    login shell), returned once every worker runs."""
    job = write_job(work, "sleepy", SLEEPY, workers=workers)
    client = subprocess.Popen(
        [PYTHON, "-m", "t2mpi", "run", str(job), *args],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    jobdir = wait_for_workers(work, workers, 90)
    wait_for(lambda: state_of(jobdir)["state"] == "RUNNING", 30, "the RUNNING state")
    return client, jobdir


def _status(work, job_id: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    shown = t2mpi("status", job_id, cwd=work)
    as_json = t2mpi("status", job_id, "--json", cwd=work)
    assert as_json.returncode == 0, as_json.stderr
    return shown, json.loads(as_json.stdout)


@pytest.mark.mpi
@pytest.mark.parametrize("master", ["rank0", "client"])
def test_a_run_killed_whole_reads_lost_at_the_next_status_and_is_settled(work, master):
    client, jobdir = _start_run(work, "--master", master)
    try:
        shown, state = _status(work, jobdir.name)
        assert state["state"] == "RUNNING" and shown.returncode == 0  # alive: unchanged
        assert state_of(jobdir)["state"] == "RUNNING"
        pid = state["master"]["pid"]
        assert state["master"]["host"] == HOST and state["master"]["pid_start"] > 0
        # the client, its launcher and every rank, at once: no one is left to record an end
        family = [psutil.Process(client.pid), *psutil.Process(client.pid).children(recursive=True)]
        assert psutil.pid_exists(pid) and pid in {p.pid for p in family}
        for p in family:
            p.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert gone(family) == []
        client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
    assert state_of(jobdir)["state"] == "RUNNING"  # what the folder says until someone looks
    looked = time.monotonic()
    shown, state = _status(work, jobdir.name)  # the first of these two calls settles it
    settled_in, looking = time.monotonic() - killed, time.monotonic() - looked
    reason = f"master pid {pid} on {HOST} is gone, and it recorded no end"
    assert shown.returncode == 0, shown.stderr
    assert f"job {jobdir.name}: LOST" in shown.stdout and reason in shown.stdout
    assert (state["state"], state["reason"]) == ("LOST", reason)
    on_disk = state_of(jobdir)
    assert (on_disk["state"], on_disk["reason"]) == ("LOST", reason) and on_disk["ended"] is not None
    assert {w["state"] for w in on_disk["workers"]} == {"KILLED"}
    assert events_of(jobdir)[-1] == {**events_of(jobdir)[-1], "event": "ended", "state": "LOST", "by": "t2mpi status"}
    listed = t2mpi("list", cwd=work)
    assert f"{jobdir.name}" in listed.stdout and " LOST " in listed.stdout
    print(
        f"kill -> settled LOST at the next t2mpi status: {settled_in:.2f} s after the kill "
        f"(the two status calls took {looking:.2f} s)",
        file=sys.stderr,
    )


def test_procs_reads_start_times_like_psutil_and_tells_the_dead_from_the_living(work):
    from t2mpi import procs

    me = psutil.Process()
    ticks = procs.process_start(me.pid)
    assert abs(psutil.boot_time() + ticks / os.sysconf("SC_CLK_TCK") - me.create_time()) < 1.0
    child = subprocess.Popen([PYTHON, "-c", "pass"])
    wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 30, "the child to end")
    assert procs.process_start(child.pid) is None and not procs.alive(child.pid)  # a zombie is no process
    child.wait()
    assert procs.process_start(child.pid) is None and not procs.alive(child.pid)
    sleeper = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)", "--marker", str(work)])
    try:
        wait_for(lambda: procs.mentions(sleeper.pid, "--marker"), 5, "the sleeper's command line")
        assert procs.mentioning(f"{work}") == [sleeper.pid]
        assert procs.send_signal(sleeper.pid, signal.SIGKILL)
        sleeper.wait()
        assert not procs.send_signal(sleeper.pid, signal.SIGKILL)  # gone: False, no error
    finally:
        sleeper.kill()
        sleeper.wait()


def _fake_running(work, pid: int, pid_start: int | None, host: str = HOST) -> JobDir:
    """A job folder whose state says RUNNING, with master `pid` started at `pid_start`."""
    spec = load(JOBS / "hello.yaml", environ={"HOME": str(work)})
    jd = JobDir.create(work / "t2mpi-jobs", "hello", spec.to_dict())
    jd.write_state(
        {
            "job_id": jd.job_id,
            "name": "hello",
            "state": "RUNNING",
            "reason": "",
            "master": {"mode": "rank0", "host": host, "pid": pid, "pid_start": pid_start},
            "num_workers": 1,
            "started": time.time(),
            "ended": None,
            "workers": [{"id": 0, "host": host, "pid": pid, "state": "RUNNING"}],
        }
    )
    return jd


def _start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[19])


def test_a_pid_now_anothers_reads_lost(work):
    other = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(120)", str(work)])
    try:
        jd = _fake_running(work, other.pid, _start_ticks(other.pid) - 1)  # the pid, a later process
        shown, state = _status(work, jd.job_id)
        reason = f"master pid {other.pid} on {HOST} is gone (the pid is another process's now), and it recorded no end"
        assert (state["state"], state["reason"]) == ("LOST", reason)
        assert state_of(work / "t2mpi-jobs" / jd.job_id)["state"] == "LOST"
        assert other.poll() is None  # looked at, not touched
    finally:
        other.kill()
        other.wait()


def test_a_live_master_stays_running_and_one_elsewhere_is_unknown_from_here(work):
    me = os.getpid()
    live = _fake_running(work, me, _start_ticks(me))
    shown, state = _status(work, live.job_id)
    assert state["state"] == "RUNNING" and "unverified" not in state
    assert state_of(work / "t2mpi-jobs" / live.job_id)["state"] == "RUNNING"
    away = _fake_running(work, 1, 12345, host="elsewhere-node")
    shown, state = _status(work, away.job_id)
    assert state["state"] == "RUNNING"
    assert state["unverified"] == (
        f"its master (pid 1) is on elsewhere-node: whether it still runs is unknown from {HOST}"
    )
    assert "unknown from" in shown.stdout
    assert state_of(work / "t2mpi-jobs" / away.job_id)["state"] == "RUNNING"  # not settled from here
    listed = t2mpi("list", cwd=work).stdout
    assert any(away.job_id in line and "RUNNING?" in line for line in listed.splitlines())
    assert any(live.job_id in line and "RUNNING " in line for line in listed.splitlines())


def test_a_master_gone_with_no_pid_start_recorded_reads_lost(work):
    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    jd = _fake_running(work, dead.pid, None)
    done = t2mpi("list", cwd=work)
    assert done.returncode == 0 and " LOST " in done.stdout  # t2mpi list settles it too
    assert state_of(work / "t2mpi-jobs" / jd.job_id)["state"] == "LOST"


def test_a_start_whose_client_and_launch_are_gone_reads_lost(work):
    spec = load(JOBS / "hello.yaml", environ={"HOME": str(work)})
    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    jd = JobDir.create(work / "t2mpi-jobs", "hello", spec.to_dict())
    jd.write_client(HOST, dead.pid)  # no state yet: the master never recorded itself
    launch = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(120)", "--job-dir", jd.path])
    try:
        shown, state = _status(work, jd.job_id)
        assert state["state"] == "STARTING"  # a process of the job is still there
    finally:
        launch.kill()
        launch.wait()
    shown, state = _status(work, jd.job_id)
    reason = f"its client pid {dead.pid} on {HOST} is gone, no process of the job is left, and no end was recorded"
    assert (state["state"], state["reason"]) == ("LOST", reason)
    assert state_of(work / "t2mpi-jobs" / jd.job_id)["state"] == "LOST"


@pytest.mark.mpi
@pytest.mark.parametrize("master", ["rank0", "client"])
def test_cancel_ends_a_local_run_killed_with_nothing_left(work, master):
    client, jobdir = _start_run(work, "--master", master)
    try:
        family = psutil.Process(client.pid).children(recursive=True)
        started = time.monotonic()
        done = t2mpi("cancel", jobdir.name, cwd=work, timeout=120)
        took = time.monotonic() - started
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    reason = f"cancelled (t2mpi cancel on {HOST})"
    assert done.returncode == 0, done.stderr
    assert f"job {jobdir.name}: KILLED — {reason}" in done.stdout
    assert client.returncode == 1, err
    state = state_of(jobdir)
    assert (state["state"], state["reason"]) == ("KILLED", reason)
    assert gone(family, timeout=1) == []  # gone before cancel returned
    assert processes_mentioning(str(jobdir)) == []
    again = t2mpi("cancel", jobdir.name, cwd=work)
    assert again.returncode == 1 and "already ended (KILLED): nothing to cancel" in again.stderr
    print(f"t2mpi cancel of a local run ({master}): {took:.2f} s", file=sys.stderr)


@pytest.mark.mpi
def test_cancel_signals_a_master_that_does_not_answer(work):
    client, jobdir = _start_run(work)
    try:
        family = psutil.Process(client.pid).children(recursive=True)
        os.kill(state_of(jobdir)["master"]["pid"], signal.SIGSTOP)  # it reads no cancel request
        done = t2mpi("cancel", jobdir.name, cwd=work, timeout=120)
        client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert done.returncode == 0, done.stderr
    state = state_of(jobdir)
    assert (state["state"], state["reason"]) == ("KILLED", f"cancelled (t2mpi cancel on {HOST})")
    assert gone(family, timeout=1) == []
