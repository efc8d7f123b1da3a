"""Exactly-once over failures: the streaming WordCount with workers SIGKILLed at random points
(restarted by max_restarts from the last committed checkpoint) writes the same output as an
uninterrupted run, none lost, none duplicated; a stop request (SIGUSR1) checkpoints and ends
PREEMPTED, and `t2mpi restart` goes on to the same output."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess

import pytest
from conftest import JOBS, PYTHON, events_of, job_dirs, started_client, state_of, t2mpi, wait_for
from test_stream_mpi import expected, read_output, run_wordcount, timed_lines, write_input

from t2mpi.job.folder import JobDir

pytestmark = pytest.mark.mpi

WINDOW, DISORDER, BATCH = 2.5, 0.5, 5


def big_input(work, seed):
    r = random.Random(seed)
    files = [timed_lines(r, 30000, 3.0, "abcdefgh") for _ in range(3)]
    write_input(work / "in", files)
    return files


def argv(work, out, *extra):
    sets = {
        "config.input": work / "in",
        "config.output": out,
        "config.window": WINDOW,
        "config.disorder": DISORDER,
        "config.batch": BATCH,
        "config.checkpoint_every": 0.05,
    }
    args = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    return [PYTHON, "-m", "t2mpi", "run", str(JOBS / "stream_wordcount.yaml"), "-q", *args, *extra]


def committed(jd):
    return JobDir(str(jd)).committed_version() or 0


@pytest.mark.parametrize("seed", [1])
def test_workers_killed_at_random_points_give_the_uninterrupted_output(work, seed):
    files = big_input(work, seed)
    plain = run_wordcount(work, work / "in", work / "plain", 2, WINDOW, DISORDER, BATCH, timeout=300)
    assert plain.returncode == 0, plain.stderr
    want = read_output(work / "plain")[:2]
    (plain_dir,) = job_dirs(work)
    assert want == expected(files, WINDOW, DISORDER, BATCH)
    r = random.Random(seed)
    kills = 3
    popen = {"cwd": work, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    extra = ("--set", f"max_restarts={kills}", "--set", "timeouts.heartbeat=3")
    with started_client(argv(work, work / "out", *extra), **popen) as client:
        jd = wait_for(lambda: next((d for d in job_dirs(work) if d != plain_dir), None), 60, "the job folder")
        killed: set[int] = set()
        for k in range(kills):

            def running():
                try:
                    workers = state_of(jd)["workers"]
                except (OSError, ValueError, KeyError):
                    return None
                pids = [w.get("pid") for w in workers]
                if all(p and p not in killed for p in pids) and all(w["state"] == "RUNNING" for w in workers):
                    return pids
                return None

            pids = wait_for(running, 120, f"attempt {k + 1}'s workers")
            target = committed(jd) + r.randint(1, 6)
            wait_for(lambda target=target: committed(jd) >= target, 120, f"checkpoint {target}")
            victim = pids[r.randrange(len(pids))]
            killed.update(pids)
            os.kill(victim, signal.SIGKILL)
        _, err = client.communicate(timeout=300)
    assert client.returncode == 0, err
    history = json.loads((jd / "restarts.json").read_text())["history"]
    assert len(history) == kills and all(h["state"] == "FAILED" for h in history)
    windows, late, names = read_output(work / "out")
    assert (windows, late) == want
    assert not [n for n in names if n.startswith(".")]
    assert not [n for n in os.listdir(work / "out" / "late") if n.startswith(".")]


PROCESSING = """
    from t2mpi import IWorker
    from t2mpi.stream import tumbling

    class Job(IWorker):
        def execute(self, ctx):
            c, s = ctx.config, ctx.stream
            words = s.files(c["input"]).key_by(lambda line: line)
            counts = words.window(tumbling(seconds=0.2), time="processing").count()
            counts.map(lambda w: f"{w[0]!r}\\t{w[1]}\\t{w[2]}").sink_files(c["output"])
            return s.run(checkpoint_every=0.05, batch=5)
"""


def test_a_worker_killed_under_processing_time_windows_loses_and_repeats_no_record(work):
    """Processing-time windows on the real clock: a restart replays into other windows than the
    first attempt's (docs/streaming.md), but every line is counted once over all the output."""
    from collections import Counter

    from conftest import write_job

    r = random.Random(5)
    files = [[r.choice("abcdefgh") for _ in range(20000)] for _ in range(3)]
    write_input(work / "in", files)
    job = write_job(work, "clock", PROCESSING, config={"input": str(work / "in"), "output": str(work / "out")})
    sets = ["--set", "max_restarts=1", "--set", "timeouts.heartbeat=3"]
    popen = {"cwd": work, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with started_client([PYTHON, "-m", "t2mpi", "run", str(job), "-q", *sets], **popen) as client:
        jd = wait_for(lambda: (job_dirs(work) or [None])[0], 60, "the job folder")
        out = work / "out"

        def published():  # windows of the first attempt that a restart must not write again
            return out.is_dir() and len([n for n in os.listdir(out) if n.startswith("part-")]) >= 4

        wait_for(lambda: published() and streaming(jd), 120, "committed parts of the first attempt")
        os.kill(state_of(jd)["workers"][1]["pid"], signal.SIGKILL)
        _, err = client.communicate(timeout=300)
    assert client.returncode == 0, err
    history = json.loads((jd / "restarts.json").read_text())["history"]
    assert [h["state"] for h in history] == ["FAILED"]
    names = sorted(os.listdir(work / "out"))
    assert names and not [n for n in names if n.startswith(".")]  # every part committed
    cells = Counter()
    for name in names:
        for line in (work / "out" / name).read_text().splitlines():
            start, word, n = line.split("\t")
            cells[(float(start), word)] += 1
            assert cells[(float(start), word)] == 1, f"window {start} of {word!r} written twice"
    totals = Counter()
    for name in names:
        for line in (work / "out" / name).read_text().splitlines():
            _, word, n = line.split("\t")
            totals[word] += int(n)
    assert totals == Counter(w for f in files for w in f)  # none lost, none counted twice


def streaming(jd):
    try:
        return all(w.get("operation", "").startswith("stream.run at ") for w in state_of(jd)["workers"])
    except (OSError, ValueError, KeyError):
        return False


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGINT])
def test_a_stop_request_checkpoints_ends_preempted_and_restart_goes_on(work, signum):
    """SIGUSR1, or the first Ctrl-C to a job that runs a stream."""
    files = big_input(work, 3)
    popen = {"cwd": work, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with started_client(argv(work, work / "out"), signal.SIGUSR1, **popen) as client:
        jd = wait_for(lambda: (job_dirs(work) or [None])[0], 60, "the job folder")
        wait_for(lambda: committed(jd) >= 2 and streaming(jd), 120, "checkpoint 2")
        client.send_signal(signum)
        _, err = client.communicate(timeout=120)
    assert client.returncode == 1, err
    if signum == signal.SIGINT:
        assert "t2mpi: Ctrl-C: the stream checkpoints and stops; Ctrl-C again ends it at once" in err
    state = state_of(jd)
    assert state["state"] == "PREEMPTED", state
    stopped_at = committed(jd)
    assert [e["event"] for e in events_of(jd) if e["event"] != "progress"][-3:] == [
        "stop_requested",
        "checkpoint_committed",
        "ended",
    ]
    partial = read_output(work / "out")
    assert sum(int(n) for *_, n in partial[0]) + len(partial[1]) < sum(map(len, files))  # it stopped early
    again = t2mpi("restart", jd.name, "-q", cwd=work, timeout=300)
    assert again.returncode == 0, again.stderr
    assert committed(jd) > stopped_at
    windows, late, names = read_output(work / "out")
    assert (windows, late) == expected(files, WINDOW, DISORDER, BATCH)
    assert not [n for n in names if n.startswith(".")]


def test_a_second_ctrl_c_ends_a_stream_at_once(work):
    big_input(work, 4)
    popen = {"cwd": work, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with started_client(argv(work, work / "out", "--set", "timeouts.checkpoint=120"), **popen) as client:
        jd = wait_for(lambda: (job_dirs(work) or [None])[0], 60, "the job folder")
        wait_for(lambda: committed(jd) >= 1 and streaming(jd), 120, "the stream")
        client.send_signal(signal.SIGINT)
        wait_for(lambda: (jd / "stop").exists(), 30, "the stop request")  # the first was handled
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=120)
    assert client.returncode == 130, err  # the second came before the stop (the master looks once a second)
    assert state_of(jd)["state"] == "KILLED" and "Ctrl-C" in state_of(jd)["reason"]
