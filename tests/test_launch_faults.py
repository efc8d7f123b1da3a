"""A launch that never starts is ended (t2mpi run, master: client), and a client that hangs up
(SIGHUP) ends its job KILLED, unless SIGHUP was ignored from the start (nohup). Real processes: a
stand-in launcher that hangs, real mpiexec launches, real signals. The batch case is in
test_slurm.py."""

from __future__ import annotations

import pickle
import signal
import subprocess
import time

import pytest
from conftest import (
    PYTHON,
    SLEEPY,
    events_of,
    gone,
    interrupt_run,
    job_dirs,
    only_job,
    processes_mentioning,
    stand_in_launcher,
    state_of,
    t2mpi,
    wait_for,
    write_job,
)

pytestmark = pytest.mark.mpi
START_TIMEOUT = 5.0
MARGIN = 15.0  # the client's own start, ending the stand-in, and a loaded 2-core machine


@pytest.mark.parametrize("master", ["rank0", "client"])
def test_a_launch_that_never_starts_is_ended_failed(work, master):
    launcher = stand_in_launcher(work)
    job = write_job(
        work, "stuck", SLEEPY, mpi={"launcher": str(launcher)}, timeouts={"start": START_TIMEOUT}, master=master
    )
    began = time.monotonic()
    done = t2mpi("run", str(job), "-q", cwd=work, timeout=START_TIMEOUT + 60)
    took = time.monotonic() - began
    print(
        f"hung launcher (master: {master}): t2mpi run ended FAILED after {took:.1f} s (timeouts.start {START_TIMEOUT:g} s)"
    )
    assert done.returncode == 1, done.stderr
    assert START_TIMEOUT <= took < START_TIMEOUT + MARGIN
    jd = only_job(work)
    state = state_of(jd)
    assert state["state"] == "FAILED"
    assert state["reason"] == (
        f"the job master did not start within timeouts.start = {START_TIMEOUT:g} s; the MPI launch was ended; "
        "the launcher said: stand-in: resolving host n1 | stand-in: waiting for the proxies on n1"
    )
    assert [e["by"] for e in events_of(jd) if e["event"] == "ended"] == ["client"]
    assert state["reason"] in done.stderr  # the summary says it
    assert processes_mentioning(str(work)) == []  # the stand-in and its helper that ignores SIGTERM
    status = t2mpi("status", jd.name, cwd=work)
    assert status.returncode == 0 and f"job {jd.name}: FAILED — {state['reason']}" in status.stdout


def test_a_launch_that_starts_is_not_ended_by_the_start_timeout(work):
    """The start timeout counts until the master started, not the job's whole run."""
    job = write_job(
        work,
        "slowish",
        """
        import time
        from t2mpi import IWorker

        class Job(IWorker):
            def execute(self, ctx):
                time.sleep(4.0)
                return ctx.worker_id
        """,
        timeouts={"start": 3},
    )
    done = t2mpi("run", str(job), "-q", cwd=work)
    assert done.returncode == 0, done.stderr
    assert state_of(only_job(work))["state"] == "COMPLETED"


@pytest.mark.parametrize("master", ["rank0", "client"])
def test_sighup_to_the_client_ends_every_rank_killed(work, master):
    sent: list[float] = []
    code, err, family, ranks, jobdir = interrupt_run(work, "--master", master, signum=signal.SIGHUP, sent=sent)
    ended = time.time()
    assert ranks == 3  # the master and two workers were running
    assert code == 129, err
    assert "t2mpi: client hung up; every rank was ended" in err
    assert gone(family) == []
    state = state_of(jobdir)
    assert (state["state"], state["reason"]) == ("KILLED", "client hung up")
    assert all(w["state"] == "KILLED" for w in state["workers"])
    assert processes_mentioning(str(work)) == []
    settled = next(e["t"] for e in events_of(jobdir) if e["event"] == "ended")
    assert sent[0] < settled <= ended
    print(
        f"SIGHUP (master: {master}): state KILLED {settled - sent[0]:.2f} s after the signal, "
        f"the client gone after {ended - sent[0]:.2f} s"
    )


GO_WHEN_TOLD = """
    import os, time
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            ctx.progress(0.0, "waiting for go")
            deadline = time.monotonic() + 120
            while not os.path.exists({go!r}):
                if time.monotonic() > deadline:
                    raise RuntimeError("no go within 120 s")
                time.sleep(0.05)
            return ctx.worker_id
"""


def _ignores(pid: int, signum: int) -> bool:
    """Whether process `pid` ignores `signum` (SigIgn in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as fh:
        mask = next(int(line.split()[1], 16) for line in fh if line.startswith("SigIgn:"))
    return bool(mask >> (signum - 1) & 1)


def test_under_nohup_the_job_goes_on_after_a_hang_up(work):
    go = work / "go"
    job = write_job(work, "nohup", GO_WHEN_TOLD.format(go=str(go)))
    client = subprocess.Popen(
        ["nohup", PYTHON, "-m", "t2mpi", "run", str(job), "-q"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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
        assert _ignores(client.pid, signal.SIGHUP)  # nohup's SIG_IGN was kept, not replaced by a handler
        client.send_signal(signal.SIGHUP)
        assert state_of(jobdir)["state"] == "RUNNING"
        go.touch()
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, err
    state = state_of(jobdir)
    assert state["state"] == "COMPLETED", state["reason"]
    assert pickle.loads((jobdir / "results.pkl").read_bytes()) == {0: 0, 1: 1}
