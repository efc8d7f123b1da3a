"""bench/streaming_data.py, the streaming benchmark's workload and reference: the reference against a
brute-force count, the generator's disorder bound, and `check` against a plain engine that follows
the issue's watermark contract over random interleavings of the partitions (no timing here)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import streaming_data as sd  # noqa: E402

SMALL = sd.Workload(events=3000, keys=7, partitions=2, rate=50.0, stragglers=0.05, lag=14.0, seed=3)


def brute_force(w: sd.Workload, cols) -> tuple[Counter, Counter]:
    """Per (window, key): every event's count, and the ordinary (non-straggler) events' count."""
    every, ordinary = Counter(), Counter()
    for ts_us, key, late in zip(cols["ts_us"].tolist(), cols["key"].tolist(), cols["straggler"].tolist()):
        cell = (ts_us // 10_000_000, key)
        every[cell] += 1
        if not late:
            ordinary[cell] += 1
    return every, ordinary


def as_counter(ref: sd.Reference, counts) -> Counter:
    return Counter({(int(c) // ref.keys, int(c) % ref.keys): int(n) for c, n in zip(ref.codes, counts) if n})


def contract_engine(
    w: sd.Workload, cols, order: list[int], disorder: float = sd.DISORDER
) -> tuple[list[tuple[float, int, int]], int]:
    """One process applying the contract: read the partitions in the given interleaving (order: a
    partition number per step); watermark = min over partitions of the largest time read there,
    minus the disorder; a record whose window has been written is late; at the end every open
    window is written. Returns ((window start, key, count) rows, late)."""
    parts = [np.flatnonzero(cols["partition"] == p).tolist() for p in range(w.partitions)]
    ts_us, keys = cols["ts_us"].tolist(), cols["key"].tolist()
    largest = [-float("inf")] * w.partitions
    open_, rows, late, written = Counter(), [], 0, -1  # written: the last window index written
    for p in order:
        i = parts[p].pop(0)
        window = ts_us[i] // 10_000_000
        if window <= written:
            late += 1
        else:
            open_[(window, keys[i])] += 1
        largest[p] = max(largest[p], ts_us[i] / 1e6)
        watermark = min(largest) - disorder
        while (written + 2) * sd.WINDOW <= watermark:
            written += 1
            rows += [(win * sd.WINDOW, k, n) for (win, k), n in sorted(open_.items()) if win == written]
    rows += [(win * sd.WINDOW, k, n) for (win, k), n in sorted(open_.items()) if win > written]
    return rows, late


def interleaving(w: sd.Workload, cols, draw_bits: list[bool]) -> list[int]:
    """A reading order of both partitions' events, steered by bits (True: partition 1 next)."""
    left = [int((cols["partition"] == p).sum()) for p in range(2)]
    order, bits = [], iter(draw_bits)
    while left[0] or left[1]:
        p = 1 if (not left[0] or (left[1] and next(bits, False))) else 0
        order.append(p)
        left[p] -= 1
    return order


def test_reference_matches_a_brute_force_count():
    cols = sd.columns(SMALL)
    ref = sd.Reference.of(SMALL, cols)
    every, ordinary = brute_force(SMALL, cols)
    assert as_counter(ref, ref.high) == every
    assert as_counter(ref, ref.low) == ordinary
    assert ref.events == SMALL.events == sum(every.values())
    assert ref.stragglers == SMALL.events - sum(ordinary.values()) > 0


def test_generator_is_seeded_and_bounds_its_disorder():
    a, b, other = sd.columns(SMALL), sd.columns(SMALL), sd.columns(sd.Workload(**{**SMALL.__dict__, "seed": 4}))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["ts_us"], other["ts_us"])
    nominal = 1_000_000 + np.arange(SMALL.events) * int(1_000_000 / SMALL.rate)
    behind = nominal - a["ts_us"]
    ordinary = ~a["straggler"]
    assert (behind[ordinary] >= 0).all() and (behind[ordinary] < 1_000_000).all()
    lag = int(SMALL.lag * 1_000_000)
    assert (behind[a["straggler"]] >= lag).all() and (behind[a["straggler"]] < lag + 1_000_000).all()
    assert (a["ts_us"] > 0).all()
    for p in range(SMALL.partitions):  # an ordinary event is never behind its partition's largest time - disorder
        ts = a["ts_us"][a["partition"] == p]
        before = np.maximum.accumulate(np.concatenate([[-(10**12)], ts[:-1]]))
        assert (ts[ordinary[a["partition"] == p]] > before[ordinary[a["partition"] == p]] - 1_000_000).all()


@settings(max_examples=25, deadline=None)
@given(bits=st.lists(st.booleans(), min_size=0, max_size=3000))
def test_a_contract_engine_passes_the_check_in_any_interleaving(bits):
    cols = sd.columns(SMALL)
    ref = sd.Reference.of(SMALL, cols)
    rows, late = contract_engine(SMALL, cols, interleaving(SMALL, cols, bits))
    starts, keys, counts = zip(*rows)
    summary = sd.check(ref, starts, keys, counts, late)
    assert f"{late:,} late" in summary
    assert late <= ref.stragglers


def test_stragglers_are_late_when_partitions_go_in_step():
    cols = sd.columns(SMALL)
    ref = sd.Reference.of(SMALL, cols)
    rows, late = contract_engine(SMALL, cols, interleaving(SMALL, cols, [True, False] * SMALL.events))
    sd.check(ref, *zip(*rows), late)
    assert late == ref.stragglers  # 14 s behind: its window ends 4 s before its partners' times, past the 1 s disorder


def test_check_refuses_wrong_output():
    cols = sd.columns(SMALL)
    ref = sd.Reference.of(SMALL, cols)
    rows, late = contract_engine(SMALL, cols, [p for p in cols["partition"].tolist()])
    starts, keys, counts = (list(c) for c in zip(*rows))
    sd.check(ref, starts, keys, counts, late)
    with pytest.raises(sd.CheckError, match="written more than once"):
        sd.check(ref, starts + starts[:1], keys + keys[:1], counts + counts[:1], late)
    split = [counts[0] - 1, 1] if counts[0] > 1 else [counts[0], 0]  # a window written twice, in parts
    loose = sd.check(ref, [starts[0], *starts], [keys[0], *keys], [split[0], split[1], *counts[1:]], late, exact=False)
    assert "1 written again: summed" in loose
    with pytest.raises(sd.CheckError, match="not in the input"):
        sd.check(ref, starts + [starts[0] + 10_000.0], keys + [0], counts + [1], late)
    with pytest.raises(sd.CheckError, match="count"):
        sd.check(ref, starts, keys, [counts[0] - 1] + counts[1:], late + 1)
    with pytest.raises(sd.CheckError, match="late != "):
        sd.check(ref, starts, keys, counts, late + 1)
    with pytest.raises(sd.CheckError, match="count"):  # a lost cell is a count below its ordinary events
        sd.check(ref, starts[1:], keys[1:], counts[1:], late + counts[0])


def test_an_engine_without_the_disorder_allowance_is_caught():
    """Watermark = the largest time read, no disorder: ordinary events come late, and check says so;
    with exact=False (an engine with another watermark) such output passes if it adds up."""
    cols = sd.columns(SMALL)
    ref = sd.Reference.of(SMALL, cols)
    rows, late = contract_engine(SMALL, cols, interleaving(SMALL, cols, [True, False] * SMALL.events), disorder=0.0)
    assert late > ref.stragglers
    with pytest.raises(sd.CheckError):
        sd.check(ref, *zip(*rows), late)
    assert "late" in sd.check(ref, *zip(*rows), late, exact=False)


def test_files_hold_the_columns_and_a_folder_is_reused(tmp_path):
    ref = sd.write(str(tmp_path), SMALL)
    cols = sd.columns(SMALL)
    for p in range(SMALL.partitions):
        mine = cols["partition"] == p
        lines = (tmp_path / "text" / f"part-{p}.txt").read_text().splitlines()
        ts = np.array([float(line.split()[0]) for line in lines])
        keys = np.array([int(line.split()[1]) for line in lines])
        part = sd.load_part(str(tmp_path), p)
        assert np.array_equal(ts, cols["ts"][mine]) and np.array_equal(part["ts"], cols["ts"][mine])
        assert np.array_equal(keys, cols["key"][mine]) and np.array_equal(part["key"], keys)
    stamp = (tmp_path / "text" / "part-0.txt").stat().st_mtime_ns
    again = sd.write(str(tmp_path), SMALL)
    assert (tmp_path / "text" / "part-0.txt").stat().st_mtime_ns == stamp
    assert np.array_equal(again.codes, ref.codes) and np.array_equal(again.low, ref.low)
    sd.save_output(str(tmp_path / "out-0.npz"), [0.0], [1], [2], 3)
    sd.save_output(str(tmp_path / "out-1.npz"), [10.0], [4], [5], 6)
    starts, keys, counts, late = sd.load_outputs([str(tmp_path / "out-0.npz"), str(tmp_path / "out-1.npz")])
    assert starts.tolist() == [0.0, 10.0] and keys.tolist() == [1, 4] and counts.tolist() == [2, 5] and late == 9


def test_bad_workloads_are_refused():
    with pytest.raises(ValueError, match="lag"):
        sd.Workload(lag=5.0)
    with pytest.raises(ValueError, match="rate"):
        sd.Workload(rate=0.0)


def test_emission_delay_is_counted_from_the_last_partition_passing_a_window_end(tmp_path):
    import streaming

    # (partition, window end, wall time its largest event time passed end + disorder)
    crossed = [(0, 10.0, 100.0), (1, 10.0, 100.5), (0, 20.0, 101.0), (1, 20.0, 100.9), (0, 30.0, 102.0)]
    came = [(0.0, 100.52, 100.6), (10.0, 101.01, 101.2), (20.0, 102.5, 102.6)]  # (window start, first, last)
    np.savez(tmp_path / "delay-0.npz", crossed=np.array(crossed[:3]), came=np.array(came[:1]))
    np.savez(tmp_path / "delay-1.npz", crossed=np.array(crossed[3:]), came=np.array(came[1:]))
    first, last = streaming.delays(str(tmp_path))
    assert np.allclose(first, [0.02, 0.01]) and np.allclose(last, [0.1, 0.2])  # end 30: only one partition passed


def stream_job():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "streaming_jobs"))
    import stream_job

    return stream_job


GEN = {"events": 2201, "rate": 100.0, "speed": 0.0, "window": 10.0, "disorder": 1.0, "keys": 5, "seed": 1}


def test_the_generator_source_resumes_from_any_offset_and_notes_window_ends():
    sd.CROSSED.clear()
    whole = [list(sd.generate(GEN, p, 2, 0)) for p in range(2)]
    assert [len(w) for w in whole] == [1101, 1100]
    events = sorted(whole[0] + whole[1])
    assert all(0 <= k < 5 for _, k in events)
    ts = np.array([t for t, _ in whole[0]])  # partition 0: events 0, 2, 4, ... at 1 s + i / 100 - [0, 1)
    behind = 1.0 + np.arange(0, 2201, 2) / 100.0 - ts
    assert (behind >= 0).all() and (behind < 1).all()
    ends = sorted({end for p, end, _ in sd.CROSSED if p == 0})
    assert ends == [10.0, 20.0]  # its largest time passes 11 s and 21 s, not 31 s (its last event: 23 s - [0, 1))
    for offset in (1, 255, 256, 700):
        assert list(sd.generate(GEN, 0, 2, offset)) == whole[0][offset:]


def test_the_batches_source_reads_from_an_offset_and_the_sinks_take_both_kinds_of_chunk(tmp_path):
    job = stream_job()
    sd.write(str(tmp_path), SMALL)
    part = sd.load_part(str(tmp_path), 1)
    got = list(job.read_batches(str(tmp_path), 500, 1, 2, 300))
    assert [len(b["ts"]) for b in got] == [500, 500, 200]  # 1,500 rows in partition 1
    assert np.array_equal(np.concatenate([b["key"] for b in got]), part["key"][300:])
    cells, late = job.Cells(pause=0.0, timed=True), job.Late()
    cells([(10.0, 3, 7), (0.0, 4, 1)])
    cells({"window_start": np.array([20.0]), "key": np.array([5]), "value": np.array([2])})
    cells([])
    assert [c.tolist() for c in cells.columns()] == [[10.0, 0.0, 20.0], [3, 4, 5], [7, 1, 2]]
    assert sorted(cells.came.came) == [0.0, 10.0, 20.0]
    late([(1.5, 2)])
    late({"ts": np.array([1.0, 2.0]), "key": np.array([1, 2])})
    assert late.n == 3
