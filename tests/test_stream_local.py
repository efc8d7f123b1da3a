"""The stream engine's pure parts (windowers, watermark, sessions) and the engine itself in one
process on a stand-in communicator, against the plain-Python reference of the WordCount contract."""

from __future__ import annotations

import math
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from stream_reference import show_time, wordcount  # noqa: E402

from t2mpi.data.errors import DataError
from t2mpi.stream import count_window, session, sliding, tumbling
from t2mpi.stream.api import StreamContext
from t2mpi.stream.windows import Watermark, merge_sessions


class OneWorker:
    """A communicator of one worker (the Exchange's stand-in path)."""

    def Get_rank(self):  # noqa: N802 (MPI's names)
        return 0

    def Get_size(self):  # noqa: N802
        return 1

    def alltoall(self, items):
        return list(items)

    def allgather(self, item):
        return [item]

    def bcast(self, item, root=0):
        return item


def test_tumbling_windows_are_aligned_to_multiples_of_their_length():
    w = tumbling(seconds=10)
    assert w.starts(0.0) == [0.0] and w.starts(9.999) == [0.0] and w.starts(10.0) == [10.0]
    assert w.starts(-0.5) == [-10.0]


@given(st.floats(-1e6, 1e6), st.sampled_from([(10, 5), (10, 3), (4, 4), (6, 1.5)]))
def test_sliding_windows_are_every_window_that_holds_the_time(ts, size_every):
    size, every = size_every
    w = sliding(seconds=size, every=every)
    starts = w.starts(ts)
    assert starts and all(s <= ts < s + size for s in starts)
    assert all(math.isclose(s / every, round(s / every), abs_tol=1e-6) for s in starts)
    k = math.floor(ts / every)
    expect = [j * every for j in range(k - math.ceil(size / every) - 1, k + 1) if j * every <= ts < j * every + size]
    assert starts == expect


def test_the_watermark_is_the_smallest_maximum_minus_the_disorder_and_never_goes_back():
    wm = Watermark(3, disorder=1.0)
    assert wm.advance([5.0, -math.inf, 7.0]) == -math.inf  # a partition read nothing yet
    assert wm.advance([5.0, 3.0, 7.0]) == 2.0
    assert wm.advance([5.0, math.inf, 7.0]) == 4.0  # partition 1 ended (or is idle)
    assert wm.advance([4.0, 3.0, 7.0]) == 4.0  # it never goes back
    assert wm.advance([math.inf] * 3) == math.inf


def test_an_idle_partition_counts_as_caught_up_with_the_newest_time():
    wm = Watermark(3, disorder=0.5)
    assert wm.advance([5.0, 2.0, 9.0], [False, True, False]) == 4.5  # 2 no longer holds it back
    assert wm.advance([5.0, 2.0, 9.0], [True, True, True]) == 8.5  # all idle: up to the newest time
    assert wm.advance([math.inf, 2.0, 9.0], [False, True, True]) == 8.5  # not beyond it


def test_sessions_grow_and_merge_when_a_time_bridges_them():
    sessions: list = []
    merge_sessions(sessions, 1.0, 2.0)
    merge_sessions(sessions, 6.0, 2.0)
    assert [(s[0], s[1]) for s in sessions] == [(1.0, 1.0), (6.0, 6.0)]
    joined = merge_sessions(sessions, 2.5, 2.0)
    assert [(s[0], s[1]) for s in sessions] == [(1.0, 2.5), (6.0, 6.0)] and len(joined) == 1
    joined = merge_sessions(sessions, 4.2, 2.0)
    assert [(s[0], s[1]) for s in sessions] == [(1.0, 6.0)] and len(joined) == 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s, d: s.files(str(d / "nowhere")), "files at test_stream_local.py:"),
        (lambda s, d: s.generator(lambda p, n, o: []).window(tumbling(seconds=1)), "give event_time="),
        (
            lambda s, d: s.generator(lambda p, n, o: []).window(tumbling(seconds=1), event_time=0, lateness=-1),
            "lateness must be",
        ),
        (lambda s, d: tumbling(seconds=0), "tumbling: seconds must be a number of seconds > 0, got 0"),
        (lambda s, d: sliding(seconds=2, every=3), "every=3 is longer than the window"),
        (lambda s, d: count_window(0), "count_window: n must be an int >= 1"),
        (
            lambda s, d: s.generator(lambda p, n, o: []).window(session(gap=1), event_time=0, on_bad="drop"),
            "on_bad must",
        ),
    ],
)
def test_bad_definitions_are_one_line_errors_naming_what_and_where(tmp_path, make, message):
    with pytest.raises(DataError) as err:
        make(StreamContext(OneWorker()), tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_folder_names_itself(tmp_path):
    with pytest.raises(
        DataError, match=r"files at test_stream_local.py:\d+ on worker 0 of 1 .*: no folder or file '.*nowhere'"
    ):
        StreamContext(OneWorker()).files(str(tmp_path / "nowhere"))


def run_wordcount(folder, window, disorder, batch):
    s = StreamContext(OneWorker())
    from importlib import import_module

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "jobs"))
    job = import_module("stream_wordcount")
    counts = (
        s.files(str(folder / "in"))
        .map(job.parse)
        .key_by(lambda r: r[1])
        .window(tumbling(seconds=window), event_time=job.event_time, disorder=disorder)
        .count()
    )
    got = counts.collect()
    late = counts.late().map(lambda r: r[2]).collect()
    summary = s.run(batch=batch)
    return got.records, late.records, summary


lines = st.lists(
    st.one_of(
        st.tuples(st.floats(0, 60).map(lambda t: round(t, 2)), st.sampled_from("abcd")).map(lambda x: f"{x[0]} {x[1]}"),
        st.sampled_from(["", "nan x", "oops a", "7"]),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(lines, min_size=1, max_size=4),
    st.sampled_from([1.0, 2.5, 10.0]),
    st.sampled_from([0.0, 0.5, 3.0]),
    st.integers(1, 8),
)
def test_one_worker_matches_the_reference(tmp_path_factory, files, window, disorder, batch):
    folder = tmp_path_factory.mktemp("wc")
    (folder / "in").mkdir()
    for i, f in enumerate(files):
        (folder / "in" / f"f{i:02d}.txt").write_text("".join(line + "\n" for line in f))
    want, want_late = wordcount(files, window, disorder, batch)
    got, late, summary = run_wordcount(folder, window, disorder, batch)
    assert sorted((show_time(ws), w, n) for ws, w, n in got) == sorted(
        (show_time(ws), w, n) for (ws, w), n in want.items()
    )
    assert sorted(late) == sorted(want_late)
    assert sum(n for *_, n in got) + len(late) == sum(map(len, files)) == summary["events_in"]


def test_an_alltoall_can_hand_a_worker_its_own_payload_unpickled():
    from t2mpi.data.errors import Where
    from t2mpi.data.exchange import Exchange

    ex = Exchange(OneWorker())
    where = Where("key_by", "x.py:1", 0, 1)
    mine = [object()]  # cannot be pickled by value equality: identity tells
    assert ex.alltoall(where, lambda: [mine], keep_own=True)[0] is mine
    assert ex.alltoall(where, lambda: [[1, 2]])[0] == [1, 2]


def test_the_live_status_line_reads_back_for_the_report():
    from t2mpi import report
    from t2mpi.stream.engine import status_figures

    line = "stream: 52000 ev/s in, 1800 ev/s out, watermark 1234.500 (lag 1.250 s), 12 open windows, 8% blocked"
    assert status_figures(line) == {
        "in": 52000.0,
        "out": 1800.0,
        "watermark": 1234.5,
        "lag": 1.25,
        "windows": 12.0,
        "blocked": 0.08,
    }
    assert status_figures("stream: 10 ev/s in, 0 ev/s out, 0% blocked") == {"in": 10.0, "out": 0.0, "blocked": 0.0}
    assert status_figures("step 4") is None
    events = [
        {
            "t": 100.0 + i,
            "event": "progress",
            "worker": w,
            "fraction": None,
            "message": line.replace("52000", str(1000 * (i + w))),
        }
        for i in range(4)
        for w in (0, 1)
    ]
    page = report.render({"job_id": "j", "num_workers": 2, "state": "COMPLETED"}, events)
    assert "<h2>Stream</h2>" in page and page.count('class="series"') == 4  # 2 charts x 2 workers
    assert "events/s in, up to 4000" in page
    assert "<h2>Stream</h2>" not in report.render({"job_id": "j", "num_workers": 1}, [])


@pytest.mark.parametrize("follow", [False, True])
def test_a_restored_files_source_keeps_the_checkpoints_files_in_their_order(tmp_path, follow):
    from t2mpi.data.errors import Where
    from t2mpi.stream.sources import FilesSource, file_list

    where = Where("files", "x.py:1", 0, 1)
    for name in ("b.txt", "c.txt"):
        (tmp_path / name).write_text("1\n2\n3\n")
    first = FilesSource(where, str(tmp_path), follow, 0, 1, file_list(where, str(tmp_path)))
    assert [(p, r) for p, r in first.read(2)] == [((0, 0), ["1", "2"]), ((0, 1), ["1", "2"])]
    state = first.state()
    (tmp_path / "a.txt").write_text("9\n")  # sorts first: a fresh listing would shift every partition
    again = FilesSource(where, str(tmp_path), follow, 0, 1, file_list(where, str(tmp_path)))
    again.restore(state)
    names = [os.path.basename(f) for f in again.files]
    assert names == (["b.txt", "c.txt", "a.txt"] if follow else ["b.txt", "c.txt"])
    got = again.read(5)
    assert got[:2] == [((0, 0), ["3"]), ((0, 1), ["3"])]
    assert got[2:] == ([((0, 2), ["9"])] if follow else [])
