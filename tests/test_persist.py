"""DataSet.persist(): round trips of numpy blocks, Columns and objects through the job folder on 1-3
simulated workers (the stand-in communicator of test_data_local), checked against one process; a
"restart" (new Data on the same job folder) gets the data back without running the upstream; a write
that did not finish never counts; and a real job that persists, fails, and is restarted with
t2mpi restart."""

from __future__ import annotations

import collections
import operator
import os
import pickle
import tempfile
import textwrap
import threading
import types

import numpy as np
import pytest
from conftest import events_of, only_job, state_of, t2mpi, write_job
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mpi4py import MPI
from test_data_local import ThreadComm

from t2mpi.data import persist
from t2mpi.data.api import Data
from t2mpi.data.columns import Columns
from t2mpi.data.errors import DataError, RemoteFailure, UserFunctionError
from t2mpi.job.folder import JobDir

SETTINGS = settings(derandomize=True, max_examples=20, deadline=None)


def on_workers(size: int, job_dir: str, job, version: int = 0):
    """job(data) on `size` simulated workers of one job folder; their results in worker order."""
    group = {"size": size, "slots": [None] * size, "barrier": threading.Barrier(size, timeout=20)}
    results, errors = [None] * size, [None] * size

    def one(rank):
        try:
            results[rank] = job(Data(ThreadComm(group, rank), job_dir=job_dir, checkpoint_version=version))
        except DataError as exc:  # raised alike on every worker after a guarded collective
            errors[rank] = exc
        except BaseException as exc:  # anything else: the others must not wait for this one
            errors[rank] = exc
            group["barrier"].abort()

    threads = [threading.Thread(target=one, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a simulated worker hung"
    if any(e is not None for e in errors):
        raise ExceptionGroup("simulated workers failed", [e for e in errors if e is not None])
    return results


def new_job(folder: str) -> JobDir:
    return JobDir.make(os.path.join(folder, "job"), {"name": "p"})


class Counted:
    """An upstream function that counts its calls (over every simulated worker)."""

    def __init__(self, fn=lambda x: x):
        self.fn, self.calls, self.lock = fn, 0, threading.Lock()

    def __call__(self, x):
        with self.lock:
            self.calls += 1
        return self.fn(x)


objects = st.lists(
    st.one_of(st.integers(), st.text(max_size=5), st.none(), st.tuples(st.integers(), st.floats(allow_nan=False))),
    max_size=60,
)
arrays = hnp.arrays(
    st.sampled_from([np.int64, np.float64, np.uint8, np.bool_, np.complex128]),
    hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7),
)


def round_trip(size: int, make, upstream: Counted):
    """make(data) persisted on `size` workers, then persisted again in a "restarted" run: (collect()
    of the first, of the second, the partitions' types in the second, upstream calls)."""
    with tempfile.TemporaryDirectory() as folder:
        jd = new_job(folder)

        def job(data):
            ds = make(data).persist()
            return ds.collect(), type(ds.partition())

        first = on_workers(size, jd.path, job)
        calls = upstream.calls
        second = on_workers(size, jd.path, job)
        assert [r["name"] for r in jd.persisted()] == [f"test_persist.py:{job.__code__.co_firstlineno + 1}#1"]
    return first[0][0], second[0][0], {t for _, t in second}, (calls, upstream.calls)


def same(got, want) -> bool:
    if isinstance(want, np.ndarray):
        return isinstance(got, np.ndarray) and got.dtype == want.dtype and np.array_equal(got, want)
    return got == want


@SETTINGS
@given(objects, st.integers(1, 3))
def test_objects_round_trip_and_a_restart_does_not_run_the_upstream(xs, size):
    up = Counted()
    first, second, kinds, calls = round_trip(size, lambda data: data.from_iterable(xs).map(up), up)
    assert first == xs and second == xs
    assert calls == (len(xs), len(xs))  # the restart read the files, and called nothing upstream
    assert kinds == {types.GeneratorType}  # read back lazily


@SETTINGS
@given(arrays, st.integers(1, 3))
def test_numpy_blocks_round_trip_memory_mapped(a, size):
    up = Counted()
    first, second, kinds, calls = round_trip(size, lambda data: data.array(a).map_partitions(up), up)
    assert same(first, a) and same(second, a)
    assert calls == (size, size)
    assert kinds <= {np.memmap, np.ndarray} and (len(a) < size or np.memmap in kinds)


@SETTINGS
@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(-100, 100)), max_size=50), st.integers(1, 3))
def test_columns_round_trip_and_stay_columns(pairs, size):
    keys = np.array([k for k, _ in pairs], dtype=np.int64)
    values = np.array([v for _, v in pairs], dtype=np.float32)
    up = Counted()
    first, second, kinds, calls = round_trip(size, lambda data: data.columns(keys, values).map_partitions(up), up)
    want = list(zip(keys.tolist(), values.tolist()))
    assert first == want and second == want
    assert kinds == {Columns} and calls == (size, size)


def test_a_keyed_result_persists_and_later_operations_use_it():
    words = "a b a c b a d".split() * 7
    up = Counted()
    with tempfile.TemporaryDirectory() as folder:
        jd = new_job(folder)

        def job(data):
            counts = data.from_iterable(words).map(up).map(lambda w: (w, 1)).reduce_by_key(operator.add)
            kept = counts.persist("counts")
            return sorted(kept.collect()), kept.count(), kept.top(1, key=lambda kv: kv[1])

        first = on_workers(3, jd.path, job)
        again = on_workers(3, jd.path, job)
    want = sorted(collections.Counter(words).items())
    assert first == again == [(want, 4, [("a", 21)])] * 3
    assert up.calls == len(words)  # once, in the first run


def test_objects_are_streamed_in_batches_and_read_back_lazily(tmp_path):
    jd = new_job(str(tmp_path))
    n = persist.BATCH * 2 + 5
    data = Data(MPI.COMM_SELF, job_dir=jd.path)
    ds = data.range(n).map(lambda x: (x, str(x))).persist("big")
    record = jd.read_persisted("big")
    (part,) = record["parts"]
    assert part["kind"] == "objects" and part["rows"] == n
    path = jd.persisted_part("big", record["generation"], 0, "pkl")
    with open(path, "rb") as fh:
        batches = []
        while fh.tell() < os.path.getsize(path):
            batches.append(len(pickle.load(fh)))
    assert batches == [persist.BATCH, persist.BATCH, 5]
    it = ds.partition()
    assert next(it) == (0, "0") and not isinstance(it, list)
    assert ds.collect() == [(x, str(x)) for x in range(n)]
    assert os.stat(jd.persisted_dir).st_mode & 0o777 == 0o700
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700


def test_a_failure_while_writing_leaves_nothing_complete_and_the_next_run_recomputes(tmp_path):
    jd = new_job(str(tmp_path))
    up = Counted()
    n = persist.BATCH * 3  # worker 1 fails after it wrote whole batches into its temporary file

    def job(data, fail):
        bad = (n // 2 + persist.BATCH + 3) if fail else None
        return data.range(n).map(up).map(lambda x: 1 // (x - bad) if x == bad else x).persist().collect()

    with pytest.raises(ExceptionGroup) as failed:
        on_workers(2, jd.path, lambda data: job(data, True))
    kinds = sorted(type(e).__name__ for e in failed.value.exceptions)
    assert kinds == ["RemoteFailure", "UserFunctionError"]
    assert any("ZeroDivisionError" in str(e) for e in failed.value.exceptions)
    assert jd.persisted() == []
    (key,) = os.listdir(jd.persisted_dir)
    left = [f for _, _, files in os.walk(os.path.join(jd.persisted_dir, key)) for f in files]
    assert "part-1.pkl" not in left and not any(f.endswith(".tmp") for f in left), left
    assert not os.path.exists(os.path.join(jd.persisted_dir, key, "complete.json"))
    before = up.calls
    assert on_workers(2, jd.path, lambda data: job(data, False)) == [list(range(n))] * 2
    assert up.calls - before == n  # computed again, whole
    (record,) = jd.persisted()  # the failed generation is gone with the commit
    assert sorted(os.listdir(os.path.join(jd.persisted_dir, key))) == sorted(["complete.json", record["generation"]])


def damage_and_rerun(tmp_path, damage, size_after=2):
    """Persist on 2 workers, damage the job folder, persist again on size_after: (result, upstream calls)."""
    jd = new_job(str(tmp_path))
    up = Counted()

    def job(data):
        return data.array(np.arange(20) * 3).map_partitions(up).persist("a").collect()

    on_workers(2, jd.path, job)
    damage(jd, jd.read_persisted("a"))
    got = on_workers(size_after, jd.path, job)
    return got, up.calls, jd


def test_a_part_of_the_wrong_size_is_written_again(tmp_path):
    def truncate(jd, record):
        path = jd.persisted_part("a", record["generation"], 1, "npy")
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) - 8)

    got, calls, _ = damage_and_rerun(tmp_path, truncate)
    assert all(np.array_equal(g, np.arange(20) * 3) for g in got)
    assert calls == 4  # two partitions, computed twice


def test_a_missing_part_is_written_again(tmp_path):
    got, calls, _ = damage_and_rerun(
        tmp_path, lambda jd, r: os.unlink(jd.persisted_part("a", r["generation"], 0, "npy"))
    )
    assert all(np.array_equal(g, np.arange(20) * 3) for g in got) and calls == 4


def test_another_number_of_workers_recomputes_instead_of_resplitting(tmp_path):
    got, calls, jd = damage_and_rerun(tmp_path, lambda jd, r: None, size_after=3)
    assert all(np.array_equal(g, np.arange(20) * 3) for g in got)
    assert calls == 2 + 3
    (record,) = jd.persisted()
    assert record["workers"] == 3 and len(record["parts"]) == 3
    assert sorted(os.listdir(os.path.join(jd.persisted_dir, "a"))) == sorted(["complete.json", record["generation"]])


def test_a_record_of_another_operation_is_not_used(tmp_path):
    jd = new_job(str(tmp_path))
    data = Data(MPI.COMM_SELF, job_dir=jd.path)
    data.range(4).persist("x")
    again = Data(MPI.COMM_SELF, job_dir=jd.path)
    assert again.range(4).map(lambda x: -x).persist("x").collect() == [0, -1, -2, -3]


def test_default_names_count_calls_at_a_site_and_start_again_at_each_checkpoint(tmp_path):
    jd = new_job(str(tmp_path))
    up = Counted()

    def loop(data, steps):
        out = []
        for step in steps:
            out.append(data.range(3).map(up).map(lambda x, s=step: x + 10 * s).persist().collect())
        return out

    assert on_workers(2, jd.path, lambda data: loop(data, range(3))) == [[[0, 1, 2], [10, 11, 12], [20, 21, 22]]] * 2
    site = f"test_persist.py:{loop.__code__.co_firstlineno + 3}"
    assert sorted(r["name"] for r in jd.persisted()) == [f"{site}#{k}" for k in (1, 2, 3)]
    calls = up.calls
    assert on_workers(2, jd.path, lambda data: loop(data, range(3)))[0][2] == [20, 21, 22]
    assert up.calls == calls  # every step found its own data set again

    data = Data(MPI.COMM_SELF, job_dir=jd.path)
    data.checkpointed(4)
    assert data.persist_names.default("f.py:1") == "f.py:1#1@v4"
    assert data.persist_names.default("f.py:1") == "f.py:1#2@v4"
    data.checkpointed(5)
    assert data.persist_names.default("f.py:1") == "f.py:1#1@v5"
    assert Data(MPI.COMM_SELF, checkpoint_version=5).persist_names.default("f.py:1") == "f.py:1#1@v5"


def test_one_name_twice_in_a_run_is_an_error(tmp_path):
    data = Data(MPI.COMM_SELF, job_dir=new_job(str(tmp_path)).path)
    data.range(3).persist("model")
    with pytest.raises(DataError, match=r"'model' was persisted already in this run"):
        data.range(4).persist("model")
    with pytest.raises(DataError, match=r"the name must be a non-empty string, got ''"):
        data.range(4).persist("")


def test_outside_a_job_persist_is_a_data_error():
    with pytest.raises(DataError) as err:
        Data(MPI.COMM_SELF).range(3).persist()
    assert str(err.value).startswith("persist at test_persist.py:")
    assert "no job folder to persist into" in str(err.value) and "\n" not in str(err.value)
    assert not isinstance(err.value, (RemoteFailure, UserFunctionError))


@SETTINGS
@given(st.lists(st.text(max_size=12), min_size=2, max_size=6, unique=True))
def test_persisted_keys_are_safe_file_names_and_distinct(names):
    keys = [JobDir.persisted_key(n) for n in names]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert key and "/" not in key and key not in (".", "..") and not key.startswith(".")
        assert len(key) <= 100


def test_completion_drops_the_persisted_data_and_a_restart_event_names_them(tmp_path):
    jd = new_job(str(tmp_path))
    Data(MPI.COMM_SELF, job_dir=jd.path).range(3).persist("kept")
    jd.write_state({"job_id": jd.job_id, "state": "FAILED", "reason": "boom", "workers": []})
    jd.begin_restart("test")
    assert [e for e in jd.read_events()[0] if e["event"] == "restarting"][0]["persisted"] == ["kept"]
    jd.drop_persisted()
    assert not os.path.exists(jd.persisted_dir) and jd.persisted() == []
    assert not [n for n in os.listdir(jd.path) if "persisted" in n]


# ---------------------------------------------------------------- a real job, failed and restarted

PERSISTING = """
    import operator, os
    import numpy as np
    from t2mpi import IWorker

    class Job(IWorker):
        def execute(self, ctx):
            calls = os.path.join(ctx.config["calls"], f"calls-{ctx.worker_id}")

            def upstream(part):
                with open(calls, "a") as f:
                    f.write(f"run {ctx.restart_count}\\n")
                return part

            words = ctx.data.from_iterable(ctx.config["words"]).map_partitions(upstream)
            counts = words.map(lambda w: (w, 1)).reduce_by_key(operator.add).persist()
            squares = ctx.data.array(np.arange(30)).map_partitions(upstream).map_partitions(lambda b: b * b)
            squares = squares.persist("squares")
            if ctx.restart_count == 0 and ctx.worker_id == 1:
                raise RuntimeError("failing on purpose after persisting")
            return sorted(counts.collect()), int(squares.all_reduce(operator.add))
"""


@pytest.mark.mpi
def test_a_restarted_job_gets_its_persisted_data_back_without_recomputing(work):
    words = "to be or not to be that is the question".split() * 5
    job = write_job(work, "persisting", PERSISTING, config={"words": words, "calls": str(work)})
    done = t2mpi("run", str(job), "-q", cwd=work, timeout=120)
    assert done.returncode == 1
    jd = only_job(work)
    assert state_of(jd)["state"] == "FAILED" and "failing on purpose" in state_of(jd)["reason"]
    line = next(i for i, text in enumerate(textwrap.dedent(PERSISTING).splitlines(), 1) if ".persist()" in text)
    names = sorted(r["name"] for r in JobDir(str(jd)).persisted())
    assert names == [f"persisting.py:{line}#1", "squares"]

    again = t2mpi("restart", jd.name, "-q", cwd=work, timeout=120)
    assert again.returncode == 0, again.stderr
    assert state_of(jd)["state"] == "COMPLETED"
    got = JobDir(str(jd)).read_results()
    want = sorted(collections.Counter(words).items())
    assert got == {w: (want, sum(i * i for i in range(30))) for w in (0, 1)}
    for w in (0, 1):  # the upstream ran in the first run only (two data sets: two lines)
        assert (work / f"calls-{w}").read_text() == "run 0\nrun 0\n"
    restarting = [e for e in events_of(jd) if e["event"] == "restarting"]
    assert sorted(restarting[0]["persisted"]) == names
    assert not (jd / "persisted").exists()  # the job completed: no restart can use them
