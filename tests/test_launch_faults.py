"""A launch that never starts is ended (t2mpi run, master: client), and a client that hangs up
(SIGHUP) ends its job KILLED, unless SIGHUP was ignored from the start (nohup) or the run was
detached (t2mpi run --detach). Real processes: a stand-in launcher that hangs, real mpiexec
launches, real signals. The batch case is in test_slurm.py."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import time

import pytest
from conftest import (
    JOBS,
    PYTHON,
    SLEEPY,
    events_of,
    gone,
    interrupt_run,
    job_dirs,
    only_job,
    processes_mentioning,
    signals_at_default,
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
                time.sleep(9.0)
                return ctx.worker_id
        """,
        timeouts={"start": 8},
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
            print(f"went {{ctx.worker_id}}", flush=True)
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


def test_a_detached_run_returns_at_once_and_outlives_a_hang_up(work):
    go = work / "go"
    job = write_job(work, "detached", GO_WHEN_TOLD.format(go=str(go)))
    began = time.monotonic()
    with signals_at_default(signal.SIGHUP):
        done = t2mpi("run", str(job), "--detach", cwd=work, timeout=60)
    took = time.monotonic() - began
    print(f"t2mpi run --detach returned after {took:.2f} s")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    jobdir = work / "t2mpi-jobs" / job_id
    assert f"t2mpi: job {job_id} runs detached" in done.stderr and f"t2mpi status --follow {job_id}" in done.stderr
    wait_for(
        lambda: (jobdir / "events.jsonl").exists() and sum(e["event"] == "progress" for e in events_of(jobdir)) == 2,
        60,
        "the workers",
    )
    pid = json.loads((jobdir / "client.json").read_text())["pid"]
    assert os.getsid(pid) == pid != os.getsid(0)  # a session of its own, without this one's terminal
    assert _ignores(pid, signal.SIGHUP)
    os.kill(pid, signal.SIGHUP)
    follow = [
        subprocess.Popen(
            [PYTHON, "-m", "t2mpi", what, "--follow", job_id],
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for what in ("status", "logs")
    ]
    try:
        go.touch()
        (status_out, status_err), (logs_out, logs_err) = (p.communicate(timeout=60) for p in follow)
    finally:
        for p in follow:
            if p.poll() is None:
                p.kill()
    assert follow[0].returncode == 0, status_err
    assert f"job {job_id}: COMPLETED" in status_err
    assert follow[1].returncode == 0, logs_err
    assert "[w0] went 0" in logs_out and "[w1] went 1" in logs_out
    wait_for(lambda: not processes_mentioning(str(work)), 30, "the detached client and its ranks to go")
    assert state_of(jobdir)["state"] == "COMPLETED"
    assert pickle.loads((jobdir / "results.pkl").read_bytes()) == {0: 0, 1: 1}


STOPPABLE = """
    import threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            state = ctx.restored or {"i": 0}
            for i in range(state["i"], 100000):
                ctx.progress(None, f"step {i}")
                if ctx.should_checkpoint():
                    ctx.checkpoint({"i": i + 1})  # raises Preempted once committed
                threading.Event().wait(0.02)
            return i
"""


def test_following_a_detached_run_ends_when_a_stop_request_preempts_it(work):
    """A local job that ends PREEMPTED (SIGUSR1 to its client: a checkpoint and a stop) has ended:
    nothing requeues it, so `t2mpi status --follow` returns instead of waiting for ever."""
    done = t2mpi("run", str(write_job(work, "stoppable", STOPPABLE)), "--detach", cwd=work, timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    jobdir = work / "t2mpi-jobs" / job_id
    wait_for(
        lambda: (jobdir / "events.jsonl").exists() and sum(e["event"] == "progress" for e in events_of(jobdir)) >= 2,
        60,
        "the workers",
    )
    follow = subprocess.Popen(
        [PYTHON, "-m", "t2mpi", "status", "--follow", job_id],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        os.kill(json.loads((jobdir / "client.json").read_text())["pid"], signal.SIGUSR1)
        _, err = follow.communicate(timeout=60)
    finally:
        if follow.poll() is None:
            follow.kill()
    state = state_of(jobdir)
    assert state["state"] == "PREEMPTED", state
    assert f"job {job_id}: PREEMPTED" in err, err
    assert follow.returncode == 1  # it did not complete
    wait_for(lambda: not processes_mentioning(str(work)), 30, "the detached client and its ranks to go")


def _flavour() -> str:
    from t2mpi.mpi.launcher import recognise

    mpiexec = os.path.join(os.path.dirname(PYTHON), "mpiexec")
    done = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=60)
    return recognise(done.stdout + done.stderr)[0]


# an interface that does not exist, so MPI_Init fails in every rank (Open MPI: tcp forced, as the
# transport choice does where there is no fabric)
NO_SUCH_INTERFACE = {
    "mpich": ({"FI_PROVIDER": "tcp", "FI_TCP_IFACE": "nonexistent0"}, "OFI call ep_enable failed"),
    "openmpi": (
        {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "self,tcp", "OMPI_MCA_btl_tcp_if_include": "nonexistent0"},
        "unable to reach each other for MPI communications",
    ),
}


def test_a_rank_that_fails_in_mpi_init_gives_its_mpis_error_line_as_the_reason(work):
    env, said = NO_SUCH_INTERFACE[_flavour()]
    job = write_job(work, "noiface", "from t2mpi import IWorker\nclass Job(IWorker):\n    pass\n", mpi={"env": env})
    done = t2mpi("run", str(job), "-q", cwd=work)
    assert done.returncode == 1, done.stderr
    state = state_of(only_job(work))
    assert state["state"] == "FAILED"
    assert said in state["reason"] and state["reason"].endswith("before the job ended)"), state["reason"]
    assert not state["reason"].startswith("the MPI launch exited"), state["reason"]
    shown = t2mpi("status", only_job(work).name, cwd=work)
    assert said in shown.stdout, shown.stdout + shown.stderr
    wait_for(lambda: not processes_mentioning(str(work)), 30, "no process of the job left")


def test_the_batch_supervisor_gives_the_mpis_error_line_as_the_reason_too(work):
    """As a batch script runs its launch on the first node: python -m t2mpi.restart -- LAUNCH."""
    from t2mpi import client

    env, said = NO_SUCH_INTERFACE[_flavour()]
    job = write_job(work, "noiface", "from t2mpi import IWorker\nclass Job(IWorker):\n    pass\n", mpi={"env": env})
    prepared = client.prepare(job, python=PYTHON)
    jd = client.make_folder(prepared)
    done = subprocess.run(
        [PYTHON, "-P", "-m", "t2mpi.restart", "--job-dir", str(jd.path), "--", *prepared.argv(str(jd.path))],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    state = jd.read_state()
    assert state["state"] == "FAILED" and said in state["reason"], state["reason"]
    wait_for(lambda: not processes_mentioning(str(work)), 30, "no process of the job left")


def test_a_killed_open_mpi_launchers_leftovers_do_not_stop_the_next_launch(work):
    """A killed Open MPI launcher leaves its session folder ($TMPDIR/ompi.<pid>); a new one given
    that pid (the pids wrap round) found its rendezvous file and would not start ("The PMIx
    server's listener thread failed to start", exit 213). Leftovers of this user for the next
    3,000 pids: t2mpi run removes those of no running process first, and the job runs. (Under
    MPICH nothing reads them; the run and the clean-up are checked all the same.)"""
    tmp = work / "tmp"
    tmp.mkdir()
    host = os.uname().nodename
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    planted = []
    for k in range(1, 3000):
        pid = (os.getpid() + k) % pid_max
        folder = tmp / f"ompi.{pid}"
        if pid > 300 and not folder.exists():
            folder.mkdir(mode=0o700)
            (folder / f"pmix.{host}.tool").write_text("")  # any file at that name stopped prterun
            planted.append(folder)
    done = t2mpi("run", str(JOBS / "hello.yaml"), "-n", "2", "-q", cwd=work, env=dict(os.environ, TMPDIR=str(tmp)))
    assert done.returncode == 0, done.stderr
    assert state_of(only_job(work))["state"] == "COMPLETED"
    left = [f for f in planted if f.exists()]
    assert len(left) < len(planted) / 2, f"{len(left)} of {len(planted)} leftovers are still there"
