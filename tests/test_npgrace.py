"""Numpy joins and Columns reductions past a memory budget (t2mpi/data/npgrace.py): rows sent in
rounds, partitioned on disk by a hash of the key, joined or reduced a partition at a time; answers
against a single-process join or reduction, every row once, nothing left in the scratch folder."""

from __future__ import annotations

import collections
import operator

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_data_local import checksum, on_partitions

from t2mpi.data import npgrace
from t2mpi.data.columns import Columns

budgets = st.sampled_from([1, 48, 400, 1 << 20])  # a row a round, spilled ... nothing spills
slow = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
keyed = st.lists(st.tuples(st.integers(-6, 30), st.integers(-9, 9)), max_size=90)


def spilling(size, job, folder, budget):
    return on_partitions(size, job, memory_budget=budget, scratch_dir=str(folder))


def as_columns(pairs, value_dtype):
    keys = np.array([k for k, _ in pairs], dtype=np.int64)
    return keys, np.array([v for _, v in pairs], dtype=value_dtype)


def by_group(c):
    return Columns(c.values["right"], c.values["left"])


@slow
@given(left=keyed, right=keyed, size=st.integers(1, 3), budget=budgets)
def test_a_columns_join_past_the_budget_is_the_single_process_join(tmp_path_factory, left, right, size, budget):
    """Duplicate keys on both sides, keys without a match; the joined rows of every worker are the
    inner join's, each once; the joined Columns feed a re-key and a Columns reduction."""
    folder = tmp_path_factory.mktemp("scratch")

    def job(data):
        joined = data.columns(*as_columns(left, np.float64)).join(data.columns(*as_columns(right, np.int32)))
        part = joined.partition()
        rows = list(zip(part.keys.tolist(), part.values["left"].tolist(), part.values["right"].tolist()))
        sums = dict(joined.map_partitions(by_group).reduce_by_key(operator.add).collect())
        return type(part), part.values.dtype.names, rows, sums, data.spilled_bytes

    results = spilling(size, job, folder, budget)
    want = [(k, float(v), w) for k, v in left for k2, w in right if k2 == k]
    got = [row for r in results for row in r[2]]
    assert checksum(got) == checksum(want)  # every row once, over the workers
    assert sorted(got) == sorted(want)
    sums = collections.defaultdict(float)
    for _, v, w in want:
        sums[w] += v
    for kind, names, _, got_sums, _ in results:
        assert kind is Columns and names == ("left", "right")
        assert got_sums == dict(sums)
    spilled = sum(r[-1] for r in results)
    if budget == 1 and left and right:
        assert spilled > 0
    if budget == 1 << 20:
        assert spilled == 0
    assert list(folder.iterdir()) == []


@slow
@given(
    pairs=keyed,
    size=st.integers(1, 3),
    budget=budgets,
    fn=st.sampled_from([operator.add, max, min, operator.mul]),
    dtype=st.sampled_from(["int64", "float64"]),
)
def test_a_columns_reduction_past_the_budget_is_the_single_process_reduction(
    tmp_path_factory, pairs, size, budget, fn, dtype
):
    folder = tmp_path_factory.mktemp("scratch")

    def job(data):
        reduced = data.columns(*as_columns(pairs, dtype)).reduce_by_key(fn)
        part = reduced.partition()
        return type(part), list(part), data.spilled_bytes

    results = spilling(size, job, folder, budget)
    want: dict = {}
    for k, v in pairs:
        want[k] = fn(want[k], v) if k in want else v
    got = [kv for r in results for kv in r[1]]
    assert checksum(k for k, _ in got) == checksum(want)  # every key once, over the workers
    assert dict(got) == pytest.approx(want)
    assert all(r[0] is Columns for r in results)
    if budget == 1 << 20:
        assert sum(r[2] for r in results) == 0
    if budget == 1 and len(want) > 1:
        assert sum(r[2] for r in results) > 0
    assert list(folder.iterdir()) == []


def test_a_spilled_join_is_mapped_from_an_unlinked_file_and_feeds_the_writers(tmp_path):
    """A join past its budget whose output does not fit: Columns of read-only memmaps, with nothing
    left in the scratch folder while they are alive; count, write_npy and collect take it."""
    rng = np.random.default_rng(3)
    lkeys = rng.integers(0, 500, size=4000)
    rkeys = np.arange(500).repeat(2)  # two matches per key: the output is twice the left side
    scratch = tmp_path / "scratch"

    def job(data):
        joined = data.columns(lkeys, np.arange(4000.0)).join(data.columns(rkeys, rkeys * 10))
        part = joined.partition()
        kinds = (type(part.keys.base), type(part.values.base), part.keys.flags.writeable)
        count = joined.count()  # its collective returns once every worker's join is done
        left = list(scratch.iterdir())
        written = joined.map_partitions(lambda c: c.values).write_npy(str(tmp_path / f"out-{data.size}"))
        everything = joined.collect()
        return kinds, left, count, written, len(everything), data.spilled_bytes

    results = spilling(2, job, scratch, 4096)
    for kinds, left, count, _, collected, spilled in results:
        assert kinds == (np.memmap, np.memmap, False) and left == []
        assert count == collected == 8000 and spilled > 0
    rows = np.concatenate([np.load(p) for p in results[0][3]])
    assert len(rows) == 8000
    assert sorted(rows["right"].tolist()) == sorted((lkeys * 10).repeat(2).tolist())
    assert sorted(rows["left"].tolist()) == sorted(np.arange(4000.0).repeat(2).tolist())
    assert list(scratch.iterdir()) == []


def test_a_failure_in_a_spilling_reduction_leaves_no_file(tmp_path, monkeypatch):
    """A partition that cannot be read back (its file gone bad) fails the reduction; the spill folder
    goes with it."""
    from t2mpi.data.errors import DataError

    def unreadable(self, p, per):
        raise OSError(f"partition {p} unreadable")

    monkeypatch.setattr(npgrace.Partitions, "chunks", unreadable)

    def job(data):
        return data.columns(np.arange(300) % 37, np.ones(300)).reduce_by_key(operator.add).collect()

    with pytest.raises((OSError, DataError), match="unreadable"):
        spilling(2, job, tmp_path, 1)
    assert list(tmp_path.iterdir()) == []


def test_keys_spread_over_every_partition():
    keys = np.arange(0, 64_000, 4, dtype=np.int64)  # one residue modulo the workers: still spread evenly
    counts = np.bincount(npgrace.partition_of(keys), minlength=npgrace.SPILL_FILES)
    assert len(counts) == npgrace.SPILL_FILES and counts.min() > 0.8 * len(keys) / npgrace.SPILL_FILES
    assert npgrace.partition_of(np.array([-1, -(2**63)], dtype=np.int64)).max() < npgrace.SPILL_FILES


@settings(max_examples=80, deadline=None)
@given(
    lkeys=st.lists(st.integers(-20, 90) | st.sampled_from([2**62, -(2**63)]), max_size=60),
    rkeys=st.lists(st.integers(-10, 30), max_size=40, unique=True) | st.lists(st.integers(-10, 30), max_size=40),
    stride=st.integers(1, 3),
    spread=st.sampled_from([1, 2, 3, 1000]),
)
@example(lkeys=[3, 2, 5, -1, 9], rkeys=[0, 1, 2, 4], stride=2, spread=2)  # left keys off the right keys' stride
@example(lkeys=[4, 1, 4, 2**62], rkeys=[1, 4, 2, 4], stride=1, spread=1)  # equal right keys: the sort
def test_the_columns_join_of_records_is_the_nested_loop_join(lkeys, rkeys, stride, spread):
    """join._columns_inner, by its table of dense unique right keys (right keys spread by `spread`,
    left keys on and off that stride) or by its sort: left rows in order, each with its matches in
    right order."""
    from t2mpi.data.join import _columns_inner

    left = np.zeros(len(lkeys), dtype=[("key", "<i8"), ("value", "<i4")])
    left["key"], left["value"] = lkeys, np.arange(len(lkeys))
    right = np.zeros(len(rkeys), dtype=[("key", "<i8"), ("value", "<f8")])
    right["key"], right["value"] = [k * spread for k in rkeys], np.arange(len(rkeys)) / 2
    got = _columns_inner(left, right, stride)
    want = [
        (lk, i, j / 2)
        for i, lk in enumerate(left["key"].tolist())
        for j, rk in enumerate(right["key"].tolist())
        if lk == rk
    ]
    assert list(zip(got.keys.tolist(), got.values["left"].tolist(), got.values["right"].tolist())) == want
