"""The streaming WordCount (jobs/stream_wordcount.yaml) on real MPI with 2 and 3 workers against the
plain-Python reference of the contract, on random files, disorder and rounds; and the stream
operators across workers (key_by, stateful_map, sliding windows, numpy batches, join)."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import JOBS, t2mpi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from stream_reference import show_time, wordcount  # noqa: E402

pytestmark = pytest.mark.mpi


def read_output(folder):
    """(sorted window lines as tuples, sorted late lines, the names in the folder)."""
    windows = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            windows += [tuple(line.split("\t")) for line in open(path).read().splitlines()]
    late_dir = os.path.join(folder, "late")
    late = []
    for name in sorted(os.listdir(late_dir)) if os.path.isdir(late_dir) else []:
        late += open(os.path.join(late_dir, name)).read().splitlines()
    return sorted(windows), sorted(late), sorted(os.listdir(folder))


def expected(files, window, disorder, batch):
    want, late = wordcount(files, window, disorder, batch)
    return sorted((show_time(ws), w, str(n)) for (ws, w), n in want.items()), sorted(late)


def write_input(folder, files):
    folder.mkdir()
    for i, f in enumerate(files):
        (folder / f"f{i:02d}.txt").write_text("".join(line + "\n" for line in f))


def run_wordcount(work, inp, out, workers, window, disorder, batch, *extra, timeout=120):
    sets = {
        "config.input": inp,
        "config.output": out,
        "config.window": window,
        "config.disorder": disorder,
        "config.batch": batch,
        "config.checkpoint_every": 0.05,
    }
    args = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    return t2mpi(
        "run", str(JOBS / "stream_wordcount.yaml"), "-q", "-n", str(workers), *args, *extra, cwd=work, timeout=timeout
    )


def timed_lines(r, n, spread, words):
    """n lines of a file whose event times rise, each off by up to `spread` seconds."""
    t, out = 0.0, []
    for _ in range(n):
        t += r.random()
        out.append(f"{max(0.0, t + r.uniform(-spread, spread)):.2f} {r.choice(words)}")
    return out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10**6),
    n_files=st.integers(1, 5),
    workers=st.sampled_from([2, 3]),
    window=st.sampled_from([1.0, 2.5, 10.0]),
    disorder=st.sampled_from([0.0, 0.5, 2.0]),
    spread=st.sampled_from([0.0, 1.0, 4.0]),
    batch=st.integers(1, 9),
)
def test_wordcount_on_workers_matches_the_reference(work, seed, n_files, workers, window, disorder, spread, batch):
    import random

    r = random.Random(seed)
    files = [
        timed_lines(r, r.randrange(0, 80), spread, "abcdefg") + r.sample(["", "x y", "nan z"], r.randrange(0, 2))
        for _ in range(n_files)
    ]
    tag = f"{seed}-{n_files}-{workers}-{batch}"
    inp, out = work / f"in-{tag}", work / f"out-{tag}"
    write_input(inp, files)
    done = run_wordcount(work, inp, out, workers, window, disorder, batch)
    assert done.returncode == 0, done.stderr
    windows, late, names = read_output(out)
    want_windows, want_late = expected(files, window, disorder, batch)
    assert windows == want_windows
    assert late == want_late
    assert sum(int(n) for *_, n in windows) + len(late) == sum(map(len, files))
    assert not [n for n in names if n.startswith(".")]  # no uncommitted part is left


def test_wordcount_runs_as_it_is_with_late_lines(work):
    import random

    r = random.Random(5)
    files = [timed_lines(r, 300, 6.0, ["to", "be", "or", "not"]) for _ in range(3)]
    write_input(work / "stream-wordcount-input", files)
    done = t2mpi("run", str(JOBS / "stream_wordcount.yaml"), "-q", "--set", "config.batch=20", cwd=work)
    assert done.returncode == 0, done.stderr
    windows, late, _ = read_output(work / "stream-wordcount-output")
    assert (windows, late) == expected(files, 10.0, 1.0, 20)
    assert late  # this input has lines later than the disorder allows


OPERATORS = """
    import numpy as np
    from t2mpi import IWorker
    from t2mpi.stream import sliding, tumbling

    N = 900

    def events(p, n, offset):
        return ({"ts": (i * n + p) * 0.01, "key": (i * 7 + p) % 11, "value": i % 5} for i in range(offset, N))

    def batches(p, n, offset):
        for a in range(offset, N, 128):
            i = np.arange(a, min(a + 128, N))
            yield {"ts": (i * n + p) * 0.01, "key": (i * 7 + p) % 11, "value": (i % 5).astype(float)}

    def buys(p, n, offset):
        return ({"at": (i * n + p) * 0.05, "user": (i * 3 + p) % 11, "item": f"i{i}-{p}"} for i in range(offset, N // 5))

    class Job(IWorker):
        def execute(self, ctx):
            s = ctx.stream
            keyed = s.generator(events).key_by("key")
            counts = keyed.window(tumbling(seconds=1), event_time="ts", disorder=0.5).count().collect()
            slid = keyed.window(sliding(seconds=2, every=1), event_time="ts", disorder=0.5).sum("value").collect()
            running = keyed.stateful_map(lambda: 0, lambda st, r: (st + 1, st + 1))
            hundreds = running.filter(lambda kv: kv[1] % 50 == 0).collect()
            vector = s.batches(batches).key_by("key").window(tumbling(seconds=1), event_time="ts", disorder=0.5)
            vcounts = vector.count().collect()
            joined = keyed.join(s.generator(buys).key_by("user"), tumbling(seconds=5), event_time=("ts", "at"),
                                disorder=0.5)
            pairs = joined.map(lambda r: (r[0], r[1], r[2][0]["ts"], r[2][1]["item"])).collect()
            small = s.generator(lambda p, n, o: iter(range(p * 10 + o, p * 10 + 10)))
            everywhere = small.broadcast().map(lambda r: (ctx.worker_id, r)).collect()
            placed = small.partition(lambda r: r % ctx.num_workers).map(lambda r: (ctx.worker_id, r)).collect()
            summary = s.run(batch=int(ctx.config["batch"]))
            return {"counts": counts.records, "slid": slid.records, "hundreds": hundreds.records,
                    "vcounts": vcounts.records, "pairs": pairs.records, "summary": summary,
                    "everywhere": everywhere.records, "placed": placed.records}
"""


def operators_expected(n):
    import math
    from collections import Counter, defaultdict

    ev = [{"ts": (i * n + p) * 0.01, "key": (i * 7 + p) % 11, "value": i % 5} for p in range(n) for i in range(900)]
    counts = Counter((math.floor(e["ts"] / 1.0) * 1.0, e["key"]) for e in ev)
    slid = defaultdict(float)
    for e in ev:
        for start in (math.floor(e["ts"]) - 1.0, math.floor(e["ts"]) * 1.0):
            slid[(start, e["key"])] += e["value"]
    per_key = Counter(e["key"] for e in ev)
    hundreds = sorted((k, c) for k, total in per_key.items() for c in range(50, total + 1, 50))
    buys = [
        {"at": (i * n + p) * 0.05, "user": (i * 3 + p) % 11, "item": f"i{i}-{p}"} for p in range(n) for i in range(180)
    ]
    pairs = sorted(
        (math.floor(e["ts"] / 5) * 5.0, e["key"], e["ts"], b["item"])
        for e in ev
        for b in buys
        if e["key"] == b["user"] and math.floor(e["ts"] / 5) == math.floor(b["at"] / 5)
    )
    return counts, slid, hundreds, pairs, len(ev)


@pytest.mark.parametrize("workers, batch", [(3, 40), (2, 7)])
def test_the_operators_across_workers_match_a_plain_computation(work, workers, batch):
    import pickle

    from conftest import events_of, only_job, write_job

    job = write_job(work, "ops", OPERATORS, workers=workers, config={"batch": batch})
    done = t2mpi("run", str(job), "-q", cwd=work, timeout=300)
    assert done.returncode == 0, done.stderr
    jd = only_job(work)
    results = pickle.loads((jd / "results.pkl").read_bytes())
    counts, slid, hundreds, pairs, n_events = operators_expected(workers)
    got = results[0]
    assert all(r == got for r in results.values())  # collect gives every worker every record
    assert {(ws, k): c for ws, k, c in got["counts"]} == dict(counts) and len(got["counts"]) == len(counts)
    assert {(ws, k) for ws, k, _ in got["slid"]} == set(slid)
    assert all(abs(v - slid[(ws, k)]) < 1e-9 for ws, k, v in got["slid"])
    assert sorted(got["hundreds"]) == hundreds
    assert {(ws, k): c for ws, k, c in got["vcounts"]} == dict(counts)
    assert sorted(got["pairs"]) == pairs
    small = range(10 * workers)
    assert sorted(got["everywhere"]) == sorted((w, r) for w in range(workers) for r in small)
    assert sorted(got["placed"]) == sorted((r % workers, r) for r in small)
    summary = got["summary"]
    assert summary["late"] == 0 and len(summary["workers"]) == workers
    assert summary["events_in"] == 2 * n_events + n_events // 5 + len(small)
    status = [e["message"] for e in events_of(jd) if e["event"] == "progress" and e["message"].startswith("stream:")]
    assert status and all("ev/s in" in m and "watermark" in m and "blocked" in m for m in status)


FAILING = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            s = ctx.stream
            def boom(r):
                if ctx.worker_id == 1 and r == 30:
                    raise ValueError("no thirty")
                return r
            s.generator(lambda p, n, o: iter(range(o, 100))).map(boom).key_by(lambda r: r % 3).collect()
            return s.run(batch=8)
"""


def test_a_user_function_failing_on_one_worker_fails_the_job_on_every_worker_without_a_hang(work):
    from conftest import only_job, state_of, write_job

    job = write_job(work, "failing", FAILING, workers=2)
    done = t2mpi("run", str(job), "-q", cwd=work, timeout=120)
    assert done.returncode == 1
    state = state_of(only_job(work))
    assert state["state"] == "FAILED"
    assert "map at failing.py:" in state["reason"] and "ValueError: no thirty" in state["reason"]


def test_the_click_stream_example_matches_the_reference_with_lateness_and_late_clicks(work):
    import random

    from stream_reference import counts

    r = random.Random(8)
    files = []
    for _ in range(3):
        t, lines = 0.0, []
        for _ in range(400):
            t += r.random() * 0.3
            lines.append(
                f"{max(0.0, t + r.choice([0, 0, 0, -3, -8, -20]) * r.random()):.2f},u{r.randrange(6)},/p{r.randrange(3)}"
            )
        files.append(lines + ["not-a-time,u1,/p"])
    write_input(work / "clicks", files)
    sets = ["config.input=clicks", "config.output=out", "config.batch=25"]
    done = t2mpi("run", str(JOBS / "stream_clicks.yaml"), "-q", *[x for s in sets for x in ("--set", s)], cwd=work)
    assert done.returncode == 0, done.stderr
    emitted, late = counts(files, lambda line: tuple(line.split(",")[:2]), 10.0, 5.0, 1.0, 5.0, 25)
    windows, got_late, _ = read_output(work / "out")
    assert windows == sorted((show_time(ws), k, str(n)) for ws, k, n in emitted)
    assert got_late == sorted(late)
    assert len(emitted) > len({(ws, k) for ws, k, _ in emitted})  # some windows were written again
    assert any(line != "not-a-time,u1,/p" for line in late)  # and some clicks came too late
