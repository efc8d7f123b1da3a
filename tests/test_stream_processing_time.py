"""Processing-time windows (window(..., time="processing")): in one process against the plain-Python
reference (tests/stream_reference.py processing_time), with a fake clock that the source's records
advance; the definition errors; and on real MPI workers, windows closed by the clock while a
followed folder still runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from stream_reference import processing_time  # noqa: E402
from test_stream_local import OneWorker  # noqa: E402

from t2mpi.data.errors import DataError
from t2mpi.stream import count_window, session, sliding, tumbling
from t2mpi.stream.api import StreamContext


class FakeClock:
    """A processing clock that the source moves on: each record it yields sets the time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


WINDOWERS = {
    "tumbling": (lambda: tumbling(seconds=2), 2.0, None),
    "sliding": (lambda: sliding(seconds=3, every=1), 3.0, 1.0),
    "session": (lambda: session(gap=1.5), 1.5, None),
}


def rounds_of(records, batch):
    """The engine's rounds over one generator partition: `batch` records each, and the round that
    reads fewer than `batch` ends the stream (an empty one when the records fill the last)."""
    rounds = [records[i : i + batch] for i in range(0, len(records), batch)]
    if not rounds or len(rounds[-1]) == batch:
        rounds.append([])
    return rounds


def run_stream(records, batch, kind, aggregation):
    """records: (clock gap, key, value); each record sets the fake clock as the source yields it.
    Returns [(clock at the sink, (window_start, key, value))] in the order they were written."""
    clock = FakeClock()

    def source(p, n, offset):
        t = 0.0
        for i, (gap, key, value) in enumerate(records):
            t += gap
            if i >= offset:
                clock.now = t
                yield (key, value)

    s = StreamContext(OneWorker())
    win = s.generator(source).key_by(lambda r: r[0]).window(WINDOWERS[kind][0](), time="processing")
    if aggregation == "count":
        out = win.count()
    elif aggregation == "sum":
        out = win.sum(1)
    else:
        out = win.process(lambda ws, key, got: sorted(v for _, v in got))
    written = []
    out.sink(lambda r: written.append((clock.now, r)))
    summary = s.run(batch=batch, clock=clock)
    return written, summary


records = st.lists(
    st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 4.0]), st.sampled_from("abc"), st.integers(0, 9)),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(records, st.integers(1, 6), st.sampled_from(sorted(WINDOWERS)), st.sampled_from(["count", "sum", "process"]))
def test_one_worker_matches_the_processing_time_reference(records, batch, kind, aggregation):
    written, summary = run_stream(records, batch, kind, aggregation)
    rounds = rounds_of(records, batch)
    readings, t, i = [], 0.0, 0
    for r in rounds:  # the clock after a round's reads: its last record's time
        for gap, *_ in records[i : i + len(r)]:
            t += gap
        i += len(r)
        readings.append(t)
    want = processing_time([[(k, v) for _, k, v in r] for r in rounds], readings, kind, *WINDOWERS[kind][1:])

    def value(values):
        return {"count": len(values), "sum": sum(values), "process": sorted(values)}[aggregation]

    assert sorted(written, key=repr) == sorted(((readings[r], (s, k, value(v))) for r, s, k, v in want), key=repr)
    assert summary["late"] == 0  # nothing is ever late on the processing clock
    if kind != "sliding":  # a record is in one window; every record is counted once
        assert sum(len(v) for *_, v in want) == len(records)


def test_numpy_batches_on_the_processing_clock_match_the_records():
    import numpy as np

    clock = FakeClock()

    def batches(p, n, offset):
        for i in range(offset // 4, 6):  # batches of 4 rows, the clock 0.9 s further at each
            clock.now = i * 0.9
            yield {"key": np.arange(4 * i, 4 * i + 4) % 3, "value": np.full(4, float(i))}

    s = StreamContext(OneWorker())
    win = s.batches(batches).key_by("key").window(tumbling(seconds=2), time="processing")
    sums, counts = win.sum("value").collect(), win.count().collect()
    s.run(clock=clock)
    rounds = [[(k, float(i)) for k in np.arange(4 * i, 4 * i + 4) % 3] for i in range(6)] + [[]]
    want = processing_time(rounds, [i * 0.9 for i in range(6)] + [5 * 0.9], "tumbling", 2.0)
    got_sums = sorted((float(s), int(k), float(v)) for s, k, v in sums.records)
    got_counts = sorted((float(s), int(k), int(v)) for s, k, v in counts.records)
    assert got_sums == sorted((s, k, sum(v)) for _, s, k, v in want)
    assert got_counts == sorted((s, k, len(v)) for _, s, k, v in want)
    assert {s for s, *_ in got_sums} == {0.0, 2.0, 4.0}


def test_a_processing_time_join_pairs_what_reaches_it_in_one_window():
    clock = FakeClock()

    def side(name):
        def source(p, n, offset):
            for i in range(offset, 6):
                clock.now = max(clock.now, float(i))
                yield {"id": i % 2, "what": f"{name}{i}"}

        return source

    s = StreamContext(OneWorker())
    orders = s.generator(side("o")).key_by("id")
    pays = s.generator(side("p")).key_by("id")
    pairs = orders.join(pays, tumbling(seconds=3), time="processing")
    got = pairs.map(lambda r: (r[0], r[1], r[2][0]["what"], r[2][1]["what"])).collect()
    s.run(batch=1, clock=clock)  # a round reads one record of each: the clock is the round's index
    want = sorted(
        (3.0 * (i // 3), i % 2, f"o{i}", f"p{j}")
        for i in range(6)
        for j in range(6)
        if i // 3 == j // 3 and i % 2 == j % 2
    )
    assert sorted(got.records) == want


def test_the_clock_never_goes_back_and_the_live_status_shows_it():
    from t2mpi.stream.engine import Hooks, status_figures

    readings = iter([5.0, 9.0, 3.0, 3.0, 20.0] + [20.0] * 10)  # it goes back to 3: still 9
    lines = []
    s = StreamContext(OneWorker(), Hooks(progress=lines.append))
    win = s.generator(lambda p, n, o: iter([("a", 1)] * (4 - o))).key_by(lambda r: r[0])
    got = win.window(tumbling(seconds=4), time="processing").count().collect()
    s.run(batch=1, clock=lambda: next(readings))
    assert got.records == [(4.0, "a", 1), (8.0, "a", 3)]  # at 5, then 9, 9 (not 3), 9: then the end
    figures = status_figures(lines[-1])
    assert figures["watermark"] == 20.0 and figures["lag"] == 0.0


def test_a_checkpoint_holds_the_open_windows_and_the_clock():
    from t2mpi.stream.engine import Hooks

    class Stop(Exception):
        pass

    saved, rounds = [], iter(range(100))

    def checkpoint(state):
        saved.append(state)
        raise Stop  # as a stop request's checkpoint ends a job (Preempted)

    def stream(hooks):
        s = StreamContext(OneWorker(), hooks)
        keyed = s.generator(lambda p, n, o: iter([("a", i) for i in range(o, 6)])).key_by(lambda r: r[0])
        return s, keyed.window(tumbling(seconds=2), time="processing").count().collect()

    first, _ = stream(
        Hooks(checkpoint=checkpoint, next_version=lambda: 1, committed=lambda: 0, asked=lambda: next(rounds) == 2)
    )
    with pytest.raises(Stop):
        first.run(batch=1, clock=lambda: 1.0)  # three records in window [0, 2), then the stop
    again, got = stream(Hooks(restored=lambda: saved[-1]))
    again.run(batch=1, clock=lambda: -3.0)  # a clock behind the checkpoint's counts as the checkpoint's
    assert got.records == [(0.0, "a", 6)]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"event_time": "ts"}, "a processing-time window takes no event_time (each record"),
        ({"disorder": 1.0, "lateness": 2}, "takes no disorder, lateness ("),
        ({"idle_timeout": 3}, "takes no idle_timeout"),
        ({"on_bad": "fail"}, "takes no on_bad"),
        ({"time": "wall"}, "time must be 'event' or 'processing', got 'wall'"),
    ],
)
def test_event_time_options_on_a_processing_time_window_are_one_line_errors(options, message):
    s = StreamContext(OneWorker())
    options = {"time": "processing", **options}
    with pytest.raises(DataError) as err:
        s.generator(lambda p, n, o: []).window(tumbling(seconds=1), **options)
    text = str(err.value)
    assert text.startswith("window at test_stream_processing_time.py:") and message in text and "\n" not in text
    assert len(s.nodes) == 1  # nothing half-built: only the source


def test_other_processing_time_mistakes_are_one_line_errors():
    s = StreamContext(OneWorker())
    with pytest.raises(DataError, match=r"^window at .*: count_window\(3\) counts records and needs no clock"):
        s.generator(lambda p, n, o: []).window(count_window(3), time="processing")
    keyed = s.generator(lambda p, n, o: []).key_by(lambda r: r)
    with pytest.raises(DataError, match=r"^join at .*: a processing-time join takes no event_time"):
        keyed.join(keyed, tumbling(seconds=1), event_time="ts", time="processing")
    with pytest.raises(DataError, match=r"^run at .*: clock must be a function giving seconds, got 5"):
        s.run(clock=5)
    broken = StreamContext(OneWorker())
    broken.generator(lambda p, n, o: iter([1])).window(tumbling(seconds=1), time="processing").count().collect()
    with pytest.raises(DataError, match=r"^window at .* failed: ValueError: could not convert"):
        broken.run(clock=lambda: float("no time"))


# -- on real MPI workers --------------------------------------------------------------------------

FOLLOWED = """
    import os
    from t2mpi import IWorker
    from t2mpi.stream import tumbling

    def clock_of(path):
        def clock():
            with open(path) as f:
                return float(f.read())
        return clock

    class Job(IWorker):
        def execute(self, ctx):
            c = ctx.config
            s = ctx.stream
            lines = s.files(c["input"], follow=True)
            counts = lines.key_by(lambda line: line).window(tumbling(seconds=5), time="processing").count()
            counts.map(lambda w: f"{w[0]:g}\\t{w[1]}\\t{w[2]}").sink_files(c["output"])
            seen = os.path.join(c["seen"], f"seen-{ctx.worker_id}")
            def note(line):  # after the window in the plan: a line noted here is in its window
                with open(seen, "a") as f:
                    f.write(line + "\\n")
            lines.sink(note)
            return s.run(checkpoint_every=0.05, batch=50, clock=clock_of(c["clock"]))
"""


@pytest.mark.mpi
def test_windows_close_on_the_clock_while_a_followed_folder_still_runs(work):
    from conftest import PYTHON, job_dirs, started_client, state_of, wait_for, write_job

    inp, out, seen = work / "in", work / "out", work / "seen"
    inp.mkdir()
    seen.mkdir()

    def set_clock(t):
        (work / "clock.tmp").write_text(repr(float(t)))
        os.replace(work / "clock.tmp", work / "clock")

    def append(name, *lines):
        with open(inp / name, "a") as f:
            f.write("".join(line + "\n" for line in lines))

    def noted():
        return sum(len(p.read_text().splitlines()) for p in seen.iterdir())

    def written():
        if not out.is_dir():
            return []
        return sorted(line for p in out.iterdir() if p.name.startswith("part-") for line in p.read_text().splitlines())

    set_clock(1.0)
    append("a.txt", "x", "y", "x")
    append("b.txt", "y", "z")  # two files: a partition on each worker
    config = {"input": str(inp), "output": str(out), "seen": str(seen), "clock": str(work / "clock")}
    job = write_job(work, "followed", FOLLOWED, workers=2, config=config)
    popen = {"cwd": work, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with started_client([PYTHON, "-m", "t2mpi", "run", str(job), "-q"], signal.SIGUSR1, **popen) as client:
        wait_for(lambda: noted() == 5, 120, "the first five lines read at clock 1")
        assert written() == []  # window [0, 5) is open while the clock is at 1
        set_clock(6.0)
        first = ["0\tx\t2", "0\ty\t2", "0\tz\t1"]
        wait_for(lambda: written() == first, 120, "window [0, 5) written once the clock passed 5")
        append("b.txt", "x", "z")
        wait_for(lambda: noted() == 7, 120, "two more lines read at clock 6")
        set_clock(7.5)  # still inside [5, 10): nothing more is written
        append("a.txt", "z")
        wait_for(lambda: noted() == 8, 120, "one more line read at clock 7.5")
        set_clock(12.0)
        second = sorted(first + ["5\tx\t1", "5\tz\t2"])
        wait_for(lambda: written() == second, 120, "window [5, 10) written once the clock passed 10")
        assert client.poll() is None  # the sources follow: the stream still runs
        client.send_signal(signal.SIGUSR1)
        _, err = client.communicate(timeout=120)
    assert client.returncode == 1, err  # a stop request: PREEMPTED
    (jd,) = job_dirs(work)
    assert state_of(jd)["state"] == "PREEMPTED"
    assert written() == second
