"""The stream operators in one process (a stand-in communicator): keyed state, sliding, session and
count windows, lateness re-emission, bad event times, numpy batches, the windowed join, follow=True
with an idle timeout; each against a plain computation."""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from test_stream_local import OneWorker  # noqa: E402

from t2mpi.data.errors import DataError, UserFunctionError
from t2mpi.stream import count_window, session, sliding, tumbling
from t2mpi.stream.api import StreamContext
from t2mpi.stream.engine import Hooks


def events(n=200, keys=5, seed=0):
    import random

    r = random.Random(seed)
    return [{"ts": i * 0.1, "key": r.randrange(keys), "value": r.randrange(100)} for i in range(n)]


def gen(records):
    return lambda p, n, offset: iter(records[offset:])


def test_stateful_map_and_reduce_keep_a_running_state_per_key():
    s = StreamContext(OneWorker())
    ev = events()
    keyed = s.generator(gen(ev)).key_by("key")
    counted = keyed.stateful_map(lambda: 0, lambda st, r: (st + 1, st + 1)).collect()
    sums = keyed.reduce(lambda a, b: {**a, "value": a["value"] + b["value"]}).collect()
    s.run(batch=7)
    assert Counter(k for k, _ in counted.records) == Counter(e["key"] for e in ev)
    assert max(c for k, c in counted.records if k == 0) == sum(e["key"] == 0 for e in ev)
    last = {k: v["value"] for k, v in sums.records}
    assert last == {k: sum(e["value"] for e in ev if e["key"] == k) for k in last}


def test_sliding_windows_count_each_event_in_every_window_that_holds_it():
    s = StreamContext(OneWorker())
    ev = events()
    out = (
        s.generator(gen(ev)).key_by("key").window(sliding(seconds=2, every=0.5), event_time="ts").sum("value").collect()
    )
    s.run(batch=13)
    want = defaultdict(int)
    for e in ev:
        for j in range(-8, 1):
            start = (math.floor(e["ts"] / 0.5) + j) * 0.5
            if start <= e["ts"] < start + 2:
                want[(start, e["key"])] += e["value"]
    assert sorted(out.records) == sorted((ws, k, v) for (ws, k), v in want.items())


def test_session_windows_close_after_the_gap():
    s = StreamContext(OneWorker())
    recs = [
        {"ts": t, "key": k}
        for t, k in [(0.0, "u"), (1.0, "u"), (2.5, "u"), (10.0, "u"), (11.0, "v"), (10.5, "u"), (30.0, "u")]
    ]
    out = s.generator(gen(recs)).key_by("key").window(session(gap=3), event_time="ts").count().collect()
    s.run(batch=2)
    assert sorted(out.records) == [(0.0, "u", 3), (10.0, "u", 2), (11.0, "v", 1), (30.0, "u", 1)]


def test_count_windows_close_every_n_records_of_a_key_and_at_the_end():
    s = StreamContext(OneWorker())
    recs = [("a", i) for i in range(7)] + [("b", 1)]
    out = (
        s.generator(gen(recs))
        .key_by(lambda r: r[0])
        .window(count_window(3))
        .aggregate(list, lambda acc, r: acc + [r[1]])
        .collect()
    )
    s.run(batch=3)
    assert sorted(out.records) == [(0, "a", [0, 1, 2]), (0, "b", [1]), (1, "a", [3, 4, 5]), (2, "a", [6])]


def test_lateness_re_emits_an_updated_window_and_later_records_go_to_the_side_output():
    s = StreamContext(OneWorker())
    # rounds of 2: [1, 12] -> watermark 12: window [0,10) written; [5, 25] -> 5 within lateness 5
    # of [0, 10) (10 + 5 > 12): updated, written again; [3, 40]: [0, 10) is past 10 + 5 <= 25: late
    recs = [{"ts": t, "key": 0} for t in (1, 12, 5, 25, 3, 40)]
    counts = s.generator(gen(recs)).key_by("key").window(tumbling(seconds=10), event_time="ts", lateness=5).count()
    out = counts.collect()
    late = counts.late(with_reason=True).collect()
    s.run(batch=2)
    assert out.records == [(0.0, 0, 1), (0.0, 0, 2), (10.0, 0, 1), (20.0, 0, 1), (40.0, 0, 1)]
    assert [r["ts"] for _, r in late.records] == [3]
    assert late.records[0][0].startswith("late: window 0.0 closed")


def test_bad_event_times_go_to_the_side_output_with_the_reason_or_fail():
    recs = [{"ts": 1.0}, {"ts": "soon"}, {"nots": 1}, {"ts": float("nan")}]
    s = StreamContext(OneWorker())
    counts = s.generator(gen(recs)).window(tumbling(seconds=10), event_time="ts").count()
    out, bad = counts.collect(), counts.late(with_reason=True).collect()
    s.run()
    assert out.records == [(0.0, None, 1)]
    assert [why.split(":")[0] for why, _ in bad.records] == ["bad event time"] * 3
    assert "ValueError" in bad.records[0][0] and "KeyError" in bad.records[1][0]
    s = StreamContext(OneWorker())
    s.generator(gen(recs)).window(tumbling(seconds=10), event_time="ts", on_bad="fail").count().collect()
    with pytest.raises(
        DataError, match=r"window at test_stream_operators.py:\d+ .*: a record's event time cannot be read"
    ):
        s.run()


def test_a_failing_user_function_names_its_operator():
    s = StreamContext(OneWorker())
    s.generator(gen([1, 2, 0])).map(lambda x: 1 / x).collect()
    with pytest.raises(
        UserFunctionError, match=r"map at test_stream_operators.py:\d+ on worker 0 of 1 .*ZeroDivisionError"
    ):
        s.run()


def test_numpy_batches_aggregate_vectorised_like_records():
    rng = np.random.default_rng(1)
    n, chunk = 5000, 700
    ts = np.sort(rng.uniform(0, 100, n)) + rng.uniform(-1, 1, n)
    keys = rng.integers(0, 50, n)
    values = rng.uniform(0, 1, n)

    def batches(p, parts, offset):
        for a in range(offset, n, chunk):
            yield {"ts": ts[a : a + chunk], "key": keys[a : a + chunk], "value": values[a : a + chunk]}

    s = StreamContext(OneWorker())
    summed = s.batches(batches).key_by("key").window(tumbling(seconds=10), event_time="ts", disorder=1.0).sum("value")
    sums, late = summed.collect(), summed.late().collect()
    s2 = StreamContext(OneWorker())
    counts = (
        s2.batches(batches).key_by("key").window(tumbling(seconds=10), event_time="ts", disorder=1.0).count().collect()
    )
    chunks = []
    s2.batches(batches).key_by("key").window(tumbling(seconds=10), event_time="ts", disorder=1.0).count().sink(
        chunks.append, batches=True
    )
    s.run()
    s2.run()
    assert chunks and all(
        sorted(c) == ["key", "value", "window_start"] and c["value"].dtype.kind == "i" for c in chunks
    )
    assert sum(len(c["key"]) for c in chunks) == len(counts.records)
    late_rows = {(t, k) for t, k, _ in late.records}
    want_sum, want_count = defaultdict(float), Counter()
    for t, k, v in zip(ts.tolist(), keys.tolist(), values.tolist()):
        if (t, k) in late_rows:
            continue
        want_sum[(math.floor(t / 10) * 10, k)] += v
        want_count[(math.floor(t / 10) * 10, k)] += 1
    got = {(ws, k): v for ws, k, v in sums.records}
    assert got.keys() == want_sum.keys() and all(abs(got[x] - want_sum[x]) < 1e-9 for x in got)
    assert {(ws, k): c for ws, k, c in counts.records} == dict(want_count)
    assert sum(want_count.values()) + len(late.records) == n


def test_the_windowed_join_pairs_records_of_one_key_and_window():
    s = StreamContext(OneWorker())
    clicks = [{"ts": t, "user": u} for t, u in [(1, "a"), (2, "b"), (3, "a"), (12, "a")]]
    buys = [{"at": t, "user": u, "item": i} for t, u, i in [(4, "a", "x"), (5, "c", "y"), (13, "a", "z")]]
    a = s.generator(gen(clicks)).key_by("user")
    b = s.generator(gen(buys)).key_by("user")
    out = a.join(b, tumbling(seconds=10), event_time=("ts", "at")).collect()
    s.run(batch=2)
    got = sorted((ws, k, (x["ts"], y["item"])) for ws, k, (x, y) in out.records)
    assert got == [(0.0, "a", (1, "x")), (0.0, "a", (3, "x")), (10.0, "a", (12, "z"))]


def test_follow_reads_appended_lines_and_new_files_and_idle_files_do_not_hold_the_watermark(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("1 x\n2 x\n")
    (folder / "b.txt").write_text("1 y\n")  # then idle: it would hold the watermark at 1 without the timeout
    state = {"round": 0}
    written = []
    deadline = time.monotonic() + 60

    def asked():  # the test's driver, between rounds: append, add a file, then stop
        state["round"] += 1
        if state["round"] == 2:
            with open(folder / "a.txt", "a") as f:
                f.write("15 x\n16 x\n17")  # the last line has no newline yet: not read
        if state["round"] == 3:
            (folder / "c.txt").write_text("30 z\n")
        done = any(w[0] == 10.0 for w in written) and s.sources[0].records_in == 6
        return done or time.monotonic() > deadline

    s = StreamContext(OneWorker(), Hooks(asked=asked))
    win = s.files(str(folder), follow=True).map(str.split).key_by(lambda r: r[1])
    win = win.window(tumbling(seconds=10), event_time=lambda r: float(r[0]), idle_timeout=0.01)
    win.count().sink(written.append)
    summary = s.run()
    assert time.monotonic() < deadline
    # the idle files count as caught up with the newest time read (30): [30, 40) stays open
    assert sorted(written) == [(0.0, "x", 2), (0.0, "y", 1), (10.0, "x", 2)]
    assert summary["events_in"] == 6 and summary["late"] == 0


def test_sliding_windows_on_numpy_batches_match_the_record_path():
    rng = np.random.default_rng(2)
    n = 3000
    ts = np.sort(rng.uniform(0, 50, n))
    keys = rng.integers(0, 20, n)
    values = rng.uniform(0, 1, n)

    def batches(p, parts, offset):
        for a in range(offset, n, 256):
            yield {"ts": ts[a : a + 256], "key": keys[a : a + 256], "value": values[a : a + 256]}

    records = [{"ts": t, "key": k, "value": v} for t, k, v in zip(ts.tolist(), keys.tolist(), values.tolist())]
    window = sliding(seconds=4, every=1.5)
    s = StreamContext(OneWorker())
    vec = s.batches(batches).key_by("key").window(window, event_time="ts").max("value").collect()
    s.run()
    s = StreamContext(OneWorker())
    rec = s.generator(gen(records)).key_by("key").window(window, event_time="ts").max("value").collect()
    s.run(batch=256)
    got = {(ws, k): v for ws, k, v in vec.records}
    assert len(got) == len(vec.records) == len(rec.records)
    assert got == {(ws, k): v for ws, k, v in rec.records}


def test_a_restart_into_another_stream_is_an_error_naming_both():
    s = StreamContext(OneWorker())
    s.generator(gen([1, 2])).map(str).collect()
    checkpoint = {}
    versions = iter(range(1, 10))
    hooks = Hooks(
        checkpoint=lambda state: checkpoint.update(state) or 1,
        next_version=lambda: next(versions),
        committed=lambda: 1,
    )
    s.hooks = hooks
    s.run()
    again = StreamContext(OneWorker(), Hooks(restored=lambda: checkpoint))
    again.generator(gen([1, 2])).filter(bool).collect()
    with pytest.raises(
        DataError,
        match=r"run at test_stream_operators.py:\d+: the checkpoint holds a stream of \['generator', 'map', 'collect'\], this job makes \['generator', 'filter', 'collect'\]",
    ):
        again.run()
    same = StreamContext(OneWorker(), Hooks(restored=lambda: checkpoint))
    out = same.generator(gen([1, 2])).map(str).collect()
    assert same.run()["events_in"] == 0 and out.records == ["1", "2"]  # it had ended: nothing to replay


def test_numpy_batches_are_keyed_by_an_integer_column():
    s = StreamContext(OneWorker())
    s.batches(lambda p, n, o: iter([{"k": np.array([0.5]), "ts": np.array([1.0])}])).key_by("k").collect()
    with pytest.raises(DataError, match=r"key_by at test_stream_operators.py:\d+ .*: key column 'k' is float64"):
        s.run()
    with pytest.raises(DataError, match="on numpy batches key_by takes a column name"):
        StreamContext(OneWorker()).batches(lambda p, n, o: iter([])).key_by(lambda b: 0)


def test_output_is_published_while_the_newest_checkpoint_is_still_being_committed(tmp_path):
    """Checkpoints every round, and the job's commit always one behind the newest (as under load,
    where committing takes longer than the checkpoint interval): the committed epochs' parts are
    published while the stream runs, not only once it ends."""
    out = tmp_path / "out"
    taken: list[int] = []
    ended = []

    def published():
        return [n for n in os.listdir(out) if n.startswith("part-")] if out.is_dir() else []

    def source(p, n, o):
        deadline = time.monotonic() + 30  # a bound: the bug kept every part unpublished forever
        i = o
        while not published() and time.monotonic() < deadline:
            yield f"line {i}"
            i += 1
        ended.append(bool(published()))

    def checkpoint(state):
        return taken[-1]

    def committed():
        if not taken:
            return None
        return taken[-1] if ended else taken[-1] - 1

    hooks = Hooks(
        checkpoint=checkpoint, next_version=lambda: taken.append(len(taken) + 1) or taken[-1], committed=committed
    )
    s = StreamContext(OneWorker(), hooks)
    s.generator(source).sink_files(out)
    summary = s.run(checkpoint_every=0.001, batch=1)
    assert ended == [True]  # the source saw a part published while it still ran
    lines = [line for n in sorted(published()) for line in (out / n).read_text().splitlines()]
    assert lines == [f"line {i}" for i in range(summary["events_in"])]  # none lost, none twice


@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    chunk=st.integers(1, 1500),
    keys=st.sampled_from(["dense", "unsigned", "negative", "sparse"]),
    agg=st.sampled_from(["count", "sum", "max"]),
    window=st.sampled_from([tumbling(seconds=5), tumbling(seconds=0.5), sliding(seconds=4, every=1.5)]),
    lateness=st.sampled_from([0.0, 2.0]),
)
def test_numpy_batches_match_the_record_path_on_random_data(seed, n, chunk, keys, agg, window, lateness):
    """The vectorised window path (one bincount over (window, key) cells for small dense keys, a sort
    by window otherwise) against the per-record path, on the same rows in the same rounds."""
    rng = np.random.default_rng(seed)
    ts = np.round(np.sort(rng.uniform(0, 60, n)) - rng.uniform(0, 3, n), 3)  # out of order, some late
    key = {
        "dense": rng.integers(0, 30, n),
        "unsigned": rng.integers(0, 30, n).astype(np.uint64),
        "negative": rng.integers(-20, 20, n),
        "sparse": rng.integers(0, 1 << 40, 5)[rng.integers(0, 5, n)],
    }[keys]
    value = np.round(rng.uniform(-1, 1, n), 3)

    def batches(p, parts, offset):
        for a in range(offset, n, chunk):
            yield {"ts": ts[a : a + chunk], "key": key[a : a + chunk], "value": value[a : a + chunk]}

    records = [{"ts": t, "key": k, "value": v} for t, k, v in zip(ts.tolist(), key.tolist(), value.tolist())]

    def run(stream):
        win = stream.key_by("key").window(window, event_time="ts", disorder=1.0, lateness=lateness)
        aggregated = win.count() if agg == "count" else getattr(win, agg)("value")
        return aggregated.collect(), aggregated.late().collect()

    s = StreamContext(OneWorker())
    vec, vec_late = run(s.batches(batches))
    s.run()
    s = StreamContext(OneWorker())
    rec, rec_late = run(s.generator(gen(records)))
    s.run(batch=chunk)

    def final(rows):  # the last emission of each (window, key): a late row within lateness re-emits
        last = {}
        for ws, k, v in rows:
            last[(float(ws), int(k))] = v
        return last

    got, want = final(vec.records), final(rec.records)
    assert got.keys() == want.keys()
    for cell, v in want.items():
        assert got[cell] == pytest.approx(v, abs=1e-9), cell
    late_rows = sum(len(c["ts"]) if isinstance(c, dict) else 1 for c in vec_late.records)
    assert late_rows == len(rec_late.records)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    wm=st.floats(-1e9, 1e9) | st.sampled_from([-math.inf, math.inf, 0.0, 30.0, 29.999999999999996]),
    every=st.floats(1e-3, 1e3),
    size=st.floats(1e-3, 1e3),
    lateness=st.floats(0, 100) | st.just(0.0),
)
def test_the_last_closed_window_is_the_one_each_rows_test_finds(wm, every, size, lateness):
    from t2mpi.stream.windowing import _last_closed

    last = _last_closed(wm, every, size, lateness)
    if last is None:
        return  # indices past a float's exact range: each row is tested itself
    if math.isinf(last):
        assert last == wm
        return
    k = np.arange(last - 3, last + 4)
    assert ((k * every + size + lateness <= wm) == (k <= last)).all()
