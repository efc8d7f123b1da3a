"""Checkpoint / restart: the job folder's checkpoint files, the master's commit and stop, restarts
from t2mpi run (max_restarts), t2mpi restart, a stop asked with SIGUSR1, a K-Means job killed
mid-run, and a worker killed in the middle of writing a checkpoint."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess

import numpy as np
import pytest
from conftest import JOBS, PYTHON, events_of, is_rank, job_dirs, only_job, state_of, t2mpi, wait_for, write_job

from t2mpi.job.folder import JobDir
from t2mpi.runtime.master import PREEMPTED, RUNNING, Master, Reply, worker_list
from t2mpi.scheduler.supervisor import DONE, GIVE_UP, REQUEUE, RESTART, next_step

T0 = 1000.0


# ---------------------------------------------------------------- the job folder's checkpoints


def test_commit_makes_a_version_current_and_drops_older_ones(tmp_path):
    jd = JobDir.make(str(tmp_path / "job"), {"name": "x"})
    assert jd.committed_version() is None
    for v in (1, 2):
        for w in (0, 1):
            jd.write_checkpoint(v, w, pickle.dumps((v, w)))
    jd.commit_checkpoint(1, 2)
    assert jd.committed_version() == 1
    jd.write_checkpoint(3, 0, b"partial")  # a version not every worker wrote yet
    jd.commit_checkpoint(2, 2)
    assert jd.committed_version() == 2
    assert sorted(os.listdir(jd.checkpoints_dir)) == ["2", "3", "committed.json"]
    assert pickle.loads(jd.read_checkpoint(2, 1)) == (2, 1)
    assert os.stat(jd.checkpoint_file(2, 1)).st_mode & 0o777 == 0o600


def test_a_writer_killed_mid_write_leaves_the_committed_version_whole(tmp_path):
    """SIGKILL while the next version's file is being written: the committed one is intact and
    the next one has no file, only the writer's temporary."""
    jd = JobDir.make(str(tmp_path / "job"), {"name": "x"})
    jd.write_checkpoint(1, 0, b"one" * 1000)
    jd.commit_checkpoint(1, 1)
    code = (
        f"import os, signal, threading\n"
        f"from t2mpi.job.folder import JobDir\n"
        f"jd = JobDir({jd.path!r})\n"
        f"folder = os.path.join(jd.checkpoints_dir, '2')\n"
        f"def killer():\n"
        f"    while not (os.path.isdir(folder) and any(n.endswith('.tmp') for n in os.listdir(folder))):\n"
        f"        pass\n"
        f"    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"threading.Thread(target=killer, daemon=True).start()\n"
        f"jd.write_checkpoint(2, 0, b'x' * (1 << 30))\n"
    )
    done = subprocess.run([PYTHON, "-c", code], timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert jd.committed_version() == 1
    assert jd.read_checkpoint(1, 0) == b"one" * 1000
    left = os.listdir(os.path.join(jd.checkpoints_dir, "2"))
    assert "worker-0.pkl" not in left and any(n.endswith(".tmp") for n in left), left


def test_begin_restart_counts_and_keeps_how_the_last_run_ended(tmp_path):
    jd = JobDir.make(str(tmp_path / "job"), {"name": "x"})
    jd.write_state({"job_id": "job", "state": "FAILED", "reason": "worker 1 on a failed: boom", "workers": []})
    jd.request_stop("walltime")
    assert jd.begin_restart("because") == 1
    assert jd.restarts()["count"] == 1
    assert jd.restarts()["history"][0]["state"] == "FAILED"
    assert jd.restarts()["history"][0]["reason"] == "worker 1 on a failed: boom"
    assert jd.read_state()["state"] == "STARTING"
    assert jd.stop_request() is None  # a stop asked of the last run does not stop the next
    assert jd.begin_restart("again") == 2


# ---------------------------------------------------------------- the master's decisions


def master(n=2, committed=None):
    m = Master("job-1", "ck", n, T0, committed=committed, checkpoint_timeout=5.0)
    m.joined(worker_list([("a", 1 + w) for w in range(n)]), ("head", 99), T0)
    return m


def test_a_version_is_due_for_commit_only_when_every_worker_wrote_it():
    m = master(3)
    m.checkpointed(0, 1, T0 + 1)
    m.checkpointed(2, 1, T0 + 1)
    assert m.commit_due is None
    m.checkpointed(1, 1, T0 + 1)
    assert m.commit_due == 1
    assert m.commit(1, T0 + 2) == []
    assert m.committed == 1 and m.state == RUNNING
    assert m.snapshot()["checkpoint"] == 1


def test_a_stop_request_asks_every_worker_and_ends_preempted_after_the_commit():
    m = master(2, committed=4)
    assert m.stop_requested("walltime", T0 + 1) == [
        Reply(0, ("checkpoint", "walltime")),
        Reply(1, ("checkpoint", "walltime")),
    ]
    assert m.stop_requested("walltime", T0 + 1) == []  # asked once
    m.checkpointed(0, 5, T0 + 2)
    m.checkpointed(1, 5, T0 + 2)
    assert m.commit(m.commit_due, T0 + 3) == [Reply(0, ("stop", 5)), Reply(1, ("stop", 5))]
    assert m.state == PREEMPTED and "checkpoint 5" in m.reason
    assert [s["state"] for s in m.snapshot()["workers"]] == [PREEMPTED, PREEMPTED]
    assert not m.all_stopped
    m.worker_stopped(0)
    m.worker_stopped(1)
    assert m.all_stopped


def test_a_stop_without_a_checkpoint_ends_the_job_after_the_checkpoint_timeout():
    m = master(2, committed=4)
    m.stop_requested("preempted", T0 + 1)
    m.checkpointed(0, 5, T0 + 2)
    m.tick(T0 + 5.9)
    assert m.state == RUNNING
    m.tick(T0 + 6.1)
    assert m.state == PREEMPTED
    assert "no checkpoint within timeouts.checkpoint 5 s (a restart uses checkpoint 4)" in m.reason


@pytest.mark.parametrize(
    "state, restarts, most, action",
    [
        ({"state": "COMPLETED"}, 0, 3, DONE),
        ({"state": "KILLED"}, 0, 3, DONE),
        ({"state": "FAILED", "reason": "boom"}, 0, 1, RESTART),
        ({"state": "FAILED"}, 1, 1, GIVE_UP),
        ({"state": "PREEMPTED"}, 0, 1, REQUEUE),
        ({"state": "PREEMPTED"}, 2, 2, GIVE_UP),
        (None, 0, 1, RESTART),
        ({"state": "RUNNING"}, 0, 0, GIVE_UP),
    ],
)
def test_next_step(state, restarts, most, action):
    assert next_step(state, restarts, most)[0] == action


# ---------------------------------------------------------------- restarts of real runs

COUNTER = """
    import os, time
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            state = ctx.restored or {"i": 0, "total": 0}
            first = state["i"]
            for i in range(first, ctx.config["n"]):
                state = {"i": i + 1, "total": state["total"] + ctx.comm.allreduce(i)}
                if ctx.restart_count < ctx.config.get("fail_runs", 0) and ctx.worker_id == 1 \\
                        and i == ctx.config["fail_at"] + ctx.restart_count:
                    raise RuntimeError(f"injected failure at {i}")
                ctx.checkpoint(state)
            return {"total": state["total"], "first": first, "restarts": ctx.restart_count,
                    "version": ctx.checkpoint_version}
"""


def results(job):
    return JobDir(str(job)).read_results()


@pytest.mark.mpi
def test_max_restarts_reruns_a_failed_job_from_its_last_checkpoint(work):
    job = write_job(work, "counter", COUNTER, max_restarts=2, config={"n": 10, "fail_at": 4, "fail_runs": 2})
    done = t2mpi("run", str(job), "-q", cwd=work)
    assert done.returncode == 0, done.stderr
    jd = only_job(work)
    # worker 1 fails at step 4 before writing version 5, then at step 5 before writing 6; whether
    # worker 0's last version was committed before the failure ended the run depends on timing
    assert "restart 1 of 2 from checkpoint " in done.stderr
    assert "restart 2 of 2 from checkpoint " in done.stderr
    assert state_of(jd)["state"] == "COMPLETED" and state_of(jd)["restarts"] == 2
    got = results(jd)
    assert {w: (r["total"], r["restarts"], r["version"]) for w, r in got.items()} == {
        w: (2 * sum(range(10)), 2, 10) for w in (0, 1)
    }
    assert got[0]["first"] in (4, 5)
    history = json.loads((jd / "restarts.json").read_text())["history"]
    assert [h["state"] for h in history] == ["FAILED", "FAILED"]
    assert "injected failure at 4" in history[0]["reason"]
    assert [e["event"] for e in events_of(jd)].count("restarting") == 2
    assert sorted(os.listdir(jd / "checkpoints")) == ["10", "committed.json"]


@pytest.mark.mpi
def test_out_of_restarts_the_job_fails_and_t2mpi_restart_goes_on(work):
    job = write_job(work, "counter", COUNTER, max_restarts=0, config={"n": 8, "fail_at": 2, "fail_runs": 1})
    done = t2mpi("run", str(job), "-q", cwd=work)
    assert done.returncode == 1
    jd = only_job(work)
    assert state_of(jd)["state"] == "FAILED" and "injected failure at 2" in state_of(jd)["reason"]
    again = t2mpi("restart", jd.name, "-q", cwd=work)
    assert again.returncode == 0, again.stderr
    assert job_dirs(work) == [jd]  # the same folder
    got = results(jd)
    assert {w: (r["total"], r["restarts"], r["version"]) for w, r in got.items()} == {
        w: (2 * sum(range(8)), 1, 8) for w in (0, 1)
    }
    assert got[0]["first"] in (1, 2)  # from checkpoint 2 (steps 0, 1), or 1 when the failure came first
    refused = t2mpi("restart", jd.name, cwd=work)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"t2mpi: job {jd.name} is COMPLETED: only a FAILED, KILLED, LOST or stopped (PREEMPTED) job can be restarted"
    )


STOPPABLE = """
    import threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            state = ctx.restored or {"i": 0}
            first = state["i"]
            asked = threading.Event()
            ctx.on_checkpoint_request(lambda why: asked.set())
            for i in range(first, ctx.config["n"]):
                ctx.comm.barrier()
                ctx.progress(i / ctx.config["n"], f"step {i}")
                if ctx.should_checkpoint():
                    assert asked.wait(10), "the callback was not called"
                    ctx.checkpoint({"i": i + 1})   # raises Preempted once committed
                elif ctx.restart_count == 0 and i >= 5:
                    threading.Event().wait(0.05)    # slow until stopped: the test asks for the stop
            return {"first": first, "restarts": ctx.restart_count, "version": ctx.checkpoint_version}
"""


@pytest.mark.mpi
def test_sigusr1_stops_a_run_after_a_checkpoint_and_restart_goes_on_from_it(work):
    job = write_job(work, "stoppable", STOPPABLE, config={"n": 1000})
    client = subprocess.Popen(
        [PYTHON, "-m", "t2mpi", "run", str(job), "-q"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        jd = wait_for(lambda: (job_dirs(work) or [None])[0], 60, "the job folder")
        wait_for(
            lambda: (
                (jd / "events.jsonl").exists()
                and any(e["event"] == "progress" and e["message"] == "step 6" for e in events_of(jd))
            ),
            60,
            "step 6",
        )
        ranks = [p for p in __import__("psutil").Process(client.pid).children(recursive=True) if is_rank(p)]
        client.send_signal(signal.SIGUSR1)
        _, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 1, err
    state = state_of(jd)
    assert state["state"] == "PREEMPTED", state
    assert state["reason"].startswith("stopped on request after checkpoint 1")
    assert [w["state"] for w in state["workers"]] == ["PREEMPTED", "PREEMPTED"]
    order = [e["event"] for e in events_of(jd) if e["event"] != "progress"]
    assert order[-3:] == ["stop_requested", "checkpoint_committed", "ended"]
    assert wait_for(lambda: not any(p.is_running() and p.status() != "zombie" for p in ranks), 10, "ranks")
    stopped_at = pickle.loads((jd / "checkpoints" / "1" / "worker-0.pkl").read_bytes())["i"]
    assert stopped_at >= 7
    again = t2mpi("restart", jd.name, "-q", cwd=work, timeout=300)
    assert again.returncode == 0, again.stderr
    assert results(jd) == {w: {"first": stopped_at, "restarts": 1, "version": 1} for w in (0, 1)}


def kmeans_config(**extra):
    return [f"--set=config.{k}={v}" for k, v in {"points": 40000, "iterations": 400, "clusters": 8, **extra}.items()]


@pytest.mark.mpi
def test_kmeans_killed_mid_run_and_restarted_reaches_the_same_centroids(work):
    plain = t2mpi("run", str(JOBS / "kmeans.yaml"), "-q", *kmeans_config(), cwd=work, timeout=300)
    assert plain.returncode == 0, plain.stderr
    expected = results(only_job(work))[0]
    client = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "t2mpi",
            "run",
            str(JOBS / "kmeans.yaml"),
            "-q",
            "--set=max_restarts=1",
            *kmeans_config(checkpoint_every=20),
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        jd = wait_for(
            lambda: next((d for d in job_dirs(work) if JobDir(str(d)).committed_version()), None),
            120,
            "a committed checkpoint",
        )
        victim = state_of(jd)["workers"][1]["pid"]
        os.kill(victim, signal.SIGKILL)
        _, err = client.communicate(timeout=300)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, err
    history = json.loads((jd / "restarts.json").read_text())["history"]
    assert len(history) == 1 and history[0]["state"] == "FAILED"
    restarted_from = [e for e in events_of(jd) if e["event"] == "restarting"][0]["checkpoint"]
    assert restarted_from >= 1
    got = results(jd)
    assert np.array_equal(got[0], expected) and np.array_equal(got[1], expected)


BIG_CHECKPOINT = """
    import os, signal, threading
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            if ctx.restored is not None:
                return {"restored": ctx.restored[:8], "size": len(ctx.restored), "restarts": ctx.restart_count}
            ctx.checkpoint(b"version1" * 1000)
            ctx.controller.barrier()   # version 1 is written by both; the master commits it
            if ctx.worker_id == 1:
                folder = os.path.join(ctx.job_dir, "checkpoints", "2")

                def kill_me_while_writing():
                    while not (os.path.isdir(folder) and
                               any(n.startswith(".worker-1") for n in os.listdir(folder))):
                        pass
                    os.kill(os.getpid(), signal.SIGKILL)
                threading.Thread(target=kill_me_while_writing, daemon=True).start()
            ctx.checkpoint(b"version2" * (1 << 25))   # 256 MiB: worker 1 dies in the middle
            threading.Event().wait(600)
"""


@pytest.mark.mpi
def test_a_worker_killed_while_writing_a_checkpoint_leaves_the_last_committed_one(work):
    job = write_job(work, "big", BIG_CHECKPOINT, max_restarts=1, timeouts={"heartbeat": 3})
    done = t2mpi("run", str(job), "-q", cwd=work, timeout=300)
    assert done.returncode == 0, done.stderr
    jd = only_job(work)
    assert "restart 1 of 1 from checkpoint 1" in done.stderr
    assert results(jd) == {w: {"restored": b"version1", "size": 8000, "restarts": 1} for w in (0, 1)}
    left = os.listdir(jd / "checkpoints" / "2") if (jd / "checkpoints" / "2").exists() else []
    assert "worker-1.pkl" not in left
