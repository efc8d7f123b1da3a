"""Keyed shuffles past a memory budget (t2mpi/data/spill.py): the sending side in rounds, the
receiving side spilled to disk by a hash of the key; answers against plain Python, nothing left on
disk afterwards."""

from __future__ import annotations

import collections
import operator
import pickle

import pytest
from conftest import events_of, only_job, t2mpi, write_job
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data_local import checksum, join_reference, on_partitions

from t2mpi.data import spill

keyed = st.lists(st.tuples(st.integers(0, 40) | st.text("abc", max_size=3), st.integers(-9, 9)), max_size=120)


@pytest.fixture
def small_rounds(monkeypatch):
    monkeypatch.setattr(spill, "CHUNK", 3)  # the sending side checks its budget every 3 elements


def spilling(size, job, folder, budget=1):
    return on_partitions(size, job, memory_budget=budget, scratch_dir=str(folder))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=keyed, size=st.integers(1, 3))
def test_keyed_operations_past_the_budget_match_python(small_rounds, tmp_path_factory, pairs, size):
    # small_rounds only sets a module constant, the same for every example
    folder = tmp_path_factory.mktemp("scratch")

    def job(data):
        ds = data.from_iterable(pairs)
        return (
            dict(ds.reduce_by_key(operator.add).collect()),
            dict(ds.reduce_by_key(lambda a, b: max(a, b)).collect()),
            {k: sorted(vs) for k, vs in ds.group_by_key().collect()},
            dict(ds.keys().count_by_value().collect()),
            sorted(ds.keys().distinct().collect(), key=repr),
            checksum(ds.reduce_by_key(operator.add).collect()),
            data.spilled_bytes,
        )

    sums, maxes, groups = collections.defaultdict(int), {}, collections.defaultdict(list)
    for k, v in pairs:
        sums[k] += v
        maxes[k] = max(maxes.get(k, v), v)
        groups[k].append(v)
    want_groups = {k: sorted(vs) for k, vs in groups.items()}
    counts = collections.Counter(k for k, _ in pairs)
    results = spilling(size, job, folder)
    for got_sums, got_max, got_groups, got_counts, got_distinct, got_checksum, _ in results:
        assert got_sums == sums and got_max == maxes and got_groups == want_groups
        assert got_counts == counts and got_distinct == sorted(counts, key=repr)
        assert got_checksum == checksum(sums.items())
    if len(counts) > 1:
        assert sum(r[-1] for r in results) > 0  # with a 1-byte budget, something was spilled
    assert list(folder.iterdir()) == []  # every spill folder removed once read


records = st.lists(st.tuples(st.integers(-5, 5) | st.text("ab", max_size=2), st.integers(0, 9)), max_size=80)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(xs=records, size=st.integers(1, 3), ascending=st.booleans())
def test_sorts_past_the_budget_are_global_stable_and_leave_no_file(tmp_path_factory, xs, size, ascending):
    """A 1-byte budget: runs of one element on disk, one element a round; the partitions in worker
    order are the stable sort, and group_by_key(sort=True) groups in key order."""
    folder = tmp_path_factory.mktemp("scratch")
    items = [((0, k) if isinstance(k, int) else (1, k), i, v) for i, (k, v) in enumerate(xs)]  # ordered keys

    def job(data):
        ds = data.from_iterable(items)
        by_key = ds.sort_by(lambda x: x[0], ascending=ascending)
        groups = ds.map(lambda x: (x[0], x[1])).group_by_key(sort=True)
        return list(by_key.partition()), [(k, sorted(vs)) for k, vs in groups.partition()], data.spilled_bytes

    results = spilling(size, job, folder)
    want = sorted(items, key=lambda x: x[0], reverse=not ascending)
    assert [x for part, _, _ in results for x in part] == want  # stable: equal keys in input order
    grouped = collections.defaultdict(list)
    for k, i, _ in items:
        grouped[k].append(i)
    assert [g for _, groups, _ in results for g in groups] == sorted(grouped.items())
    if len(items) > 1:
        assert sum(r[-1] for r in results) > 0
    assert list(folder.iterdir()) == []


sides = st.lists(st.tuples(st.integers(0, 12) | st.text("ab", max_size=2), st.integers(-9, 9)), max_size=60)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    left=sides,
    right=sides,
    size=st.integers(1, 3),
    how=st.sampled_from(["inner", "left", "right", "outer"]),
    method=st.sampled_from(["hash", "sort"]),
)
def test_joins_past_the_budget_match_python_and_leave_no_file(
    small_rounds, tmp_path_factory, left, right, size, how, method
):
    """Both sides in rounds of 3, cogrouped and spilled past a 1-byte budget: the rows of the
    single-process join, each exactly once; a sort join's partitions still in key order."""
    folder = tmp_path_factory.mktemp("scratch")
    order = (lambda k: (isinstance(k, str), k)) if method == "sort" else None  # keys that compare
    lsides = [(order(k), v) for k, v in left] if order else left
    rsides = [(order(k), w) for k, w in right] if order else right

    def job(data):
        joined = data.from_iterable(lsides).join(data.from_iterable(rsides), how, method)
        mine = list(joined.partition())
        return checksum(joined.collect()), [k for k, _ in mine], len(mine), data.spilled_bytes

    results = spilling(size, job, folder)
    want = join_reference(lsides, rsides, how)
    for got, keys, _, _ in results:
        assert got == checksum(want)
        if method == "sort":
            assert keys == sorted(keys)
    assert sum(r[2] for r in results) == len(want)  # every row once, over the workers
    if lsides or rsides:
        assert sum(r[-1] for r in results) > 0  # with a 1-byte budget, something was spilled
    assert list(folder.iterdir()) == []


def test_a_sort_past_the_budget_that_fails_leaves_no_file(tmp_path):
    from t2mpi.data.errors import DataError

    def job(data):
        return data.from_iterable(range(50)).sort_by(lambda x: 1 // (x - 40)).collect()

    with pytest.raises(DataError, match=r"sort_by at test_spill.py:\d+ .* ZeroDivisionError"):
        spilling(2, job, tmp_path)
    with pytest.raises(DataError, match=r"sort_by at .* the keys cannot be ordered"):
        spilling(2, lambda data: data.from_iterable([1, "a"] * 20).sort_by().collect(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_within_the_budget_nothing_spills(tmp_path):
    def job(data):
        return dict(data.from_iterable([(i % 5, 1) for i in range(100)]).reduce_by_key(operator.add).collect()), (
            data.spilled_bytes
        )

    for got, spilled in on_partitions(2, job, memory_budget=1 << 30, scratch_dir=str(tmp_path)):
        assert got == {k: 20 for k in range(5)} and spilled == 0
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_a_failing_merge_past_the_budget_names_the_operation_and_leaves_no_file(small_rounds, tmp_path):
    from t2mpi.data.errors import UserFunctionError

    def bad(a, b):
        if a + b > 20:  # only where combiners that arrived are merged (a key totals 28 or 29)
            raise ValueError("three")
        return a + b

    def job(data):
        ds = data.from_iterable([(i % 7, 1) for i in range(200)])
        return ds.combine_by_key(lambda v: v, operator.add, bad).collect()

    with pytest.raises(UserFunctionError, match=r"combine_by_key at test_spill.py:\d+ .* ValueError: three"):
        spilling(2, job, tmp_path)
    assert list(tmp_path.iterdir()) == []


SPILLING_JOB = """
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            pairs = ctx.data.range(60000).map(lambda i: (f"k{i % 30000:06d}", i))
            summed = dict(pairs.reduce_by_key(lambda a, b: a + b).collect()) == {
                f"k{k:06d}": 2 * k + 30000 for k in range(30000)
            }
            by_key = pairs.sort_by(lambda kv: kv[0]).partition()   # 60,000 tuples past the budget too
            mine = list(by_key)
            return summed and mine == sorted(mine), ctx.data.spilled_bytes, (mine[0], mine[-1]) if mine else None
"""


@pytest.mark.mpi
def test_a_job_with_little_memory_spills_under_its_scratch_dir_and_reports_it(work):
    scratch = work / "scratch"
    resources = {"memory": "1G", "data_memory": "2M"}  # the data operations may hold 2 MiB of the 1 GiB
    job = write_job(work, "spilling", SPILLING_JOB, resources=resources, scratch_dir=str(scratch))
    done = t2mpi("run", str(job), cwd=work, timeout=120)
    assert done.returncode == 0, done.stderr
    results = pickle.loads((only_job(work) / "results.pkl").read_bytes())
    assert all(right for right, _, _ in results.values())
    assert all(spilled > 0 for _, spilled, _ in results.values())  # a 2 MiB budget: 30,000 keys do not fit
    ends = [results[w][2] for w in sorted(results)]  # each worker's first and last: the ranges in order
    assert ends[0][0] == ("k000000", 0) and ends[-1][1] == ("k029999", 59999) and ends[0][1] <= ends[1][0]
    for op in ("reduce_by_key", "sort_by"):
        done = [e for e in events_of(only_job(work)) if e["event"] == "operation_end" and e["operation"] == op]
        assert len(done) == 2 and all(e["bytes_spilled"] > 0 for e in done), (op, done)
    assert not list(scratch.glob("**/t2mpi-spill-*"))  # removed once read
